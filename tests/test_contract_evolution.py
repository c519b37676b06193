"""Contracts that evolve: a compatible change of a dataset's contract and pipeline SQL (a new
optional field, an int → long promotion) evolves its Iceberg tables while events flow, with
records of the old shape still in Kinesis; a breaking change is refused by ``weir contract
check`` and ``weir consume`` before anything moves; consumers racing to apply the same change
leave exactly one schema change. Real kinesalite, a real lake, ``weir consume`` processes.

The dataset is ``readings`` in a private ``WEIR_HOME``, whose contract and pipeline files each
test rewrites as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

import weir
from tests.support.servers import free_port
from tests.support.stream_helpers import ConsumerProcess, private_streams, wait_final

DATASET = "readings"
TABLE, REJECTED, DEAD_LETTER = (
    f"raw.{DATASET}",
    f"raw.{DATASET}_rejected",
    f"raw.{DATASET}_dead_letter",
)

FIELDS = {
    "reading_id": {"type": "string"},
    "device": {"type": "string", "pattern": "^d[0-9]+$"},
    "at": {"type": "string", "format": "date-time"},
    "value": {"type": "integer"},
}
HUMIDITY = {"humidity": {"type": "number", "minimum": 0, "maximum": 100}}
V1_SQL = "SELECT reading_id, device, weir_to_utc(at) AS at, CAST(value AS INT) AS value FROM events"
# v2: the new optional field, selected by the pipeline.
V2_SQL = (
    "SELECT reading_id, device, weir_to_utc(at) AS at, CAST(value AS INT) AS value, humidity "
    "FROM events"
)
# v3: `value` promoted from int to long.
V3_SQL = "SELECT reading_id, device, weir_to_utc(at) AS at, value, humidity FROM events"


def write_dataset(home: Path, fields: dict, sql: str) -> None:
    """The dataset's contract and pipeline SQL, as a user edits them: every field but
    ``humidity`` is required."""
    contract = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": DATASET,
        "type": "object",
        "additionalProperties": False,
        "x-weir-partition": ["day(at)"],
        "required": [name for name in fields if name != "humidity"],
        "properties": fields,
    }
    (home / "contracts").mkdir(parents=True, exist_ok=True)
    (home / "sql" / "pipeline").mkdir(parents=True, exist_ok=True)
    (home / "contracts" / f"{DATASET}.json").write_text(json.dumps(contract, indent=2))
    (home / "sql" / "pipeline" / f"{DATASET}.sql").write_text(f"-- name: transformed\n{sql};\n")


def readings(count: int, *, humidity: bool, start: int = 0) -> list[dict]:
    rows = []
    for i in range(start, start + count):
        row = {
            "reading_id": f"r{i:05d}",
            "device": f"d{i % 7}",
            "at": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:15:00+01:00",
            # Beyond int32 from row 70 on, which only the promoted column (v3) stores.
            "value": 3_000_000_000 + i if i >= 70 else i,
        }
        if humidity:
            row["humidity"] = float(i % 100)
        rows.append(row)
    return rows


def publish(rows: list[dict]) -> str:
    return weir.publish(DATASET, "\n".join(json.dumps(r) for r in rows).encode()).job_id


def consumer(name: str) -> ConsumerProcess:
    return ConsumerProcess(name, commit_interval_s=0.3, lease_ttl_s=2, dataset=DATASET)


def schema_changes_logged(*consumers: ConsumerProcess) -> list[dict]:
    return [
        line
        for c in consumers
        for line in c.lines
        if line.get("event") == "schema_evolved" and line.get("table") == TABLE
    ]


def schemas(table: str) -> list[dict]:
    """The schemas in the table's current metadata file, by id."""
    location = weir.lake.metadata_location(table)
    metadata = json.loads(Path(location.removeprefix("file://")).read_text())
    return sorted(metadata["schemas"], key=lambda schema: schema["schema-id"])


