{#- Schemas named as configured (staging, intermediate, marts), not prefixed with the
    target's schema: the models' names say where they belong. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
