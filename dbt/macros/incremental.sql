{#- Incremental runs on the lake (see dbt/README.md, "Incremental runs").

    Staging models read the lake through weir_source(): all of a table in a full build, only
    the data files added since the snapshot the project last consumed in an incremental one
    (the weir.dbt plugin registers both views, pinned to one snapshot per run). Their
    post-hook weir_mark_consumed() records that snapshot in the same transaction, and every
    staged row carries the run's time as staged_at.

    Downstream incremental models process the staged rows newer than their own watermark
    (weir_watermark(), moved forward by the post-hook weir_advance_watermark()), so a model
    that failed or was skipped catches up on its next run, and a full refresh of staging
    (every row re-staged) makes every downstream model see every row. -#}

{% macro weir_source(source_name, table_name) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if is_incremental() -%}
        {{ relation.incorporate(path={"schema": relation.schema ~ "_new"}) }}
    {%- else -%}
        {{ relation }}
    {%- endif -%}
{%- endmacro %}

{% macro weir_mark_consumed(lake_table) -%}
    insert or replace into weir_state.lake_consumed
    select table_name, snapshot_id from weir_state.lake_reads
    where table_name = '{{ lake_table }}' and snapshot_id is not null
{%- endmacro %}

{#- This run's time, the staged_at of the rows it stages. -#}
{% macro weir_run_time() -%}
    cast('{{ run_started_at.isoformat() }}' as timestamptz)
{%- endmacro %}

{#- The newest staged_at this model has processed (-infinity before its first run or in a
    full refresh). -#}
{% macro weir_watermark() -%}
    {%- if is_incremental() -%}
    (select coalesce(max(staged_at), '-infinity'::timestamptz) from weir_state.model_watermarks
     where model = '{{ this.identifier }}')
    {%- else -%}
    '-infinity'::timestamptz
    {%- endif -%}
{%- endmacro %}

{% macro weir_advance_watermark(staged) -%}
    insert or replace into weir_state.model_watermarks
    select '{{ this.identifier }}', max(staged_at) from {{ staged }}
{%- endmacro %}

{#- Per value of `key`, the earliest event_time among the rows of `staged` this model has
    not processed yet: from there on, versions (and the facts keyed to them) may change. -#}
{% macro weir_changed_since(staged, key) -%}
    select {{ key }}, min(event_time) as since
    from {{ staged }}
    where staged_at > {{ weir_watermark() }} and {{ key }} is not null
    group by {{ key }}
{%- endmacro %}

{#- The facts an incremental run (re)builds: the events of a user or product from the
    earliest event time the run brings for it (versions before that time cannot change;
    new events are always included). `changes` names the CTEs weir_version_changes() made. -#}
{% macro weir_version_changes(staged) -%}
    users_changed as ({{ weir_changed_since(staged, 'user_id') }}),
    products_changed as ({{ weir_changed_since(staged, 'product_id') }}),
{%- endmacro %}

{% macro weir_affected_by_version_changes(alias) -%}
    exists (select 1 from users_changed as c
            where c.user_id = {{ alias }}.user_id and {{ alias }}.event_time >= c.since)
    or exists (select 1 from products_changed as c
               where c.product_id = {{ alias }}.product_id and {{ alias }}.event_time >= c.since)
{%- endmacro %}

{#- Keeps the rebuilt facts whose dimension keys differ from the stored ones (or that are
    new), so an incremental run rewrites only rows that changed. -#}
{% macro weir_changed_facts(alias, key) -%}
    not exists (
        select 1 from {{ this }} as stored
        where stored.{{ key }} = {{ alias }}.{{ key }}
          and stored.user_version_key is not distinct from {{ alias }}.user_version_key
          and stored.product_version_key is not distinct from {{ alias }}.product_version_key
    )
{%- endmacro %}

{#- The values of `key` (user_id, product_id) among the staged rows this model has not
    processed, as a literal list: DuckDB pushes a constant list through the version views'
    window functions (only those users' events are read), which it does not do for a
    subquery. Past 50,000 values (a full re-staging) the subquery is used. -#}
{% macro weir_touched(key) -%}
    {%- set staged = ref('stg_weir__shop_events') -%}
    {%- set query -%}
        select distinct {{ key }} from {{ staged }}
        where staged_at > {{ weir_watermark() }} and {{ key }} is not null
    {%- endset -%}
    {%- set values = run_query(query).columns[0].values() if execute else none -%}
    {%- if values is not none and values | length <= 50000 -%}
        ({% for value in values %}'{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %}{{ "null" if values | length == 0 }})
    {%- else -%}
        ({{ query }})
    {%- endif -%}
{%- endmacro %}