def weir_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kinesis_endpoint: str) -> Path:
    private_streams(tmp_path / "state", monkeypatch, shards=2)
    home = tmp_path / "home"
    monkeypatch.setenv("WEIR_HOME", str(home))
    write_dataset(home, FIELDS, V1_SQL)
    return home


def test_compatible_changes_evolve_the_tables_while_events_flow(home: Path) -> None:
    # v1: a consumer stores a first job; a second one waits in Kinesis when it stops.
    first = consumer("v1")
    try:
        old_rows = readings(40, humidity=False)
        jobs = [publish(old_rows[:20])]
        wait_final(jobs)
    finally:
        first.stop()
    jobs.append(publish(old_rows[20:]))
    old_snapshot = weir.lake.snapshots(TABLE).column("snapshot_id").to_pylist()[-1]
    tables_before = {t: weir.lake.metadata_location(t) for t in (REJECTED, DEAD_LETTER)}

    # v2 adds the optional field `humidity`: the check calls it compatible and changes nothing.
    write_dataset(home, {**FIELDS, **HUMIDITY}, V2_SQL)
    check = weir_cli("contract", "check", "--dataset", DATASET)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "compatible, applied on start: add column humidity (double" in check.stdout
    assert len(schemas(TABLE)) == 1
    second = consumer("v2")
    try:
        new_rows = readings(30, humidity=True, start=40)
        jobs.append(publish(new_rows))
        wait_final(jobs)
    finally:
        second.stop()

    # v3 promotes `value` from int to long; rows 70.. carry values beyond int32.
    write_dataset(home, {**FIELDS, **HUMIDITY}, V3_SQL)
    jobs.append(publish(readings(10, humidity=True, start=70)))  # waits in Kinesis
    third = consumer("v3")
    try:
        jobs.append(publish(readings(10, humidity=True, start=80)))
        final = wait_final(jobs)
    finally:
        third.stop()

    assert [final[j].status for j in jobs] == ["committed"] * len(jobs)
    assert [c["table"] for c in schema_changes_logged(first, second, third)] == [TABLE, TABLE]
    assert [len(s["fields"]) for s in schemas(TABLE)] == [5, 6, 6]  # with ingested_at
    # The other tables did not change shape, so they were not touched.
    assert {t: weir.lake.metadata_location(t) for t in tables_before} == tables_before
    assert weir.lake.read(DEAD_LETTER).num_rows == 0

    stored = weir.lake.read(TABLE).sort_by("reading_id")
    assert stored.column("reading_id").to_pylist() == [f"r{i:05d}" for i in range(90)]
    assert stored.schema.field("value").type == pa.int64()
    humidity = stored.column("humidity").to_pylist()
    assert humidity[:40] == [None] * 40, "rows of the old shape read the new column as null"
    assert humidity[40:] == [float(i % 100) for i in range(40, 90)]
    values = dict(zip(stored["reading_id"].to_pylist(), stored["value"].to_pylist(), strict=True))
    assert values["r00071"] == 3_000_000_071, "a long value stored after the promotion"

    # The same through weir.connect(), DuckDB and pyiceberg.
    query = f"select count(*) as n, count(humidity) as h, sum(value) as v from lake.{TABLE}"
    via_datafusion = weir.connect().sql(query).to_pydict()
    location = weir.lake.metadata_location(TABLE)
    con = weir.lake.duckdb_connection()
    via_duckdb = con.sql(
        f"select count(*), count(humidity), sum(value) from iceberg_scan('{location}')"
    ).fetchone()
    from pyiceberg.table import StaticTable

    via_pyiceberg = StaticTable.from_metadata(location).scan().to_arrow()
    want = (90, 50, sum(stored["value"].to_pylist()))
    assert (via_datafusion["n"][0], via_datafusion["h"][0], via_datafusion["v"][0]) == want
    assert tuple(via_duckdb) == want
    assert via_pyiceberg.num_rows == 90
    assert via_pyiceberg.column("humidity").null_count == 40

    # The quality suite generated from the contract checks the new column from now on.
    from weir.quality import suites

    checks = suites.contract_checks(TABLE, stored.column_names)
    assert ("humidity", "range") in {(c.column, c.kind) for c in checks}

    # Two contract versions (v3 changed only the pipeline), each with the schema it began with.
    history = weir.lake.contract_history(DATASET)
    assert [h["schema_id"] for h in history] == [0, 1]
    assert history[1]["version"] == weir.processor(DATASET).contract_version
    # v2's rows come after the empty snapshot that put the new schema in place.
    summaries = dict(
        zip(
            weir.lake.snapshots(TABLE).column("snapshot_id").to_pylist(),
            weir.lake.snapshots(TABLE).column("summary").to_pylist(),
            strict=True,
        )
    )
    assert json.loads(summaries[history[1]["after_snapshot_id"]])["weir.schema-id"] == "1"
    assert all(h["first_snapshot_id"] is not None and h["snapshots"] > 0 for h in history)
    # Each job names the contract that judged it; the job queued under v1 was judged by v2.
    versions = [h["version"] for h in history]
    assert [final[j].contract_versions for j in jobs] == [[versions[0]]] + [[versions[1]]] * 4
    listed = weir_cli("contract", "history", DATASET)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [
        h["version"] for h in history
    ]

    # The snapshot from before the change still reads with its own schema.
    then = weir.lake.read(TABLE, snapshot_id=old_snapshot)
    assert then.column_names == ["reading_id", "device", "at", "value", "ingested_at"]
    assert then.schema.field("value").type == pa.int32()
    assert then.num_rows == 20
    ctx = weir.connect()
    weir.lake.register_snapshot(ctx, "then", TABLE, snapshot_id=old_snapshot)
    assert ctx.sql("select count(*) as n from then").to_pydict() == {"n": [20]}


