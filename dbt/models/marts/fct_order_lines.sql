-- One row per purchase or refund line, keyed to the user and product versions valid at the
-- event's time (point in time) and to its day.
-- Incremental as fct_events: new lines, and stored lines re-keyed where versions changed.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_line_id',
        post_hook="{{ weir_advance_watermark(ref('stg_weir__shop_events')) }}",
    )
}}
with
{% if is_incremental() %}
{{ weir_version_changes(ref('stg_weir__shop_events')) }}
{% endif %}
lines as (
    select * from {{ ref('int_order_lines') }} as o
    {% if is_incremental() %}
    where {{ weir_affected_by_version_changes('o') }}
    {% endif %}
),

keyed as (
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
    from lines as o
    left join {{ ref('dim_users') }} as u
        on u.user_id = o.user_id
        and o.event_time >= u.valid_from
        and o.event_time < coalesce(u.valid_to, 'infinity'::timestamptz)
    left join {{ ref('dim_products') }} as p
        on p.product_id = o.product_id
        and o.event_time >= p.valid_from
        and o.event_time < coalesce(p.valid_to, 'infinity'::timestamptz)
)

select keyed.*, {{ weir_run_time() }} as _built_at
from keyed
{% if is_incremental() %}
where {{ weir_changed_facts('keyed', 'order_line_id') }}
{% endif %}
