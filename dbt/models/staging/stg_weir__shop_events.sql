-- One row per shop event: the pipeline's output, typed and named for the model. A replayed
-- event (the same event_id delivered again) counts once: the first stored copy wins.
-- Incremental: a run reads only the data files added to raw.shop_events since the snapshot
-- the last run consumed, and stages the events not staged yet (staged_at = this run).
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ weir_mark_consumed('raw.shop_events') }}",
    )
}}
with arrived as (
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
    from {{ weir_source('weir', 'shop_events') }}
    qualify row_number() over (partition by event_id order by ingested_at, event_time) = 1
)

select arrived.*, {{ weir_run_time() }} as staged_at
from arrived
{% if is_incremental() %}
where not exists (select 1 from {{ this }} as staged where staged.event_id = arrived.event_id)
{% endif %}
