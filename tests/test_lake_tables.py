"""Tables for the analytics half (``marts.*``, ``ops.*``): ``weir.lake.create_table`` and
``weir.lake.overwrite`` against a real SQLite metastore and warehouse. Contents are replaced in
one snapshot (a reader never sees a mix or an empty table), overwrites racing appends keep
every commit in the history and end in the state their order implies, files are zstd, each
commit logs one audit line, and pyiceberg and DuckDB read what DataFusion reads."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import weir
from weir.config import LakeSettings

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = pa.schema(
    [
        ("day", pa.date32()),
        ("country", pa.string()),
        ("orders", pa.int64()),
        ("revenue", pa.float64()),
        ("version", pa.int64()),
    ]
)


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    return LakeSettings(str(tmp_path / "metastore.db"), str(tmp_path / "warehouse"))


def rows(version: int, n: int, first_id: int = 0) -> pa.Table:
    """``n`` rows all carrying ``version``; ``orders`` are ids ``first_id..first_id+n``."""
    return pa.table(
        {
            "day": [date(2026, 1 + i % 12, 1 + i % 28) for i in range(n)],
            "country": ["GB" if i % 2 else "DE" for i in range(n)],
            "orders": list(range(first_id, first_id + n)),
            "revenue": [i * 1.5 for i in range(n)],
            "version": [version] * n,
        },
        schema=SCHEMA,
    )


def test_create_table_declares_columns_and_partitioning(settings: LakeSettings) -> None:
    created = weir.lake.create_table(
        "marts.daily_sales", SCHEMA, partition=["month(day)", "country"], settings=settings
    )
    assert created == ["month(day)", "identity(country)"]
    assert "marts.daily_sales" in weir.lake.tables(settings=settings)
    assert weir.lake.partition_spec("marts.daily_sales", settings=settings) == [
        ("day_month", "month", "day"),
        ("country", "identity", "country"),
    ]
    table = weir.lake.catalog(settings).load_table("marts.daily_sales")
    assert table.schema().column_names == SCHEMA.names
    assert table.properties["write.parquet.compression-codec"] == "zstd"
    # No column is added: marts hold exactly what the model produces.
    assert weir.lake.read("marts.daily_sales", settings=settings).schema.names == SCHEMA.names


def test_create_table_refuses_what_it_cannot_honour(settings: LakeSettings) -> None:
    weir.lake.create_table("marts.t", SCHEMA, partition=["month(day)"], settings=settings)
    with pytest.raises(weir.TableError, match="already exists") as e:
        weir.lake.create_table("marts.t", SCHEMA, partition=["month(day)"], settings=settings)
    assert e.value.table == "marts.t"
    # The same shape again is fine with exist_ok; a different one is not.
    weir.lake.create_table(
        "marts.t", SCHEMA, partition=["month(day)"], exist_ok=True, settings=settings
    )
    with pytest.raises(weir.SchemaMismatchError, match=r"exists with columns .*version long"):
        weir.lake.create_table(
            "marts.t", SCHEMA.remove(4), partition=["month(day)"], exist_ok=True, settings=settings
        )
    with pytest.raises(weir.SchemaMismatchError, match=r"partitioned by \[month\(day\)\]"):
        weir.lake.create_table("marts.t", SCHEMA, exist_ok=True, settings=settings)
    with pytest.raises(weir.SchemaMismatchError, match=r"partition day\(country\)"):
        weir.lake.create_table("marts.u", SCHEMA, partition=["day(country)"], settings=settings)
    with pytest.raises(weir.SchemaMismatchError, match="no column nope"):
        weir.lake.create_table("marts.u", SCHEMA, partition=["day(nope)"], settings=settings)
    with pytest.raises(weir.SchemaMismatchError, match="expected a column or transform"):
        weir.lake.create_table("marts.u", SCHEMA, partition=["weekly(day)"], settings=settings)
    with pytest.raises(weir.TableError, match=r"namespace\.table"):
        weir.lake.create_table("daily_sales", SCHEMA, settings=settings)
    assert "marts.u" not in weir.lake.tables(settings=settings)


def test_overwrite_replaces_contents_in_one_zstd_snapshot(settings: LakeSettings) -> None:
    weir.lake.create_table("marts.t", SCHEMA, partition=["month(day)"], settings=settings)
    first = weir.lake.overwrite("marts.t", rows(1, 40), {"run": "a"}, settings=settings)
    assert (first.record_count, first.attempts) == (40, 1) and first.snapshot_id is not None
    second = weir.lake.overwrite("marts.t", rows(2, 25), settings=settings)
    assert isinstance(second, weir.CommitInfo)
    stored = weir.lake.read("marts.t", settings=settings)
    assert stored.num_rows == 25 and set(stored["version"].to_pylist()) == {2}
    snapshots = weir.lake.snapshots("marts.t", settings=settings).to_pylist()
    last = snapshots[-1]
    assert last["snapshot_id"] == second.snapshot_id and last["operation"] == "overwrite"
    assert last["parent_id"] == first.snapshot_id
    assert last["total_records"] == 25
    assert json.loads(snapshots[-2]["summary"])["run"] == "a"
    # Only the new files are live; every one of them is zstd Parquet.
    live = weir.lake.files("marts.t", settings=settings)["file_path"].to_pylist()
    assert sorted(live) == sorted(second.data_files)
    for path in live:
        codecs = {
            pq.ParquetFile(path.removeprefix("file:")).metadata.row_group(0).column(i).compression
            for i in range(len(SCHEMA))
        }
        assert codecs == {"ZSTD"}, path
    # DataFusion, pyiceberg and DuckDB agree.
    ours = weir.connect(settings).sql("select sum(orders) as s, count(*) as n from lake.marts.t")
    assert ours.to_pylist() == [{"s": sum(range(25)), "n": 25}]
    iceberg = weir.lake.catalog(settings).load_table("marts.t").scan().to_arrow()
    assert sorted(iceberg["orders"].to_pylist()) == list(range(25))
    location = weir.lake.metadata_location("marts.t", settings=settings)
    duck = weir.lake.duckdb_connection(settings)
    query = f"select count(*), min(version), max(version) from iceberg_scan('{location}')"
    assert duck.sql(query).fetchall() == [(25, 2, 2)]
    # Empty data empties the table, in a snapshot of its own.
    emptied = weir.lake.overwrite("marts.t", SCHEMA.empty_table(), settings=settings)
    assert emptied.snapshot_id is not None and emptied.record_count == 0
    assert weir.lake.read("marts.t", settings=settings).num_rows == 0
    # The time before is still there.
    assert (
        weir.lake.read("marts.t", snapshot_id=second.snapshot_id, settings=settings).num_rows == 25
    )


def test_a_reader_sees_the_old_contents_or_the_new_never_a_mix(settings: LakeSettings) -> None:
    """Each overwrite holds 30 rows of one version; a session querying all the while must see
    exactly 30 rows of a single version every time (a delete followed by an append would show
    0 rows, an append followed by a delete 60)."""
    weir.lake.create_table("marts.t", SCHEMA, partition=["month(day)"], settings=settings)
    weir.lake.overwrite("marts.t", rows(0, 30), settings=settings)
    ctx = weir.connect(settings)
    done = threading.Event()
    seen: list[tuple[int, int, int]] = []

    def read() -> None:
        query = "select count(*) as n, min(version) as lo, max(version) as hi from lake.marts.t"
        while not done.is_set():
            row = ctx.sql(query).to_pylist()[0]
            seen.append((row["n"], row["lo"], row["hi"]))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version in range(1, 16):
            weir.lake.overwrite("marts.t", rows(version, 30), settings=settings)
    finally:
        done.set()
        reader.join(timeout=60)
    versions = {lo for _, lo, _ in seen}
    assert len(seen) >= 5 and len(versions) >= 2, seen  # the reader really read during writes
    bad = [s for s in seen if s[0] != 30 or s[1] != s[2]]
    assert not bad, bad[:5]


def test_overwrites_racing_appends_lose_no_commit(settings: LakeSettings) -> None:
    """Overwrites and appends from several threads commit concurrently (compare-and-swap with
    retries). Every call's snapshot is in the table's history, and the rows are those of the
    last overwrite plus those of every append committed after it, each exactly once."""
    weir.lake.create_table("ops.t", SCHEMA, settings=settings)
    commits: dict[int, tuple[str, pa.Table]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def write(kind: str, worker: int) -> None:
        try:
            for k in range(6):
                first_id = (worker * 100 + k) * 1000
                data = rows(worker, 3 if kind == "append" else 5, first_id)
                if kind == "append":
                    info = weir.append("ops.t", data, settings=settings)
                else:
                    info = weir.lake.overwrite("ops.t", data, settings=settings)
                with lock:
                    commits[info.snapshot_id] = (kind, data)
        except BaseException as e:
            errors.append(e)

    workers = [threading.Thread(target=write, args=("append", w)) for w in range(3)]
    workers += [threading.Thread(target=write, args=("overwrite", w)) for w in range(3, 5)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=120)
    assert not errors, errors
    assert len(commits) == 30
    # Every commit moved the table from its parent to a new snapshot: one linear history.
    history = weir.lake.snapshots("ops.t", settings=settings).to_pylist()
    for parent, child in itertools.pairwise(history):
        assert child["parent_id"] == parent["snapshot_id"]
    chain = [s["snapshot_id"] for s in history]
    assert set(commits) == set(chain), "a commit is missing from the table's history"
    assert [s["operation"] for s in history] == [commits[i][0] for i in chain]
    last_overwrite = max(i for i, s in enumerate(chain) if commits[s][0] == "overwrite")
    expected: Counter[int] = Counter()
    for snapshot_id in chain[last_overwrite:]:
        expected.update(commits[snapshot_id][1]["orders"].to_pylist())
    stored = Counter(weir.lake.read("ops.t", settings=settings)["orders"].to_pylist())
    assert stored == expected
    assert max(stored.values()) == 1


def test_each_overwrite_logs_one_audit_line(settings: LakeSettings) -> None:
    script = (
        "import json, sys, weir\n"
        "import pyarrow as pa\n"
        "from weir.config import LakeSettings\n"
        f"s = LakeSettings({settings.metastore!r}, {settings.warehouse!r})\n"
        "weir.lake.create_table('marts.a', pa.schema([('x', pa.int64())]), settings=s)\n"
        "for n in (5, 3):\n"
        "    i = weir.lake.overwrite('marts.a', pa.table({'x': list(range(n))}), settings=s)\n"
        "    print(json.dumps({'snapshot_id': i.snapshot_id, 'data_files': i.data_files}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "WEIR_LOG"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    commits = [json.loads(line) for line in done.stdout.splitlines()]
    audit = [json.loads(line) for line in done.stderr.splitlines() if '"weir::audit"' in line]
    created = [a for a in audit if a["event"] == "table_created"]
    written = [a for a in audit if a["event"] == "commit"]
    assert [a["table"] for a in created] == ["marts.a"]
    assert len(written) == 2, done.stderr
    for commit, line, (records, removed) in zip(commits, written, [(5, 0), (3, 1)], strict=True):
        assert line["operation"] == "overwrite" and line["table"] == "marts.a"
        assert line["snapshot_id"] == commit["snapshot_id"]
        assert json.loads(line["data_files"]) == commit["data_files"]
        assert (line["record_count"], line["files_removed"]) == (records, removed)
