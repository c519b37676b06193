"""The lake round trip (Rust writes; DataFusion, pyiceberg and DuckDB read) against real
servers started by the tests: an S3-API server (moto) as warehouse, and PostgreSQL as the
metastore."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import weir
from servers import moto_s3, postgres
from test_lake import processed, round_trip
from weir.config import LakeSettings


@pytest.mark.integration
def test_round_trip_on_an_s3_warehouse(tmp_path: Path) -> None:
    with moto_s3("weir-lake") as s3:
        settings = LakeSettings(str(tmp_path / "metastore.db"), "s3://weir-lake/warehouse", s3=s3)
        round_trip(settings)
        files = weir.lake.files("raw.shop_events", settings=settings)["file_path"].to_pylist()
        assert files and all(
            f.startswith("s3://weir-lake/warehouse/raw/shop_events/data/") for f in files
        )
        report = weir.maintain(["raw.shop_events"], settings=settings)
        assert report[0]["partitions_compacted"] >= 1
        ctx = weir.connect(settings)
        assert ctx.sql("select count(*) as n from lake.raw.shop_events").to_pydict()["n"] == [300]


@pytest.mark.integration
def test_round_trip_with_a_postgresql_metastore(tmp_path: Path) -> None:
    try:
        server = postgres(tmp_path / "pg")
        url = server.__enter__()
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"PostgreSQL could not start here: {e}")
    try:
        settings = LakeSettings(url, str(tmp_path / "warehouse"))
        round_trip(settings)
        weir.append("raw.shop_events", processed(1000, 10), settings=settings)
        assert weir.lake.snapshots("raw.shop_events", settings=settings).num_rows == 3
    finally:
        server.__exit__(None, None, None)
