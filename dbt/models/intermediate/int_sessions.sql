-- One row per session: its user, first and last event, event count, and whether it converted
-- (held a purchase).
select
    session_id,
    min(user_id) as user_id,
    min(event_time) as started_at,
    max(event_time) as ended_at,
    count(*) as events,
    count(*) filter (where event_type = 'purchase') > 0 as converted
from {{ ref('stg_weir__shop_events') }}
where session_id is not null
group by session_id
