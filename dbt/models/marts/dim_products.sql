-- Products as a slowly changing dimension (type 2): one row per version, valid from its first
-- event until the next version starts (valid_to null for the current version).
-- Incremental: a run rebuilds every version of the products its new events show
-- (late events included), replacing their rows.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='product_id',
        post_hook="{{ weir_advance_watermark(ref('stg_weir__shop_events')) }}",
    )
}}
select
    {{ surrogate_key(['product_id', 'version']) }} as product_version_key,
    {{ surrogate_key(['product_id']) }} as product_key,
    product_id,
    version,
    product_name,
    product_category,
    list_price_usd,
    valid_from,
    lead(valid_from) over (partition by product_id order by valid_from) as valid_to,
    lead(valid_from) over (partition by product_id order by valid_from) is null as is_current
from {{ ref('int_product_versions') }}
{% if is_incremental() %}
where product_id in {{ weir_touched('product_id') }}
{% endif %}
