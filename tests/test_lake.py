"""The lakehouse with a real SQLite metastore and real files: rows written by Rust read back
identically through weir.connect() (DataFusion), pyiceberg and DuckDB; partitioning, zstd,
the audit log, time travel, errors, concurrent writers and compaction racing a writer."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import weir
from tests.support.lake_writer import shop_events
from weir.config import LakeSettings

HERE = Path(__file__).parent
ROOT = HERE.parent  # on PYTHONPATH of the subprocesses, for tests.support
WRITER = HERE / "support" / "lake_writer.py"


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    return LakeSettings(str(tmp_path / "metastore.db"), str(tmp_path / "warehouse"))


def processed(first: int, n: int) -> pa.Table:
    events = "\n".join(json.dumps(e) for e in shop_events(first, n))
    return weir.process(events, "ndjson", strict=True).output


def canonical(table: pa.Table, schema: pa.Schema) -> list[dict]:
    """Rows sorted by event_id, with types unified to ``schema`` (the engines differ in string
    and timestamp flavours, not in values)."""
    table = table.select(schema.names)
    table = pa.Table.from_batches([b.cast(schema) for b in table.to_batches()], schema=schema)
    return table.sort_by("event_id").to_pylist()


def round_trip(settings: LakeSettings, rows: int = 300) -> None:
    """Rust writes; DataFusion, pyiceberg and DuckDB read the same rows."""
    output = processed(0, rows)
    first = weir.append(
        "raw.shop_events", output.slice(0, rows // 2), {"weir.note": "first"}, settings=settings
    )
    second = weir.append("raw.shop_events", output.slice(rows // 2), settings=settings)
    assert first.record_count + second.record_count == rows
    assert first.snapshot_id != second.snapshot_id

    ctx = weir.connect(settings)
    via_datafusion = ctx.sql("select * from lake.raw.shop_events").to_arrow_table()
    schema = via_datafusion.schema
    expected = canonical(output, pa.schema([schema.field(n) for n in output.schema.names]))
    assert (
        canonical(via_datafusion, pa.schema([schema.field(n) for n in output.schema.names]))
        == expected
    )

    pyiceberg_table = weir.lake.catalog(settings).load_table("raw.shop_events")
    via_pyiceberg = pyiceberg_table.scan().to_arrow()
    assert (
        canonical(via_pyiceberg, pa.schema([schema.field(n) for n in output.schema.names]))
        == expected
    )

    con = weir.lake.duckdb_connection(settings)
    location = weir.lake.metadata_location("raw.shop_events", settings=settings)
    via_duckdb = con.sql(f"select * from iceberg_scan('{location}')").arrow()
    if isinstance(via_duckdb, pa.RecordBatchReader):
        via_duckdb = via_duckdb.read_all()
    assert (
        canonical(via_duckdb, pa.schema([schema.field(n) for n in output.schema.names])) == expected
    )

    by_day = ctx.sql(
        "select event_date, count(*) as n from lake.raw.shop_events group by 1 order by 1"
    ).to_pydict()
    assert [str(d) for d in by_day["event_date"]] == ["2026-11-25", "2026-11-26", "2026-11-27"]
    assert sum(by_day["n"]) == rows


def test_rows_read_back_identically_through_datafusion_pyiceberg_and_duckdb(
    settings: LakeSettings,
) -> None:
    round_trip(settings)


def test_tables_are_day_partitioned_and_every_data_file_is_zstd(settings: LakeSettings) -> None:
    weir.append("raw.shop_events", processed(0, 90), settings=settings)
    assert weir.lake.partition_spec("raw.shop_events", settings=settings) == [
        ("event_time_day", "day", "event_time")
    ]
    assert weir.lake.partition_spec("raw.shop_events_rejected", settings=settings) == [
        ("ingested_at_day", "day", "ingested_at")
    ]
    spec = weir.lake.catalog(settings).load_table("raw.shop_events").spec()
    assert [(f.name, str(f.transform)) for f in spec.fields] == [("event_time_day", "day")]

    files = weir.lake.files("raw.shop_events", settings=settings).to_pylist()
    assert sorted(json.loads(f["partition"])["event_time_day"] for f in files) == [
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",
    ]
    for f in files:
        assert f"event_time_day={json.loads(f['partition'])['event_time_day']}" in f["file_path"]
        metadata = pq.ParquetFile(f["file_path"]).metadata
        codecs = {
            metadata.row_group(g).column(c).compression
            for g in range(metadata.num_row_groups)
            for c in range(metadata.num_columns)
        }
        assert codecs == {"ZSTD"}, (f["file_path"], codecs)
        assert metadata.num_rows == f["record_count"]


def test_rejected_records_land_with_violations_and_ingest_time(
    settings: LakeSettings, sample_events: list[dict]
) -> None:
    result = weir.process("\n".join(json.dumps(e) for e in sample_events), "ndjson")
    before = time.time()
    info = weir.append("raw.shop_events_rejected", result.rejected, settings=settings)
    assert info.record_count == result.rejected.num_rows > 0
    stored = weir.lake.read("raw.shop_events_rejected", settings=settings).sort_by("record_index")
    assert stored["raw"].to_pylist() == result.rejected.sort_by("record_index")["raw"].to_pylist()
    assert (
        stored["violations"].to_pylist()
        == result.rejected.sort_by("record_index")["violations"].to_pylist()
    )
    ingested = pc.unique(stored["ingested_at"]).to_pylist()
    assert len(ingested) == 1 and ingested[0].timestamp() >= before - 1


def test_one_audit_line_per_commit(tmp_path: Path) -> None:
    script = (
        "import json, weir\n"
        "from weir.config import LakeSettings\n"
        "from tests.support.lake_writer import shop_events\n"
        f"s = LakeSettings({str(tmp_path / 'm.db')!r}, {str(tmp_path / 'w')!r})\n"
        "for k in range(3):\n"
        "    lines = '\\n'.join(json.dumps(e) for e in shop_events(k * 10, 10))\n"
        "    out = weir.process(lines, 'ndjson').output\n"
        "    i = weir.append('raw.shop_events', out, settings=s)\n"
        "    print(json.dumps({'snapshot_id': i.snapshot_id, 'data_files': i.data_files,\n"
        "                      'records': i.record_count}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WEIR_LOG"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    commits = [json.loads(line) for line in done.stdout.splitlines()]
    audit = [json.loads(line) for line in done.stderr.splitlines() if '"weir::audit"' in line]
    appends = [a for a in audit if a["event"] == "commit"]
    assert len(commits) == 3 and len(appends) == 3, done.stderr
    for commit, line in zip(commits, appends, strict=True):
        assert (
            line["table"] == "raw.shop_events"
            and line["component"] == "lake"
            and "timestamp" in line
        )
        assert line["snapshot_id"] == commit["snapshot_id"]
        assert line["record_count"] == commit["records"] == 10
        assert json.loads(line["data_files"]) == commit["data_files"]


def test_time_travel_by_snapshot_id_and_by_timestamp(settings: LakeSettings) -> None:
    first = weir.append("raw.shop_events", processed(0, 30), settings=settings)
    time.sleep(0.05)
    between = time.time()
    time.sleep(0.05)
    weir.append("raw.shop_events", processed(30, 20), settings=settings)
    ctx = weir.connect(settings)
    assert ctx.sql("select count(*) as n from lake.raw.shop_events").to_pydict()["n"] == [50]
    used = weir.lake.register_snapshot(
        ctx, "at_first", "raw.shop_events", snapshot_id=first.snapshot_id, settings=settings
    )
    assert used == first.snapshot_id
    assert ctx.sql("select count(*) as n from at_first").to_pydict()["n"] == [30]
    used = weir.lake.register_snapshot(
        ctx, "at_time", "raw.shop_events", as_of=between, settings=settings
    )
    assert used == first.snapshot_id
    assert ctx.sql("select count(*) as n from at_time").to_pydict()["n"] == [30]
    snapshots = weir.lake.snapshots("raw.shop_events", settings=settings)
    assert snapshots["total_records"].to_pylist() == [30, 50]
    metadata_snapshots = ctx.sql(
        'select count(*) as n from lake.raw."shop_events$snapshots"'
    ).to_pydict()
    assert metadata_snapshots["n"] == [2]
    with pytest.raises(weir.TableError, match="no snapshot"):
        weir.lake.register_snapshot(ctx, "x", "raw.shop_events", as_of=0, settings=settings)


def test_the_processor_reads_iceberg_data_files(settings: LakeSettings) -> None:
    weir.append("raw.shop_events", processed(0, 40), settings=settings)
    stored = weir.lake.read("raw.shop_events", settings=settings)
    rerun = weir.transform(
        stored,
        sql="select event_id, weir_normalize_country(lower(user_country)) as country, amount "
        "from events",
    )
    assert rerun.num_rows == 40
    assert set(rerun["country"].to_pylist()) == {"DE"}
    assert pc.sum(rerun["amount"]).as_py() == pytest.approx(pc.sum(stored["amount"]).as_py())


def test_bad_input_is_refused_by_name_and_nothing_is_written(settings: LakeSettings) -> None:
    weir.append("raw.shop_events", processed(0, 5), settings=settings)
    with pytest.raises(weir.SchemaMismatchError, match="surprise"):
        weir.append(
            "raw.shop_events", pa.table({"event_id": ["x"], "surprise": [1]}), settings=settings
        )
    with pytest.raises(weir.SchemaMismatchError, match="quantity"):
        weir.append("raw.shop_events", pa.table({"quantity": pa.array([[1]])}), settings=settings)
    with pytest.raises(weir.TableError, match=r"raw\.nope"):
        weir.append("raw.nope", processed(0, 1), settings=settings)
    with pytest.raises(weir.TableError, match=r"namespace\.table"):
        weir.append("shop_events", processed(0, 1), settings=settings)
    with pytest.raises(weir.ConfigError, match="metastore"):
        weir.lake.open_lake(LakeSettings("mysql://nope", "/tmp/x"))
    assert weir.lake.snapshots("raw.shop_events", settings=settings).num_rows == 1


def test_sql_inserts_into_lake_tables_are_refused(settings: LakeSettings) -> None:
    weir.append("raw.shop_events", processed(0, 5), settings=settings)
    ctx = weir.connect(settings)
    with pytest.raises(Exception, match=r"weir\.append"):
        ctx.sql("insert into lake.raw.shop_events select * from lake.raw.shop_events").collect()
    assert ctx.sql("select count(*) as n from lake.raw.shop_events").to_pydict()["n"] == [5]


def run_writers(
    settings: LakeSettings,
    specs: list[tuple[int, int, int]],
    *extra_args: str,
    **popen: Any,
) -> list[subprocess.Popen]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), WEIR_LOG="error")
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "--metastore",
                settings.metastore,
                "--warehouse",
                settings.warehouse,
                "--first",
                str(first),
                "--commits",
                str(commits),
                "--rows",
                str(rows),
                *extra_args,
            ],
            env=env,
            **popen,
        )
        for first, commits, rows in specs
    ]


def finish(process: subprocess.Popen) -> list[dict]:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return [json.loads(line) for line in out.splitlines()]


@pytest.mark.slow
def test_four_processes_appending_fifty_commits_each_lose_nothing(settings: LakeSettings) -> None:
    weir.lake.ensure_dataset("shop_events", settings)
    writers = run_writers(settings, [(k * 100_000, 50, 5) for k in range(4)])
    commits = [c for w in writers for c in finish(w)]
    assert len(commits) == 200 and len({c["snapshot_id"] for c in commits}) == 200
    snapshots = weir.lake.snapshots("raw.shop_events", settings=settings)
    assert snapshots.num_rows == 200
    assert sorted(snapshots["snapshot_id"].to_pylist()) == sorted(c["snapshot_id"] for c in commits)
    assert snapshots["total_records"].to_pylist()[-1] == 1000
    ids = weir.lake.read("raw.shop_events", settings=settings)["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 1000
    expected = {e["event_id"] for k in range(4) for e in shop_events(k * 100_000, 250)}
    assert set(ids) == expected


def checksum(table: pa.Table) -> tuple[int, int]:
    """Row count and an order-independent checksum over every column's value."""
    total = 0
    for row in table.to_pylist():
        digest = hashlib.blake2b(
            json.dumps(row, sort_keys=True, default=str).encode(), digest_size=8
        ).digest()
        total = (total + int.from_bytes(digest, "little")) % (1 << 64)
    return table.num_rows, total