def test_a_breaking_change_is_refused_before_anything_moves(home: Path) -> None:
    weir.lake.ensure_dataset(DATASET)
    data = "\n".join(json.dumps(r) for r in readings(5, humidity=False))
    weir.lake.append(TABLE, weir.process(data, "ndjson", DATASET).output)
    # `device` renamed to `sensor`, `value` turned into a string.
    fields = {("sensor" if k == "device" else k): v for k, v in FIELDS.items()}
    write_dataset(
        home,
        fields,
        "SELECT reading_id, sensor, weir_to_utc(at) AS at, CAST(value AS VARCHAR) AS value "
        "FROM events",
    )
    job = publish([{**r, "sensor": r.pop("device")} for r in readings(5, humidity=False)])
    before = {t: weir.lake.metadata_location(t) for t in (TABLE, REJECTED, DEAD_LETTER)}

    check = weir_cli("contract", "check", "--dataset", DATASET)
    assert check.returncode == 1, check.stdout + check.stderr
    assert (
        f"{TABLE}: BREAKING: column device (string) is in the table but no longer" in check.stdout
    )
    assert f"{TABLE}: BREAKING: column value is int in the table but string in" in check.stdout
    assert "compatible, applied on start: add column sensor" in check.stdout
    assert "put the old column, type or partitioning back" in check.stdout

    for command in (["consume", "--dataset", DATASET], ["serve", "--port", str(free_port())]):
        refused_start = weir_cli(*command)
        assert refused_start.returncode == 1, refused_start.stdout + refused_start.stderr
        assert f"weir {command[0]}: refusing to start" in refused_start.stderr
        assert "column device" in refused_start.stderr

    # A session still reads the tables as they are (to backfill a new dataset, say).
    with pytest.warns(UserWarning, match="column device"):
        ctx = weir.connect()
    assert ctx.sql(f"select count(*) as n from lake.{TABLE}").to_pydict() == {"n": [5]}
    with pytest.raises(weir.IncompatibleChangeError, match="column device") as refused:
        weir.lake.ensure_dataset(DATASET)
    assert refused.value.table == TABLE and len(refused.value.changes) == 2
    # Nothing moved: no table changed, nothing was dead-lettered, the job still waits.
    assert {t: weir.lake.metadata_location(t) for t in before} == before
    assert weir.lake.read(DEAD_LETTER).num_rows == 0
    assert weir.stream.job(job).status == "published"


