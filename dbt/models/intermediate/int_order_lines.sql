-- One row per purchase or refund line, with revenue in the event's currency and in USD (the
-- reporting currency, through the exchange_rates seed); refunds are negative revenue.
-- A view: fct_order_lines reads the lines an incremental run touches.
{{ config(materialized='view') }}

select
    e.event_id as order_line_id,
    e.event_type,
    e.event_time,
    e.event_date,
    e.user_id,
    e.product_id,
    e.session_id,
    e.quantity,
    e.unit_price,
    e.currency,
    case when e.event_type = 'refund' then -e.amount else e.amount end as revenue,
    cast(
        (case when e.event_type = 'refund' then -e.amount else e.amount end) / r.units_per_usd
        as decimal(18, 2)
    ) as revenue_usd,
    e.staged_at
from {{ ref('stg_weir__shop_events') }} as e
join {{ ref('exchange_rates') }} as r on r.currency = e.currency
where e.event_type in ('purchase', 'refund')
