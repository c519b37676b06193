-- One row per calendar day from the first to the last event day (date_key = yyyymmdd).
with bounds as (
    select min(event_date) as first_day, max(event_date) as last_day
    from {{ ref('stg_weir__shop_events') }}
)
select
    cast(strftime(day, '%Y%m%d') as integer) as date_key,
    cast(day as date) as date,
    year(day) as year,
    quarter(day) as quarter,
    month(day) as month,
    monthname(day) as month_name,
    day(day) as day_of_month,
    isodow(day) as iso_day_of_week,
    dayname(day) as day_name,
    isodow(day) in (6, 7) as is_weekend
from bounds, range(first_day, last_day + interval 1 day, interval 1 day) as days(day)
