-- One row per contract or pipeline violation of a rejected record, for data-quality reports.
select
    r.job_id,
    r.record_index,
    v.field,
    v.rule,
    v.value,
    v.message,
    r.raw,
    r.ingested_at
from {{ source('weir', 'shop_events_rejected') }} as r,
    unnest(r.violations) as t(v)
