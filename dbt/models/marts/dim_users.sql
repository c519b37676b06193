-- Users as a slowly changing dimension (type 2): one row per version, valid from its first
-- event until the next version starts (valid_to null for the current version).
-- Incremental: a run rebuilds every version of the users its new events show
-- (late events included), replacing their rows.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='user_id',
        post_hook="{{ weir_advance_watermark(ref('stg_weir__shop_events')) }}",
    )
}}
select
    {{ surrogate_key(['user_id', 'version']) }} as user_version_key,
    {{ surrogate_key(['user_id']) }} as user_key,
    user_id,
    version,
    user_country,
    user_plan,
    user_email,
    valid_from,
    lead(valid_from) over (partition by user_id order by valid_from) as valid_to,
    lead(valid_from) over (partition by user_id order by valid_from) is null as is_current
from {{ ref('int_user_versions') }}
{% if is_incremental() %}
where user_id in {{ weir_touched('user_id') }}
{% endif %}
