-- One row per event, keyed to the user and product versions valid at the event's time
-- (point in time) and to its day.
select
    e.event_id,
    e.event_type,
    e.event_time,
    cast(strftime(e.event_date, '%Y%m%d') as integer) as date_key,
    u.user_version_key,
    e.user_key,
    e.session_id,
    e.product_key,
    p.product_version_key,
    e.quantity,
    e.unit_price,
    e.currency,
    e.amount
from {{ ref('stg_weir__shop_events') }} as e
left join {{ ref('dim_users') }} as u
    on u.user_id = e.user_id
    and e.event_time >= u.valid_from
    and (u.valid_to is null or e.event_time < u.valid_to)
left join {{ ref('dim_products') }} as p
    on p.product_id = e.product_id
    and e.event_time >= p.valid_from
    and (p.valid_to is null or e.event_time < p.valid_to)
