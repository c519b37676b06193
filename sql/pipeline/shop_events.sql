-- Pipeline SQL for the shop_events dataset, run by Weir's processor (DataFusion) on every batch
-- after the contract checks in contracts/shop_events.json. Edit it to change behaviour: no
-- recompilation. Both queries read `events`: the contract's columns, `_record_index` and where
-- the event was on Kinesis (`_kinesis_shard_id`, `_kinesis_sequence_number`,
-- `_kinesis_sub_sequence_number`, `_kinesis_arrival_time`: filled by the consumer for
-- `transformed`, null in `violations` and in weir.process).
-- Try it in a notebook: ctx = weir.connect(); weir.register_udfs(ctx); then run the queries.

-- name: violations
-- Cross-field rule the contract cannot express: product events need product fields.
-- One row per missing field, so the rejected record lists exactly what it lacks.
SELECT _record_index AS record_index, 'product_event_fields' AS rule, missing.field,
       CAST(NULL AS VARCHAR) AS value,
       event_type || ' events need ' || missing.field AS message
FROM events
CROSS JOIN (VALUES ('product_id', 1), ('unit_price', 2), ('quantity', 3), ('currency', 4)) AS missing(field, position)
WHERE event_type IN ('add_to_cart', 'remove_from_cart', 'purchase', 'refund')
  -- Redundant with the CASE below, but it only reads `events`, so DataFusion applies it
  -- before the cross join: only the few broken records are multiplied by four.
  AND (product_id IS NULL OR unit_price IS NULL OR quantity IS NULL OR currency IS NULL)
  AND CASE missing.field
        WHEN 'product_id' THEN product_id IS NULL
        WHEN 'unit_price' THEN unit_price IS NULL
        WHEN 'quantity' THEN quantity IS NULL
        ELSE currency IS NULL
      END
ORDER BY _record_index, missing.position;

-- name: transformed
-- One row per valid event, in input order: timestamps in UTC, normalised contact fields,
-- dbt_utils-compatible surrogate keys, fields lifted out of `properties`, and the Kinesis
-- record the event came in (to trace a row back to the stream).
SELECT
    event_id,
    event_type,
    weir_to_utc(event_time) AS event_time,
    CAST(weir_to_utc(event_time) AS DATE) AS event_date,
    user_id,
    weir_surrogate_key(user_id) AS user_key,
    weir_normalize_email(user_email) AS user_email,
    weir_normalize_country(user_country) AS user_country,
    user_plan,
    session_id,
    product_id,
    CASE WHEN product_id IS NOT NULL THEN weir_surrogate_key(product_id) END AS product_key,
    product_name,
    product_category,
    unit_price,
    quantity,
    currency,
    unit_price * quantity AS amount,
    properties,
    weir_json_get(properties, 'referrer') AS referrer,
    _kinesis_shard_id AS kinesis_shard_id,
    _kinesis_sequence_number AS kinesis_sequence_number,
    _kinesis_sub_sequence_number AS kinesis_sub_sequence_number,
    _kinesis_arrival_time AS kinesis_arrival_time
FROM events;
