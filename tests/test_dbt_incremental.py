"""Incremental dbt runs and published marts, on real Iceberg tables written by Weir.

A lake gets N sample events (history included) and the project is built; then M more
events arrive: the newest ones plus late ones held back from the first load, among them
the whole middle version of users who moved twice (so a late event restates history: facts
already built must be keyed to a version that did not exist before). The incremental run
must read only the data files added since (the files the first build read are moved away
while it runs), and every published mart must equal a full refresh of the same data, row
by row. The marts are read back through ``weir.connect()``, pyiceberg and DuckDB with the
row counts dbt left."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest

import weir
from weir import modeling, samples

#: Each mart and its primary key.
MARTS = {
    "dim_users": "user_version_key",
    "dim_products": "product_version_key",
    "dim_date": "date_key",
    "fct_events": "event_id",
    "fct_order_lines": "order_line_id",
}


def split_with_late_events(events: pa.Table, new: int) -> tuple[pa.Table, pa.Table, set[str]]:
    """(first load, second load, users whose middle version arrives late): the second load
    is the ``new`` newest events plus every event of the middle country of users who moved
    twice, and every 50th older event."""
    rows = events.sort_by("event_time").to_pylist()
    older, newest = rows[:-new], rows[-new:]
    runs: dict[str, list[list[dict]]] = defaultdict(list)
    for row in older:
        user_runs = runs[row["user_id"]]
        if row["user_country"] is None:
            continue
        if not user_runs or user_runs[-1][0]["user_country"] != row["user_country"]:
            user_runs.append([])
        user_runs[-1].append(row)
    restated = {user for user, user_runs in runs.items() if len(user_runs) == 3}
    late_ids = {row["event_id"] for user in restated for row in runs[user][1]}
    late_ids |= {row["event_id"] for row in older[::50]}
    first = [row for row in older if row["event_id"] not in late_ids]
    second = newest + [row for row in older if row["event_id"] in late_ids]
    return (
        pa.Table.from_pylist(first, events.schema),
        pa.Table.from_pylist(second, events.schema),
        restated,
    )


def pyiceberg_counts(tables: list[str]) -> dict[str, int]:
    """Row counts read by pyiceberg, in its own process: pyiceberg's SQLite (Python's
    sqlite3) and Weir's (sqlx) in one process undo each other's locks on the metastore
    (docs/architecture.md), and this process goes on writing through Weir."""
    code = (
        "import json, sys, weir\n"
        "catalog = weir.lake.catalog()\n"
        "print(json.dumps({t: catalog.load_table(t).scan().to_arrow().num_rows "
        "for t in sys.argv[1:]}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *tables], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def published(table: str) -> list[dict]:
    return weir.lake.read(f"marts.{table}").sort_by(MARTS[table]).to_pylist()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    state = tmp_path_factory.mktemp("dbt-incremental")
    patch = pytest.MonkeyPatch()
    patch.setenv("WEIR_STATE_DIR", str(state))
    for name in ("WEIR_METASTORE_URI", "WEIR_WAREHOUSE", "WEIR_CONFIG"):
        patch.delenv(name, raising=False)
    try:
        events = samples.generate_shop_events(4_000, invalid_fraction=0.05, seed=11)
        result = weir.process(json.dumps(events), "json")
        first, second, restated = split_with_late_events(result.output, 500)
        assert len(restated) >= 2, "the sample data should hold users who moved twice"
        weir.append("raw.shop_events", first)
        weir.append("raw.shop_events_rejected", result.rejected)
        base = modeling.build()
        assert base.ok, base.failures
        base_marts = {table: published(table) for table in MARTS}
        read_first = set(weir.lake.files("raw.shop_events").column("file_path").to_pylist())

        added = weir.append("raw.shop_events", second)
        # The files the first build read are moved away: the incremental run must not need
        # them. They come back before the full refresh.
        hidden = state / "hidden"
        for path in read_first:
            target = hidden / Path(path).relative_to(state)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
        try:
            incremental = modeling.build()
        finally:
            for path in read_first:
                shutil.move(hidden / Path(path).relative_to(state), path)
        assert incremental.ok, incremental.failures
        incremental_marts = {table: published(table) for table in MARTS}
        full = modeling.build(full_refresh=True)
        assert full.ok, full.failures
        yield {
            "state": state,
            "restated": restated,
            "added_files": len(added.data_files),
            "second": second,
            "base": base,
            "base_marts": base_marts,
            "incremental": incremental,
            "incremental_marts": incremental_marts,
            "full": full,
            "full_marts": {table: published(table) for table in MARTS},
        }
    finally:
        patch.undo()


def test_the_incremental_run_reads_only_the_new_data_files(runs: dict) -> None:
    base, incremental = runs["base"], runs["incremental"]
    first = base.sources["raw.shop_events"]
    assert first.since_snapshot_id is None and first.new_files == first.files >= 1
    read = incremental.sources["raw.shop_events"]
    assert read.since_snapshot_id == first.snapshot_id
    assert read.new_files == runs["added_files"] < read.files
    # It ran (with the first load's files gone) and staged exactly the new events.
    assert incremental.rows["staging.stg_weir__shop_events"] == (
        base.rows["staging.stg_weir__shop_events"] + runs["second"].num_rows
    )
    # Nothing new in the rejected table: nothing read from it.
    assert incremental.sources["raw.shop_events_rejected"].new_files == 0


def test_every_mart_equals_a_full_refresh_row_by_row(runs: dict) -> None:
    for table in MARTS:
        incremental, full = runs["incremental_marts"][table], runs["full_marts"][table]
        assert len(incremental) == len(full), table
        for got, expected in zip(incremental, full, strict=True):
            assert got == expected, (table, got, expected)


def test_late_events_restate_history(runs: dict) -> None:
    """The late middle versions exist after the incremental run, and facts built by the
    first run were re-keyed to them: the fact table was replaced, not appended to."""
    users = {
        row["user_id"]: row
        for row in runs["incremental_marts"]["dim_users"]
        if row["user_id"] in runs["restated"]
    }
    versions = defaultdict(int)
    for row in runs["incremental_marts"]["dim_users"]:
        if row["user_id"] in users:
            versions[row["user_id"]] += 1
    before = defaultdict(int)
    for row in runs["base_marts"]["dim_users"]:
        if row["user_id"] in users:
            before[row["user_id"]] += 1
    assert all(versions[u] == before[u] + 1 for u in users), (versions, before)
    rekeyed = {row["event_id"]: row["user_version_key"] for row in runs["base_marts"]["fct_events"]}
    changed = [
        row
        for row in runs["incremental_marts"]["fct_events"]
        if row["event_id"] in rekeyed and rekeyed[row["event_id"]] != row["user_version_key"]
    ]
    assert changed, "facts after a late middle version must point at new version keys"
    assert runs["incremental"].published["marts.fct_events"].mode == "overwrite"


def test_marts_are_readable_by_every_reader_with_dbt_counts(runs: dict) -> None:
    full = runs["full"]
    counts = {f"marts.{t}": full.rows[f"marts.{t}"] for t in MARTS}
    assert all(n > 0 for n in counts.values()), counts
    ctx = weir.connect()
    con = weir.lake.duckdb_connection()
    assert pyiceberg_counts(list(counts)) == counts
    for table, rows in counts.items():
        assert ctx.sql(f"select count(*) as n from lake.{table}").to_pylist()[0]["n"] == rows
        location = weir.lake.metadata_location(table)
        assert con.sql(f"select count(*) from iceberg_scan('{location}')").fetchone()[0] == rows
        publication = full.published[table]
        assert (publication.mode, publication.rows) == ("overwrite", rows)
        summary = json.loads(weir.lake.snapshots(table).column("summary")[-1].as_py())
        assert summary["dbt.invocation-id"] == full.invocation_id
        sources = json.loads(summary["dbt.source-snapshots"])
        assert sources["raw.shop_events"] == full.sources["raw.shop_events"].snapshot_id


def test_new_facts_alone_are_appended_and_no_data_changes_nothing(runs: dict) -> None:
    """Events later than everything stored, with no attribute change, add fact rows without
    re-keying any: the fact tables get an append of exactly those rows. A run with no new
    data reads no file and leaves the fact tables as they were."""
    import uuid
    from datetime import timedelta

    latest: dict[str, dict] = {}
    for row in runs["second"].sort_by("event_time").to_pylist():
        latest[row["user_id"]] = row
    copies = []
    for row in list(latest.values())[:25]:
        copy = dict(row, event_id=str(uuid.uuid4()))
        copy["event_time"] = row["event_time"] + timedelta(days=30)
        copy["event_date"] = copy["event_time"].date()
        copies.append(copy)
    weir.append("raw.shop_events", pa.Table.from_pylist(copies, runs["second"].schema))
    after = modeling.build()
    assert after.ok, after.failures
    facts = after.published["marts.fct_events"]
    assert (facts.mode, facts.written) == ("append", 25)
    assert facts.rows == runs["full"].rows["marts.fct_events"] + 25
    assert weir.lake.snapshots("marts.fct_events").column("operation")[-1].as_py() == "append"
    idle = modeling.build()
    assert idle.ok, idle.failures
    assert idle.sources["raw.shop_events"].new_files == 0
    assert idle.published["marts.fct_events"].mode == "unchanged"
    assert idle.published["marts.fct_order_lines"].mode == "unchanged"


def test_mart_suites_pass_and_catch_broken_marts(runs: dict) -> None:
    """Great Expectations' mart suites (gx/marts.yml) pass on the published marts; a fact
    whose key resolves nowhere, a duplicated fact and a second open version of a user make
    exactly the matching checks fail, naming the rows' keys."""
    from datetime import timedelta

    from weir import quality

    marts = [f"marts.{t}" for t in MARTS]
    clean = quality.check(marts, alert=False)
    assert clean.ok and clean.failures == [], clean.failures
    assert {r["kind"] for r in clean.results} == {
        "not_null", "unique", "foreign_key", "scd2", "bounds", "row_count"
    }  # fmt: skip
    fact = weir.lake.read("marts.fct_events").slice(0, 2).to_pylist()
    orphan = dict(fact[0], event_id="orphan-1", user_version_key="no-such-version")
    weir.lake.append("marts.fct_events", [orphan, fact[1]])
    current = next(r for r in weir.lake.read("marts.dim_users").to_pylist() if r["is_current"])
    second = dict(current, user_version_key="overlapping-version")
    second["valid_from"] = current["valid_from"] + timedelta(seconds=1)
    weir.lake.append("marts.dim_users", [second])
    broken = quality.check(["marts.fct_events", "marts.dim_users"], alert=False)
    failed = {(f["table_name"], f["check_name"]): f for f in broken.failures}
    assert set(failed) == {
        ("marts.fct_events", "user_version_key.foreign_key"),
        ("marts.fct_events", "event_id.unique"),
        ("marts.fct_events", "row_count"),
        ("marts.dim_users", "user_id.scd2"),
    }, sorted(failed)
    assert failed[("marts.fct_events", "user_version_key.foreign_key")]["sample_ids"] == [
        "orphan-1"
    ]
    assert fact[1]["event_id"] in failed[("marts.fct_events", "event_id.unique")]["sample_ids"]
    assert "overlapping-version" in failed[("marts.dim_users", "user_id.scd2")]["sample_ids"]
    assert not broken.ok
