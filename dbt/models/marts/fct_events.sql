-- One row per event, keyed to the user and product versions valid at the event's time
-- (point in time) and to its day. (The open end is spelled with coalesce, not `or`, so
-- DuckDB joins by hash on the natural key instead of comparing every pair.)
-- Incremental: a run keys its new events, and re-keys the stored events of the users and
-- products whose versions its events may have changed (from the earliest new event time
-- of each, so late events restate history); only rows whose keys changed are rewritten.
-- _built_at (when the row was last written) lets publishing append instead of replacing.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_id',
        post_hook="{{ weir_advance_watermark(ref('stg_weir__shop_events')) }}",
    )
}}
with
{% if is_incremental() %}
{{ weir_version_changes(ref('stg_weir__shop_events')) }}
{% endif %}
events as (
    select * from {{ ref('stg_weir__shop_events') }} as e
    {% if is_incremental() %}
    where {{ weir_affected_by_version_changes('e') }}
    {% endif %}
),

keyed as (
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
    from events as e
    left join {{ ref('dim_users') }} as u
        on u.user_id = e.user_id
        and e.event_time >= u.valid_from
        and e.event_time < coalesce(u.valid_to, 'infinity'::timestamptz)
    left join {{ ref('dim_products') }} as p
        on p.product_id = e.product_id
        and e.event_time >= p.valid_from
        and e.event_time < coalesce(p.valid_to, 'infinity'::timestamptz)
)

select keyed.*, {{ weir_run_time() }} as _built_at
from keyed
{% if is_incremental() %}
where {{ weir_changed_facts('keyed', 'event_id') }}
{% endif %}
