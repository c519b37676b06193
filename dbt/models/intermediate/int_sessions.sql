-- One row per session: its user, first and last event, event count, and whether it converted
-- (held a purchase). Incremental: a run rebuilds the sessions its new events belong to.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_id',
        post_hook="{{ weir_advance_watermark(ref('stg_weir__shop_events')) }}",
    )
}}
select
    session_id,
    min(user_id) as user_id,
    min(event_time) as started_at,
    max(event_time) as ended_at,
    count(*) as events,
    count(*) filter (where event_type = 'purchase') > 0 as converted
from {{ ref('stg_weir__shop_events') }}
where session_id is not null
{% if is_incremental() %}
    and session_id in (
        select session_id from {{ ref('stg_weir__shop_events') }}
        where staged_at > {{ weir_watermark() }}
    )
{% endif %}
group by session_id
