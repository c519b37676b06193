"""The lake round trip (Rust writes; DataFusion, pyiceberg and DuckDB read) against real
servers started by the tests: an S3-API server (moto) as warehouse, and PostgreSQL as the
metastore (also for the streaming path's jobs, job records and leases)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

import weir
from tests.support.servers import moto_s3, postgres, postgres_binaries
from tests.support.stream_helpers import RunningConsumer, wait_final
from tests.test_lake import processed, round_trip
from weir import samples
from weir.config import LakeSettings


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway PostgreSQL server. Skipped only where PostgreSQL is not installed; one
    that is installed but will not start fails the test with its reason."""
    if postgres_binaries() is None:
        pytest.skip("PostgreSQL is not installed (no initdb; make setup installs it)")
    with postgres(tmp_path / "pg") as url:
        yield url


@pytest.mark.integration
def test_round_trip_on_an_s3_warehouse(tmp_path: Path) -> None:
    with moto_s3("weir-lake") as s3:
        settings = LakeSettings(str(tmp_path / "metastore.db"), "s3://weir-lake/warehouse", s3=s3)
        round_trip(settings)
        files = weir.lake.files("raw.shop_events", settings=settings)["file_path"].to_pylist()
        assert files and all(
            f.startswith("s3://weir-lake/warehouse/raw/shop_events/data/") for f in files
        )
        report = weir.maintain(["raw.shop_events"], expire=False, settings=settings)
        assert report[0]["partitions_compacted"] >= 1
        ctx = weir.connect(settings)
        assert ctx.sql("select count(*) as n from lake.raw.shop_events").to_pydict()["n"] == [300]

        # The maintenance policy lists the bucket to find orphans (here one file a crashed
        # writer left) and deletes them; everything referenced stays.
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=s3["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        orphan = "warehouse/raw/shop_events/data/left-by-a-crash.parquet"
        client.put_object(Bucket="weir-lake", Key=orphan, Body=b"never committed")
        eager = LakeSettings(
            settings.metastore, settings.warehouse, s3=s3, maintenance={"orphan_age_hours": 0}
        )
        report = weir.maintain(["raw.shop_events"], settings=eager)[0]
        assert report["orphans_deleted"] == 1, report
        keys = {
            o["Key"]
            for o in client.list_objects_v2(Bucket="weir-lake", Prefix="warehouse/")["Contents"]
        }
        assert orphan not in keys
        live = weir.lake.files("raw.shop_events", settings=eager)["file_path"].to_pylist()
        assert {f.removeprefix("s3://weir-lake/") for f in live} <= keys
        ctx = weir.connect(eager)
        assert ctx.sql("select count(*) as n from lake.raw.shop_events").to_pydict()["n"] == [300]


@pytest.mark.integration
def test_round_trip_with_a_postgresql_metastore(tmp_path: Path, postgres_url: str) -> None:
    settings = LakeSettings(postgres_url, str(tmp_path / "warehouse"))
    round_trip(settings)
    weir.append("raw.shop_events", processed(1000, 10), settings=settings)
    assert weir.lake.snapshots("raw.shop_events", settings=settings).num_rows == 3


@pytest.mark.integration
def test_streaming_jobs_with_a_postgresql_metastore(
    tmp_path: Path, postgres_url: str, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs, job records (several small jobs share a Kinesis record), leases and their
    set-based updates on PostgreSQL."""
    monkeypatch.setenv("WEIR_METASTORE", postgres_url)
    monkeypatch.setenv("WEIR_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("WEIR_KINESIS_STREAM_PREFIX", f"pg{uuid.uuid4().hex[:8]}-")
    events = samples.generate_shop_events(600, invalid_fraction=0.05, seed=31)
    bodies = [samples.to_ndjson(events[i : i + 20]) for i in range(0, 600, 20)]
    # Jobs published within the linger share records, however slow the machine is.
    producer = weir.stream.producer(linger_ms=300)
    with RunningConsumer(), ThreadPoolExecutor(8) as pool:
        # Concurrent small jobs: the producer packs those waiting together into one record.
        receipts = list(pool.map(lambda body: producer.publish("shop_events", body), bodies))
        ids = [r.job_id for r in receipts]
        jobs = wait_final(ids)
    records = {(record.shard_id, record.sequence_number) for r in receipts for record in r.records}
    assert len(records) < len(ids), "no two jobs shared a Kinesis record"
    expected = [weir.validate(body, "shop_events", format="ndjson") for body in bodies]
    for job_id, result in zip(ids, expected, strict=True):
        job = jobs[job_id]
        assert (job.valid, job.rejected) == (result.valid.num_rows, result.rejected.num_rows)
        assert job.status == ("partially_rejected" if job.rejected else "committed")
        assert job.snapshot_ids
        assert job.contract_versions == [weir.processor("shop_events").contract_version]
    valid = sum(r.valid.num_rows for r in expected)
    assert weir.lake.read("raw.shop_events").num_rows == valid
    # The retention's set-based deletes: nothing is old enough, then everything is.
    assert weir.stream.prune()["jobs"] == 0
    pruned = weir.stream.prune(older_than=timedelta(0))
    assert pruned["jobs"] == len(ids) and pruned["job_records"] >= len(records), pruned
    assert weir.stream.jobs().num_rows == 0 and weir.stream.batches().num_rows == 0


@pytest.mark.integration
def test_a_postgresql_metastore_made_before_contract_versions_gains_them(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The column migration of ``Metastore::open`` on PostgreSQL (the SQLite one is in
    ``test_contract_evolution.py``)."""
    import psycopg2

    from tests.test_contract_evolution import OLD_METASTORE

    with psycopg2.connect(postgres_url) as db, db.cursor() as cursor:
        cursor.execute(OLD_METASTORE)
    monkeypatch.setenv("WEIR_METASTORE", postgres_url)
    monkeypatch.setenv("WEIR_WAREHOUSE", str(tmp_path / "warehouse"))
    job = weir.stream.job("old-job")
    assert job is not None and job.snapshot_ids == [7] and job.contract_versions == []
    with psycopg2.connect(postgres_url) as db, db.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE column_name LIKE 'contract_version%' ORDER BY table_name"
        )
        assert cursor.fetchall() == [
            ("weir_job_records", "contract_version"),
            ("weir_jobs", "contract_versions"),
        ]
