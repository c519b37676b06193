-- One row per version of a product: a version starts at the first event showing another
-- name, category or list price. The list price (USD) is read from events priced in USD
-- only, so prices converted to other currencies (and rounded) never look like a change; an
-- event without a value shows the previous one, and the first version takes the first value
-- the product ever showed.
-- A view: dimensions read it for the users or products a run touches.
{{ config(materialized='view') }}

with priced as (
    select
        product_id,
        event_time,
        event_id,
        product_name,
        product_category,
        case when currency = 'USD' then unit_price end as list_price_usd
    from {{ ref('stg_weir__shop_events') }}
    where product_id is not null
),

filled as (
    select
        product_id,
        event_time,
        event_id,
        coalesce(
            last_value(product_name ignore nulls) over upto,
            first_value(product_name ignore nulls) over everything
        ) as product_name,
        coalesce(
            last_value(product_category ignore nulls) over upto,
            first_value(product_category ignore nulls) over everything
        ) as product_category,
        coalesce(
            last_value(list_price_usd ignore nulls) over upto,
            first_value(list_price_usd ignore nulls) over everything
        ) as list_price_usd
    from priced
    window
        upto as (partition by product_id order by event_time, event_id
                 rows between unbounded preceding and current row),
        everything as (partition by product_id order by event_time, event_id
                       rows between unbounded preceding and unbounded following)
),

-- Several events of a product at the same instant (two sources, a retried batch): the state
-- after the last of them (by event id) is its state at that instant, so no version is empty.
at_time as (
    select *
    from filled
    qualify row_number() over (partition by product_id, event_time order by event_id desc) = 1
),

marked as (
    select
        *,
        row_number() over ordered = 1
            or lag(product_name) over ordered is distinct from product_name
            or lag(product_category) over ordered is distinct from product_category
            or lag(list_price_usd) over ordered is distinct from list_price_usd as starts_version
    from at_time
    window ordered as (partition by product_id order by event_time, event_id)
)

select
    product_id,
    row_number() over (partition by product_id order by event_time, event_id) as version,
    event_time as valid_from,
    product_name,
    product_category,
    list_price_usd
from marked
where starts_version
