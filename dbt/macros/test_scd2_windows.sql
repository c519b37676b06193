{#- SCD type 2 invariants of a dimension: per natural key the validity windows
    [valid_from, valid_to) follow each other without overlap or gap, only the last one is
    open (valid_to null) and exactly that one is current. Returns the offending rows. -#}
{% test scd2_windows(model, natural_key) %}
with versions as (
    select
        {{ natural_key }} as natural_key,
        valid_from,
        valid_to,
        is_current,
        lead(valid_from) over (partition by {{ natural_key }} order by valid_from) as next_from,
        count(*) filter (where is_current) over (partition by {{ natural_key }}) as current_rows
    from {{ model }}
)
select *
from versions
where valid_to is distinct from next_from                  -- a gap, an overlap, or a closed last window
   or (valid_to is not null and valid_to <= valid_from)    -- an empty or reversed window
   or is_current is distinct from (valid_to is null)       -- current means open
   or current_rows <> 1                                    -- exactly one current version
{% endtest %}
