"""Lake reads and writes on every core (issue 17), with a real SQLite metastore and real
files. Scans: ``weir.connect()`` reads a table's files on several partitions
(``LakeScanExec``) and gives exactly the rows, every column, that Iceberg's own
single-stream reader (``weir.lake.read``) and a one-partition scan give: across many files,
with one day's files pruned by a filter, after compaction, at an old snapshot (time travel),
for ``count(*)`` and with a limit; DataFusion's Parquet reader where it reads what Iceberg
would, Iceberg's reader after a column was renamed. Writes: partitions encoded concurrently
give the same files, row for row, as one at a time (``lake.write.concurrency = 1``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.types import StringType

import weir
from tests.support.lake_writer import shop_events
from weir.config import LakeSettings

TABLE = "raw.shop_events"
APPENDS, ROWS = 6, 120  # each append writes one file per day: 3 days


@pytest.fixture
def settings(tmp_path: Path) -> LakeSettings:
    return LakeSettings(str(tmp_path / "metastore.db"), str(tmp_path / "warehouse"))


def append_all(settings: LakeSettings) -> list[int]:
    """``APPENDS`` commits of ``ROWS`` events over three days; their snapshot ids."""
    snapshots = []
    for n in range(APPENDS):
        events = "\n".join(json.dumps(e) for e in shop_events(n * ROWS, ROWS))
        output = weir.process(events, "ndjson", strict=True).output
        snapshots.append(weir.append(TABLE, output, settings=settings).snapshot_id)
    return snapshots


def rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["event_id"])


def explain(ctx, sql: str) -> str:
    plan = ctx.sql(f"explain {sql}").to_pydict()
    return "\n".join(plan["plan"])


def scan_line(plan: str) -> str:
    [line] = [x for x in plan.splitlines() if "LakeScanExec" in x]
    return line


def files_read(plan: str) -> tuple[int, int]:
    found = re.search(r"files=(\d+) of (\d+)", scan_line(plan))
    assert found, plan
    return int(found.group(1)), int(found.group(2))


def test_a_parallel_scan_reads_exactly_what_iceberg_reads(settings: LakeSettings) -> None:
    append_all(settings)
    want = rows(weir.lake.read(TABLE, settings=settings))
    assert len(want) == APPENDS * ROWS
    parallel = weir.connect(settings, partitions=4)
    single = weir.connect(settings, partitions=1)
    query = f"select * from lake.{TABLE}"
    assert "partitions=4 reader=parquet" in scan_line(explain(parallel, query))
    assert "partitions=1" in scan_line(explain(single, query))
    assert files_read(explain(parallel, query)) == (APPENDS * 3, APPENDS * 3)
    assert rows(parallel.sql(query).to_arrow_table()) == want
    assert rows(single.sql(query).to_arrow_table()) == want

    # Aggregates over all partitions, count(*) (from the files' row counts), a limit.
    by_day = parallel.sql(
        f"select event_date, count(*) as n, sum(amount) as amount from lake.{TABLE} "
        "group by 1 order by 1"
    ).to_pylist()
    assert [r["n"] for r in by_day] == [APPENDS * ROWS // 3] * 3
    amounts = {}
    for r in want:
        amounts[r["event_date"]] = amounts.get(r["event_date"], 0) + (r["amount"] or 0)
    assert [round(r["amount"], 6) for r in by_day] == [
        round(amounts[d], 6) for d in sorted(amounts)
    ]
    count = f"select count(*) as n from lake.{TABLE}"
    assert parallel.sql(count).to_pydict()["n"] == [APPENDS * ROWS]
    assert parallel.sql(f"select event_id from lake.{TABLE} limit 7").to_arrow_table().num_rows == 7


def test_a_filter_on_the_partition_reads_only_that_days_files(settings: LakeSettings) -> None:
    append_all(settings)
    ctx = weir.connect(settings, partitions=4)
    query = (
        f"select * from lake.{TABLE} where event_time >= timestamp '2026-11-26T00:00:00Z' "
        "and event_time < timestamp '2026-11-27T00:00:00Z'"
    )
    assert files_read(explain(ctx, query)) == (APPENDS, APPENDS * 3)
    got = rows(ctx.sql(query).to_arrow_table())
    want = [
        r
        for r in rows(weir.lake.read(TABLE, settings=settings))
        if r["event_time"].date().isoformat() == "2026-11-26"
    ]
    assert got == want and len(got) == APPENDS * ROWS // 3


def test_a_session_plans_each_query_on_the_tables_snapshot_now(settings: LakeSettings) -> None:
    """Plans are kept per metadata file (they never change), so a query run again on an
    unchanged table reads no manifest; but the same query on the same session after a
    commit, or after compaction, reads the new snapshot's files and rows."""
    append_all(settings)
    ctx = weir.connect(settings, partitions=2)
    one_day = (
        f"select count(*) as n, sum(amount) as amount from lake.{TABLE} "
        "where event_date = date '2026-11-26'"
    )
    count = f"select count(*) as n from lake.{TABLE}"
    first = ctx.sql(one_day).to_pylist()
    assert ctx.sql(one_day).to_pylist() == first and first[0]["n"] == APPENDS * ROWS // 3
    assert files_read(explain(ctx, one_day)) == (APPENDS, APPENDS * 3)

    events = "\n".join(json.dumps(e) for e in shop_events(APPENDS * ROWS, ROWS))
    weir.append(TABLE, weir.process(events, "ndjson", strict=True).output, settings=settings)
    assert files_read(explain(ctx, one_day)) == (APPENDS + 1, (APPENDS + 1) * 3)
    assert ctx.sql(one_day).to_pylist()[0]["n"] == (APPENDS + 1) * ROWS // 3
    assert ctx.sql(count).to_pydict()["n"] == [(APPENDS + 1) * ROWS]

    compacting = LakeSettings(
        settings.metastore, settings.warehouse, maintenance={"compact_min_files": 2}
    )
    weir.maintain([TABLE], expire=False, settings=compacting)
    assert files_read(explain(ctx, one_day)) == (1, 3)
    after = ctx.sql(one_day).to_pylist()
    assert after[0]["n"] == (APPENDS + 1) * ROWS // 3
    assert ctx.sql(count).to_pydict()["n"] == [(APPENDS + 1) * ROWS]


