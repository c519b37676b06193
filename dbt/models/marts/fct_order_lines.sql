-- One row per purchase or refund line, keyed to the user and product versions valid at the
-- event's time (point in time) and to its day.
select
    o.order_line_id,
    o.event_type,
    o.event_time,
    cast(strftime(o.event_date, '%Y%m%d') as integer) as date_key,
    u.user_version_key,
    p.product_version_key,
    o.session_id,
    o.quantity,
    o.unit_price,
    o.currency,
    o.revenue,
    o.revenue_usd
from {{ ref('int_order_lines') }} as o
left join {{ ref('dim_users') }} as u
    on u.user_id = o.user_id
    and o.event_time >= u.valid_from
    and (u.valid_to is null or o.event_time < u.valid_to)
left join {{ ref('dim_products') }} as p
    on p.product_id = o.product_id
    and o.event_time >= p.valid_from
    and (p.valid_to is null or o.event_time < p.valid_to)
