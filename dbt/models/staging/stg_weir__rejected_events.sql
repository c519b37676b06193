-- One row per contract or pipeline violation of a rejected record, for data-quality reports.
-- Incremental like stg_weir__shop_events: only files added since the last run are read, and
-- a record already staged (the same job and record index) is not staged again.
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        post_hook="{{ weir_mark_consumed('raw.shop_events_rejected') }}",
    )
}}
select
    r.job_id,
    r.record_index,
    v.field,
    v.rule,
    v.value,
    v.message,
    r.raw,
    r.ingested_at,
    {{ weir_run_time() }} as staged_at
from {{ weir_source('weir', 'shop_events_rejected') }} as r,
    unnest(r.violations) as t(v)
{% if is_incremental() %}
where not exists (
    select 1 from {{ this }} as staged
    where staged.job_id = r.job_id and staged.record_index = r.record_index
)
{% endif %}