def test_scans_after_compaction_and_at_an_old_snapshot_agree_with_iceberg(
    settings: LakeSettings,
) -> None:
    snapshots = append_all(settings)
    compacting = LakeSettings(
        settings.metastore, settings.warehouse, maintenance={"compact_min_files": 2}
    )
    weir.maintain([TABLE], expire=False, settings=compacting)
    ctx = weir.connect(settings, partitions=4)
    query = f"select * from lake.{TABLE}"
    assert files_read(explain(ctx, query)) == (3, 3)  # one file per day after compaction
    assert rows(ctx.sql(query).to_arrow_table()) == rows(weir.lake.read(TABLE, settings=settings))

    # Time travel: the table as the second append left it, in its many small files.
    used = weir.lake.register_snapshot(
        ctx, "second", TABLE, snapshot_id=snapshots[1], settings=settings
    )
    plan = explain(ctx, "select * from second")
    assert f"snapshot={used}" in scan_line(plan) and files_read(plan) == (6, 6)
    old = rows(weir.lake.read(TABLE, snapshot_id=snapshots[1], settings=settings))
    assert rows(ctx.sql("select * from second").to_arrow_table()) == old
    assert len(old) == 2 * ROWS
    assert ctx.sql("select count(*) as n from second").to_pydict()["n"] == [2 * ROWS]


def test_connect_refuses_a_partition_count_below_one(settings: LakeSettings) -> None:
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        weir.connect(settings, partitions=0)


def test_partitions_written_concurrently_equal_partitions_written_one_at_a_time(
    tmp_path: Path,
) -> None:
    events = "\n".join(json.dumps(e) for e in shop_events(0, 3000))
    output = weir.process(events, "ndjson", strict=True).output
    # Thirty days, so thirty partitions to write; small row groups, several per file.
    days = pa.array([i % 30 for i in range(output.num_rows)], pa.int32())
    offsets = pc.multiply(days.cast(pa.int64()), 86_400_000_000).cast(pa.duration("us"))
    shifted = pc.add(output["event_time"], offsets)
    output = output.set_column(output.schema.get_field_index("event_time"), "event_time", shifted)
    files_by_partition = {}
    for concurrency in (1, 4):
        settings = LakeSettings(
            str(tmp_path / f"m{concurrency}.db"),
            str(tmp_path / f"w{concurrency}"),
            write={"concurrency": concurrency, "row_group_rows": 16},
        )
        assert settings.write["concurrency"] == concurrency
        weir.append(TABLE, output, settings=settings)
        by_partition = {}
        for f in weir.lake.files(TABLE, settings=settings).to_pylist():
            parquet = pq.ParquetFile(f["file_path"])
            rows_in_file = parquet.read().drop_columns(["ingested_at"]).to_pylist()
            by_partition.setdefault(f["partition"], []).append(
                (parquet.metadata.num_row_groups, rows_in_file)
            )
        files_by_partition[concurrency] = by_partition
    sequential, concurrent = files_by_partition[1], files_by_partition[4]
    assert len(sequential) == 30
    stored = [r["event_id"] for files in sequential.values() for _, rows in files for r in rows]
    assert sorted(stored) == sorted(output["event_id"].to_pylist())
    assert all(groups > 1 for files in sequential.values() for groups, _ in files)
    assert concurrent == sequential


