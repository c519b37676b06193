"""The processor's Python API (requirement 3): parse, validate, transform and process over the
Rust engine, Arrow tables in and out, every violation reported, errors as Python exceptions."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import weir
from weir import samples


def ndjson(*records: dict | str) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()


def test_parse_returns_a_table_typed_by_the_contract(good_event):
    table = weir.parse(ndjson(good_event, good_event), "ndjson")
    assert isinstance(table, pa.Table)
    assert table.num_rows == 2
    assert table.column_names == list(samples.SHOP_EVENT_FIELDS)
    assert table.schema.field("unit_price").type == pa.float64()
    assert table.schema.field("quantity").type == pa.int64()
    row = table.slice(0, 1).to_pylist()[0]
    assert row["user_email"] == "Ann.Lee@Example.COM", "parse does not transform"
    assert json.loads(row["properties"]) == good_event["properties"]


@pytest.mark.parametrize("fmt", ["json", "ndjson", "csv"])
def test_every_format_gives_the_same_rows(fmt):
    valid_events = samples.generate_shop_events(300, seed=9)
    data = {
        "json": samples.to_json_array(valid_events),
        "ndjson": samples.to_ndjson(valid_events),
        "csv": samples.to_csv(valid_events),
    }[fmt]
    table = weir.parse(data, fmt)
    reference = weir.parse(samples.to_ndjson(valid_events), "ndjson")
    assert table.drop_columns(["properties"]).equals(reference.drop_columns(["properties"]))
    parsed_properties = [
        json.loads(p) if p else None for p in table.column("properties").to_pylist()
    ]
    assert parsed_properties == [e.get("properties") for e in valid_events]


def test_strict_parse_raises_parse_error_listing_every_bad_record(good_event):
    data = ndjson(good_event, "{not json", {**good_event, "quantity": "two"}, good_event)
    with pytest.raises(weir.ParseError) as caught:
        weir.parse(data, "ndjson")
    error = caught.value
    assert isinstance(error, weir.WeirError) and isinstance(error, ValueError)
    assert [(e["record_index"], e["rule"]) for e in error.errors] == [(1, "syntax"), (2, "type")]
    assert error.errors[1]["field"] == "quantity"
    assert "line 2" in error.errors[0]["message"]


def test_unsupported_formats_raise_naming_the_format():
    with pytest.raises(weir.UnsupportedFormatError) as caught:
        weir.parse(b"<a/>", "xml")
    assert caught.value.format == "xml"
    assert caught.value.supported == ["json", "ndjson", "csv"]
    with pytest.raises(weir.UnsupportedFormatError, match="looks like parquet"):
        weir.parse(b"PAR1\x00\x00", "json")


def test_a_broken_contract_raises_contract_error(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text(json.dumps({"properties": {"a": {"type": "string", "maxlength": 3}}}))
    with pytest.raises(weir.ContractError) as caught:
        weir.parse(b"{}", "json", bad)
    assert caught.value.keyword == "maxlength"
    assert caught.value.path == "/properties/a/maxlength"
    with pytest.raises(weir.ContractError, match="no contract 'nope'"):
        weir.parse(b"{}", "json", "nope")


def test_validate_reports_every_violation_of_every_record(good_event):
    bad = {
        **good_event,
        "event_id": "x",
        "user_country": "gb",
        "quantity": 0,
        "currency": "BTC",
        "colour": "red",
    }
    product_missing = {k: v for k, v in good_event.items() if k not in ("product_id", "currency")}
    result = weir.validate(ndjson(good_event, bad, product_missing), format="ndjson")
    assert isinstance(result, weir.ValidationResult)
    assert result.valid.num_rows == 1
    assert result.rejected.column("record_index").to_pylist() == [1, 2]
    found = {(v["record_index"], v["field"], v["rule"]) for v in result.violation_list()}
    assert found == {
        (1, "event_id", "format"),
        (1, "user_country", "pattern"),
        (1, "quantity", "minimum"),
        (1, "currency", "enum"),
        (1, "colour", "additionalProperties"),
        (2, "product_id", "product_event_fields"),
        (2, "currency", "product_event_fields"),
    }
    rejected = result.rejected.to_pylist()
    assert json.loads(rejected[0]["raw"])["colour"] == "red"
    assert len(rejected[0]["violations"]) == 5


def test_validate_accepts_arrow_tables_and_can_skip_sql_rules(good_event):
    table = pa.Table.from_pylist(
        [good_event | {"properties": "{}"}, good_event | {"product_id": None, "properties": "{}"}]
    )
    with_rules = weir.validate(table)
    assert with_rules.rejected.column("record_index").to_pylist() == [1]
    assert with_rules.violation_list()[0]["rule"] == "product_event_fields"
    without_rules = weir.validate(table, rules=False)
    assert without_rules.ok and without_rules.valid.num_rows == 2


def test_validate_needs_a_format_for_bytes():
    with pytest.raises(TypeError, match="needs format="):
        weir.validate(b"{}")


def test_transform_runs_sql_with_weir_udfs(good_event):
    valid = weir.validate(ndjson(good_event), format="ndjson").valid
    out = weir.transform(valid)
    row = out.to_pylist()[0]
    assert row["user_email"] == "ann.lee@example.com"
    assert str(row["event_time"]) == "2026-11-26 23:30:00+00:00"
    assert str(row["event_date"]) == "2026-11-26"
    assert row["amount"] == 19.0 and row["referrer"] == "newsletter"
    custom = weir.transform(
        valid, "select upper(user_id) as uid, weir_normalize_country(' fr ') as c from events"
    )
    assert custom.to_pylist() == [{"uid": "U_42", "c": "FR"}]


def test_transform_sql_errors_raise_pipeline_error(good_event):
    valid = weir.validate(ndjson(good_event), format="ndjson").valid
    with pytest.raises(weir.PipelineError, match="nope"):
        weir.transform(valid, "select nope from events")


def test_process_keeps_good_records_flowing_past_broken_ones(sample_events):
    data = samples.to_ndjson(sample_events)
    result = weir.process(data, "ndjson")
    assert result.stats["records"] == len(sample_events)
    assert result.stats["valid"] + result.stats["rejected"] == len(sample_events)
    assert 0 < result.stats["rejected"] < len(sample_events) * 0.1
    assert result.output.num_rows == result.stats["valid"]
    assert "event_date" in result.output.column_names
    ids = result.output.column("event_id").to_pylist()
    assert len(set(ids)) == len(ids)
    expected_order = [e["event_id"] for e in sample_events if e.get("event_id") in set(ids)]
    assert ids == expected_order[: len(ids)], "output keeps input order"
    raws = result.rejected.column("raw").to_pylist()
    assert all(raw.startswith("{") for raw in raws)


def test_process_strict_raises_validation_error(good_event):
    with pytest.raises(weir.ValidationError) as caught:
        weir.process(
            ndjson(good_event, {**good_event, "event_type": "sale"}), "ndjson", strict=True
        )
    assert caught.value.rejected_records == 1
    assert caught.value.violations[0]["rule"] == "enum"


def test_csv_with_quotes_newlines_and_a_short_row(good_event):
    event = good_event | {"product_name": 'Mug, "large"\nblue'}
    data = samples.to_csv([event]) + b"x,y\n"
    result = weir.process(data, "csv")
    assert result.output.column("product_name").to_pylist() == ['Mug, "large"\nblue']
    assert result.violation_list()[0]["rule"] == "syntax"
    assert "the row has 2 fields" in result.violation_list()[0]["message"]


def test_non_utf8_and_empty_input(good_event):
    data = ndjson(good_event) + b"\n" + b'{"event_id": "\xff"}' + b"\n" + ndjson(good_event)
    result = weir.process(data, "ndjson")
    assert (result.stats["valid"], result.stats["rejected"]) == (2, 1)
    empty = weir.process(b"", "ndjson")
    assert empty.output.num_rows == 0 and empty.rejected.num_rows == 0
