{#- md5 over the columns as text, nulls spelled as dbt_utils spells them: the same keys as
    dbt_utils.generate_surrogate_key and Weir's weir_surrogate_key (no package download). -#}
{% macro surrogate_key(columns) -%}
    md5(concat_ws('-'
    {%- for column in columns %}, coalesce(cast({{ column }} as varchar), '_dbt_utils_surrogate_key_null_'){% endfor -%}
    ))
{%- endmacro %}