def test_a_column_renamed_by_another_writer_is_read_by_field_id(settings: LakeSettings) -> None:
    """DataFusion's Parquet reader matches columns by name; once a column has been renamed
    (which Weir never does, but pyiceberg can), scans reading it fall back to Iceberg's
    reader, which matches by field id: files from before and after the rename both count."""
    append_all(settings)
    ctx = weir.connect(settings, partitions=2)
    query = f"select * from lake.{TABLE}"
    assert "reader=parquet" in scan_line(explain(ctx, query))
    before = rows(ctx.sql(query).to_arrow_table())
    with weir.lake.catalog(settings).load_table(TABLE).update_schema() as update:
        update.rename_column("referrer", "referrer_url")
    events = "\n".join(json.dumps(e) for e in shop_events(APPENDS * ROWS, ROWS))
    later = weir.process(events, "ndjson", strict=True).output
    later = later.rename_columns(
        ["referrer_url" if c == "referrer" else c for c in later.column_names]
    )
    weir.append(TABLE, later, settings=settings)

    ctx = weir.connect(settings, partitions=2, read_only=True)
    renamed = f"select event_id, referrer_url from lake.{TABLE}"
    assert "reader=iceberg" in scan_line(explain(ctx, renamed))
    got = sorted((r["event_id"], r["referrer_url"]) for r in ctx.sql(renamed).to_pylist())
    want = [(r["event_id"], r["referrer"]) for r in before]
    want += [(r["event_id"], r["referrer_url"]) for r in later.to_pylist()]
    assert got == sorted(want) and sum(v is not None for _, v in got) > ROWS
    assert got == sorted(
        (r["event_id"], r["referrer_url"])
        for r in weir.lake.read(TABLE, settings=settings).to_pylist()
    )
    # Columns that kept their names are still read by the Parquet reader.
    assert "reader=parquet" in scan_line(explain(ctx, f"select event_id from lake.{TABLE}"))


def test_a_column_dropped_and_added_again_reads_its_old_files_as_null(
    settings: LakeSettings,
) -> None:
    """A column dropped and added again under the same name (pyiceberg allows it; Weir
    refuses drops) is a new column with a new field id: Iceberg reads the files written
    before as null for it. Matching by name would read their old values, so scans reading
    it fall back to Iceberg's reader and give exactly Iceberg's rows."""
    append_all(settings)
    table = weir.lake.catalog(settings).load_table(TABLE)
    with table.update_schema(allow_incompatible_changes=True) as update:
        update.delete_column("referrer")
    with table.update_schema() as update:
        update.add_column("referrer", StringType())
    events = "\n".join(json.dumps(e) for e in shop_events(APPENDS * ROWS, ROWS))
    later = weir.process(events, "ndjson", strict=True).output
    weir.append(TABLE, later, settings=settings)

    ctx = weir.connect(settings, partitions=2, read_only=True)
    query = f"select event_id, referrer from lake.{TABLE}"
    assert "reader=iceberg" in scan_line(explain(ctx, query))
    got = sorted((r["event_id"], r["referrer"]) for r in ctx.sql(query).to_pylist())
    assert got == sorted(
        (r["event_id"], r["referrer"]) for r in weir.lake.read(TABLE, settings=settings).to_pylist()
    )
    new_ids = set(later["event_id"].to_pylist())
    assert all(v is None for e, v in got if e not in new_ids)
    assert sum(v is not None for e, v in got if e in new_ids) > 0
    assert "reader=parquet" in scan_line(explain(ctx, f"select event_id from lake.{TABLE}"))


def test_columns_changed_since_the_last_commit_are_read_from_the_snapshot(
    settings: LakeSettings,
) -> None:
    """Iceberg plans a scan in the snapshot's schema, which lags the table's when a column
    was added or renamed after the last commit (a contract change applied on start does
    that). Such a column is read under its name in the snapshot (same field id), or as null
    when the snapshot has none; filters on it are left to DataFusion."""
    append_all(settings)
    before = rows(weir.lake.read(TABLE, settings=settings))
    table = weir.lake.catalog(settings).load_table(TABLE)
    with table.update_schema() as update:
        update.add_column("coupon", StringType())
    with table.update_schema() as update:
        update.rename_column("referrer", "referrer_url")
    snapshots = weir.lake.catalog(settings).load_table(TABLE).snapshots()
    assert len(snapshots) == APPENDS  # no commit since the schema changes

    ctx = weir.connect(settings, partitions=2, read_only=True)
    got = ctx.sql(f"select event_id, coupon, referrer_url from lake.{TABLE}").to_pylist()
    assert sorted((r["event_id"], r["referrer_url"]) for r in got) == [
        (r["event_id"], r["referrer"]) for r in before
    ]
    assert all(r["coupon"] is None for r in got) and len(got) == APPENDS * ROWS
    referrer = before[0]["referrer"]
    with_referrer = sum(r["referrer"] == referrer for r in before)
    assert 0 < with_referrer < len(before)
    filtered = (
        f"select count(*) as n from lake.{TABLE} "
        f"where referrer_url = '{referrer}' and coupon is null"
    )
    assert ctx.sql(filtered).to_pydict()["n"] == [with_referrer]
    only_new = ctx.sql(f"select coupon from lake.{TABLE}").to_arrow_table()
    assert only_new.num_rows == APPENDS * ROWS and only_new["coupon"].null_count == APPENDS * ROWS
