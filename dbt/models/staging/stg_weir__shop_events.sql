-- One row per shop event: the pipeline's output, typed and named for the model. A replayed
-- event (the same event_id delivered again) counts once: the first stored copy wins.
select
    event_id,
    event_type,
    event_time,
    event_date,
    user_id,
    user_key,
    user_email,
    user_country,
    user_plan,
    session_id,
    product_id,
    product_key,
    product_name,
    product_category,
    cast(unit_price as decimal(18, 2)) as unit_price,
    quantity,
    currency,
    cast(amount as decimal(18, 2)) as amount,
    referrer,
    properties,
    ingested_at
from {{ source('weir', 'shop_events') }}
qualify row_number() over (partition by event_id order by ingested_at, event_time) = 1