class CommitLines:
    """Reads a writer process's commit lines (one JSON object per commit) as it prints them,
    so a test can wait for the writer's next commit instead of sleeping."""

    def __init__(self, process: subprocess.Popen, stderr_path: Path) -> None:
        self.process = process
        self.stderr_path = stderr_path
        self.commits: list[dict] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_commit(self, timeout: float = 120.0) -> dict:
        """Waits for the writer's next commit line."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.process.poll()
            raise AssertionError(
                f"the writer stopped or stalled after {len(self.commits)} commits"
                f" (exit code {self.process.returncode}):"
                f" {self.stderr_path.read_text()[-3000:]}"
            )
        self.commits.append(json.loads(line))
        return self.commits[-1]

    def finish(self, timeout: float = 120.0) -> list[dict]:
        """Waits for the writer to exit by itself; returns every commit it printed."""
        assert self.process.wait(timeout=timeout) == 0, self.stderr_path.read_text()[-3000:]
        while (line := self._lines.get(timeout=timeout)) is not None:
            self.commits.append(json.loads(line))
        return self.commits

    def close(self) -> None:
        """Stops the writer if it still runs and closes its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=30)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@pytest.mark.slow
def test_compaction_keeps_every_row_while_another_process_appends(
    settings: LakeSettings, tmp_path: Path
) -> None:
    for k in range(200):
        weir.append("raw.shop_events", processed(k * 3, 3), settings=settings)
    columns = [
        n
        for n in weir.lake.read("raw.shop_events", settings=settings).schema.names
        if n != "ingested_at"
    ]
    before = weir.lake.read("raw.shop_events", settings=settings).select(columns)
    files_before = weir.lake.files("raw.shop_events", settings=settings).num_rows
    assert files_before == 600

    # The writer commits 3 rows (one per day partition) when asked: once before compaction
    # starts, and once after compaction has read the table (it has begun writing a compacted
    # file), so that this commit lands while compaction runs. (A writer committing without
    # pause would starve compaction: each replace attempt rereads every manifest.)
    warehouse = Path(settings.warehouse)
    with (tmp_path / "writer.err").open("w") as stderr:
        writer = run_writers(
            settings, [(1_000_000, 2, 3)], "--on-request", stdin=subprocess.PIPE, stderr=stderr
        )[0]
    lines = CommitLines(writer, tmp_path / "writer.err")

    def commit_once() -> None:
        writer.stdin.write("commit\n")
        writer.stdin.flush()
        lines.next_commit()

    try:
        commit_once()
        files = set(warehouse.rglob("*.parquet"))
        with ThreadPoolExecutor(1) as pool:
            compaction = pool.submit(
                weir.maintain, ["raw.shop_events"], expire=False, settings=settings
            )
            deadline = time.monotonic() + 120
            while not compaction.done() and set(warehouse.rglob("*.parquet")) <= files:
                assert time.monotonic() < deadline, "compaction wrote no file in two minutes"
                time.sleep(0.01)
            commit_once()
            reports = compaction.result(timeout=600)
        writer.stdin.close()
        appended = lines.finish()
    finally:
        lines.close()
    report = reports[0]
    assert report["partitions_compacted"] == 3 and report["partitions_superseded"] == 0, report
    assert len(appended) == 2 and appended[0]["snapshot_id"] != appended[1]["snapshot_id"]

    # The race happened: the history is one chain holding every commit; compaction read the
    # table with the writer's first commit only, and the second landed before its last
    # replace, which therefore had to keep a file it had not read.
    snapshots = weir.lake.snapshots("raw.shop_events", settings=settings).to_pylist()
    order = [s["snapshot_id"] for s in snapshots]
    assert [s["parent_id"] for s in snapshots[1:]] == order[:-1]
    assert {c["snapshot_id"] for c in appended} | set(report["snapshot_ids"]) <= set(order)
    replaced = [s for s in snapshots if s["snapshot_id"] in report["snapshot_ids"]]
    assert [s["operation"] for s in replaced] == ["replace"] * 3
    # Each writer commit adds one file to every partition, so each replace removes its
    # partition's 200 first files plus one per writer commit in the table compaction read.
    removed = [int(json.loads(s["summary"])["deleted-data-files"]) for s in replaced]
    assert removed == [201] * 3, removed
    assert order.index(appended[1]["snapshot_id"]) < order.index(report["snapshot_ids"][-1]), (
        "the writer's second commit landed after compaction had finished",
        report,
    )

    after = weir.lake.read("raw.shop_events", settings=settings).select(columns)
    new_rows = processed(1_000_000, 3 * len(appended)).select(columns)
    count_before, sum_before = checksum(before)
    count_new, sum_new = checksum(
        pa.Table.from_batches([b.cast(before.schema) for b in new_rows.to_batches()])
    )
    assert checksum(after) == (count_before + count_new, (sum_before + sum_new) % (1 << 64))

    # A second pass, with no writer, leaves one file per day partition.
    weir.maintain(["raw.shop_events"], expire=False, settings=settings)
    files = weir.lake.files("raw.shop_events", settings=settings).to_pylist()
    per_partition: dict[str, int] = {}
    for f in files:
        per_partition[f["partition"]] = per_partition.get(f["partition"], 0) + 1
    assert len(per_partition) == 3 and max(per_partition.values()) <= 2, per_partition
    assert checksum(
        weir.lake.read("raw.shop_events", settings=settings).select(columns)
    ) == checksum(after)

    # Expiry keeps the newest snapshots, deletes files nothing references, keeps the rows.
    report = weir.maintain(
        ["raw.shop_events"],
        compact=False,
        retain_last=2,
        max_snapshot_age=timedelta(0),
        settings=settings,
    )
    assert report[0]["snapshots_kept"] == 2 and report[0]["files_deleted"] > 500, report
    assert checksum(
        weir.lake.read("raw.shop_events", settings=settings).select(columns)
    ) == checksum(after)
    ctx = weir.connect(settings)
    assert ctx.sql("select count(*) as n from lake.raw.shop_events").to_pydict()["n"] == [
        after.num_rows
    ]


