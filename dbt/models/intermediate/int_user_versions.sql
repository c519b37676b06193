-- One row per version of a user: a new version starts at the first event showing a country,
-- plan or e-mail different from the user's previous event. An event without a value (the
-- field is optional) shows the previous one; a user's first version takes the first value
-- the user ever showed.
-- A view: dimensions read it for the users or products a run touches.
{{ config(materialized='view') }}

with filled as (
    select
        user_id,
        event_time,
        event_id,
        coalesce(
            last_value(user_country ignore nulls) over upto,
            first_value(user_country ignore nulls) over everything
        ) as user_country,
        coalesce(
            last_value(user_plan ignore nulls) over upto,
            first_value(user_plan ignore nulls) over everything
        ) as user_plan,
        coalesce(
            last_value(user_email ignore nulls) over upto,
            first_value(user_email ignore nulls) over everything
        ) as user_email
    from {{ ref('stg_weir__shop_events') }}
    window
        upto as (partition by user_id order by event_time, event_id
                 rows between unbounded preceding and current row),
        everything as (partition by user_id order by event_time, event_id
                       rows between unbounded preceding and unbounded following)
),

-- Several events of a user at the same instant (two sources, a retried batch): the state
-- after the last of them (by event id) is its state at that instant, so no version is empty.
at_time as (
    select *
    from filled
    qualify row_number() over (partition by user_id, event_time order by event_id desc) = 1
),

marked as (
    select
        *,
        row_number() over ordered = 1
            or lag(user_country) over ordered is distinct from user_country
            or lag(user_plan) over ordered is distinct from user_plan
            or lag(user_email) over ordered is distinct from user_email as starts_version
    from at_time
    window ordered as (partition by user_id order by event_time, event_id)
)

select
    user_id,
    row_number() over (partition by user_id order by event_time, event_id) as version,
    event_time as valid_from,
    user_country,
    user_plan,
    user_email
from marked
where starts_version
