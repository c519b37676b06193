"""Weir's UDFs registered into datafusion-python 53 through datafusion-ffi capsules. If a
version bump ever makes datafusion-python refuse the capsules, this fails first."""

from __future__ import annotations

import datafusion
import pyarrow as pa
import pytest

import weir


def test_register_udfs_makes_every_function_callable_from_sql():
    ctx = datafusion.SessionContext()
    names = weir.register_udfs(ctx)
    assert set(names) == {
        "weir_normalize_email",
        "weir_normalize_country",
        "weir_to_utc",
        "weir_surrogate_key",
        "weir_json_get",
        "weir_is_valid_format",
    }
    row = (
        ctx.sql(
            "select weir_normalize_email(' A@B.COM ') as email,"
            " weir_normalize_country(' gb') as country,"
            " weir_to_utc('2026-11-27T10:00:00+02:00') as utc,"
            " weir_surrogate_key('u_1') = md5('u_1') as key_matches_dbt,"
            " weir_json_get('{\"a\": {\"b\": 2}}', 'a.b') as nested,"
            " weir_is_valid_format('nope', 'uuid') as is_uuid"
        )
        .to_arrow_table()
        .to_pylist()[0]
    )
    assert row["email"] == "a@b.com"
    assert row["country"] == "GB"
    assert str(row["utc"]) == "2026-11-27 08:00:00+00:00"
    assert row["key_matches_dbt"] is True
    assert row["nested"] == "2"
    assert row["is_uuid"] is False


def test_udfs_run_over_arrays_with_nulls():
    ctx = datafusion.SessionContext()
    weir.register_udfs(ctx)
    batch = pa.record_batch({"email": [" X@Y.IO", None, "z@w.org "]})
    ctx.register_record_batches("people", [[batch]])
    got = ctx.sql("select weir_normalize_email(email) as e from people").to_arrow_table()
    assert got.column("e").to_pylist() == ["x@y.io", None, "z@w.org"]


def test_udf_errors_surface_as_python_exceptions():
    ctx = datafusion.SessionContext()
    weir.register_udfs(ctx)
    # datafusion-python raises its own exception type; the message is Weir's.
    with pytest.raises(Exception, match="is not an RFC 3339 timestamp"):
        ctx.sql("select weir_to_utc('yesterday')").collect()


def test_pipeline_sql_runs_unchanged_in_datafusion_python():
    """The pipeline file's transformation runs in a notebook session exactly as in Weir."""
    from weir import project

    sql = (project.pipeline_sql_path("shop_events")).read_text()
    transformed = sql.split("-- name: transformed", 1)[1]
    data = weir.validate(
        b'{"event_id":"0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11","event_type":"page_view",'
        b'"event_time":"2026-11-27T10:00:00Z","user_id":"u_1","user_email":"A@B.IO"}',
        format="ndjson",
    ).valid
    ctx = datafusion.SessionContext()
    weir.register_udfs(ctx)
    ctx.register_record_batches("events", [weir.pipeline_events(data).to_batches()])
    in_datafusion = ctx.sql(transformed.strip().rstrip(";")).to_arrow_table()
    in_weir = weir.transform(data)
    assert in_datafusion.to_pylist() == in_weir.to_pylist()