@pytest.mark.slow
def test_a_crash_in_maintenance_leaves_a_readable_table_and_the_next_run_removes_orphans(
    tmp_path: Path,
) -> None:
    """A maintenance process killed while compaction writes its files: the table reads the
    same rows; the files it left are referenced by nothing, and the next run deletes them."""
    settings = LakeSettings(
        str(tmp_path / "metastore.db"),
        str(tmp_path / "warehouse"),
        maintenance={"orphan_age_hours": 0, "compact_min_files": 2},
    )
    for k in range(12):
        weir.append("raw.shop_events", processed(k * 10_000, 10_000), settings=settings)
    columns = [
        n
        for n in weir.lake.read("raw.shop_events", settings=settings).schema.names
        if n != "ingested_at"
    ]
    before = checksum(weir.lake.read("raw.shop_events", settings=settings).select(columns))
    data = tmp_path / "warehouse" / "raw" / "shop_events" / "data"
    existing = {p for p in data.rglob("*") if p.is_file()}

    def referenced() -> set[str]:
        snapshots = weir.lake.snapshots("raw.shop_events", settings=settings)
        return {
            path
            for snapshot_id in snapshots.column("snapshot_id").to_pylist()
            for path in weir.lake.files(
                "raw.shop_events", snapshot_id=snapshot_id, settings=settings
            )
            .column("file_path")
            .to_pylist()
        }

    script = (
        "import weir, sys; from weir.config import LakeSettings;"
        "s = LakeSettings(sys.argv[1], sys.argv[2], maintenance={'compact_min_files': 2});"
        "weir.maintain(['raw.shop_events'], settings=s)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, settings.metastore, settings.warehouse],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 120
        while not {p for p in data.rglob("*") if p.is_file()} - existing:
            assert process.poll() is None, "maintenance finished before it wrote a file"
            assert time.monotonic() < deadline, "maintenance wrote no file"
            time.sleep(0.002)
        process.kill()  # while it writes the compacted file, before its commit
    finally:
        process.kill()
        process.wait()

    assert checksum(weir.lake.read("raw.shop_events", settings=settings).select(columns)) == before
    on_disk = {str(p) for p in data.rglob("*") if p.is_file()}
    orphans = on_disk - referenced()
    assert orphans, "the killed run left no file behind"

    report = weir.maintain(["raw.shop_events"], settings=settings)[0]
    assert report["orphans_deleted"] >= len(orphans), report
    on_disk = {str(p) for p in data.rglob("*") if p.is_file()}
    assert on_disk <= referenced() and not on_disk & orphans
    assert checksum(weir.lake.read("raw.shop_events", settings=settings).select(columns)) == before