def test_consumers_racing_to_apply_a_change_leave_one_schema_change(home: Path) -> None:
    weir.lake.ensure_dataset(DATASET)
    jobs = [publish(readings(20, humidity=False))]  # old shape, in Kinesis
    write_dataset(home, {**FIELDS, **HUMIDITY}, V2_SQL)
    racers = [consumer(f"racer-{uuid.uuid4().hex[:4]}") for _ in range(2)]
    try:
        jobs.append(publish(readings(20, humidity=True, start=20)))
        final = wait_final(jobs)
    finally:
        for racer in racers:
            racer.stop()
    assert [final[j].status for j in jobs] == ["committed", "committed"]
    assert len(schema_changes_logged(*racers)) == 1
    assert len(schemas(TABLE)) == 2
    assert all(r.process.returncode == 0 for r in racers), [r.lines[-5:] for r in racers]
    assert weir.lake.read(DEAD_LETTER).num_rows == 0
    statuses = set(weir.stream.batches(DATASET).column("status").to_pylist())
    assert statuses <= {"committed"}, statuses
    assert sorted(weir.lake.read(TABLE).column("reading_id").to_pylist()) == [
        f"r{i:05d}" for i in range(40)
    ]


# The jobs tables as Weir made them before jobs recorded contract versions.
OLD_METASTORE = """
CREATE TABLE weir_jobs (job_id VARCHAR(64) PRIMARY KEY, dataset VARCHAR(255) NOT NULL,
    status VARCHAR(32) NOT NULL, received BIGINT NOT NULL, records BIGINT, valid BIGINT,
    rejected BIGINT, snapshot_ids TEXT, error TEXT, created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL);
CREATE TABLE weir_job_records (job_id VARCHAR(64) NOT NULL, stream VARCHAR(255) NOT NULL,
    shard_id VARCHAR(128) NOT NULL, sequence_number VARCHAR(128) NOT NULL,
    events BIGINT NOT NULL, valid BIGINT NOT NULL, rejected BIGINT NOT NULL,
    state VARCHAR(16) NOT NULL, snapshot_id BIGINT, error TEXT,
    PRIMARY KEY (job_id, shard_id, sequence_number));
INSERT INTO weir_jobs VALUES ('old-job', 'readings', 'committed', 3, 1, 3, 0, '7', NULL, 1, 2);
"""


def in_sqlite(path: Path, code: str) -> str:
    """Runs Python ``code`` with ``db``, a sqlite3 connection to ``path``, in another process
    (this one reads the metastore through Weir's own SQLite library, and two libraries in one
    process undo each other's locks); returns what it printed."""
    script = f"import sqlite3\ndb = sqlite3.connect({str(path)!r})\n{code}\ndb.commit()\n"
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout


def columns(path: Path, table: str) -> str:
    return in_sqlite(path, f"print(*[r[1] for r in db.execute('PRAGMA table_info({table})')])")


def test_a_metastore_made_before_contract_versions_gains_them_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEIR_HOME", str(tmp_path / "home"))
    path = Path(weir.config.lake_settings().sqlite_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    in_sqlite(path, f"db.executescript({OLD_METASTORE!r})")

    job = weir.stream.job("old-job")
    assert job is not None and job.status == "committed" and job.snapshot_ids == [7]
    assert job.contract_versions == [], "a job finished before the column has no versions"
    assert "contract_versions" in columns(path, "weir_jobs").split()
    assert "contract_version" in columns(path, "weir_job_records").split()
    assert weir.stream.jobs().column("contract_versions").to_pylist() == [[]]
