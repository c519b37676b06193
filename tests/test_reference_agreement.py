"""Requirement 2.2 ("identify all schema violations") and the transformation checked against an
independent implementation: the pure-Python reference of tests/reference/ must find
exactly the violations (record, field, rule) weir finds, reject the same records, and produce
the same output rows with the same value in every field, on generated data with a large share
of records broken in varied ways."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

import weir
from tests.reference import OUTPUT_FIELDS, POSITION_FIELDS, pure_python
from weir import samples


def comparable(value: Any) -> Any:
    """A field's value as both sides should give it: date-times as aware UTC datetimes (a
    naive one is never equal to the reference's); everything else (strings, dates, ints,
    floats compared exactly, properties as JSON text) as it is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else ("naive", value)
    return value


def field_differences(found: list[dict], expected: list[dict]) -> list[tuple[int, str, Any, Any]]:
    """(row, field, weir's value, the reference's value) for every field that differs."""
    return [
        (row, name, mine.get(name), theirs[name])
        for row, (mine, theirs) in enumerate(zip(found, expected, strict=True))
        for name in theirs
        if comparable(mine.get(name)) != comparable(theirs[name])
    ]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_weir_and_the_python_reference_agree_on_every_violation_and_output_field(seed, fmt):
    events = samples.generate_shop_events(3_000, invalid_fraction=0.3, seed=seed)
    data = (
        samples.to_ndjson(events) if fmt == "ndjson" else samples.to_csv(events, extra_columns=True)
    )
    reference = pure_python(data, fmt)
    result = weir.process(data, fmt)
    expected = Counter((r, f or "", rule) for r, f, rule, _, _ in reference.violation_details)
    found = Counter(
        (v["record_index"], v["field"] or "", v["rule"]) for v in result.violation_list()
    )
    assert found == expected
    assert result.rejected["record_index"].to_pylist() == sorted({r for r, _, _ in expected})
    assert result.rejected.num_rows == reference.rejected_records

    output = result.output
    assert output.schema.names == [*OUTPUT_FIELDS, *POSITION_FIELDS]
    # No Kinesis record here: the position columns are null (the consumer fills them).
    assert all(output[name].null_count == output.num_rows for name in POSITION_FIELDS)
    output = output.drop_columns(list(POSITION_FIELDS))
    assert output.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert output.num_rows == reference.output_rows == len(reference.output)
    rows = output.to_pylist()
    assert [row["event_id"] for row in rows] == [row["event_id"] for row in reference.output]
    differences = field_differences(rows, reference.output)
    assert not differences, f"{len(differences)} fields differ, e.g. {differences[:5]}"
