"""The dbt project (``dbt/``) on real Iceberg tables written by Weir: ``weir transform`` runs
``dbt build`` in its own process, which reads the lake through the ``weir.dbt`` plugin (views
at the current snapshots, resolved from the metastore), builds the staging models and passes
their data tests, and the marts: SCD type 2 dimensions, ``dim_date``, facts keyed point in
time. Replayed events count once; every violation of a rejected record is a row; a user who
moved twice has three versions; a failing data test makes ``weir transform`` exit 1 naming
it and publish nothing (last: it adds a bad row to the lake). Incremental runs and the
published marts: ``test_dbt_incremental.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import weir
from weir import samples
from weir.config import LakeSettings

ROOT = Path(__file__).resolve().parents[1]
#: The id of an event added at the same instant as another of its user (sorts after any).
TIE_EVENT = "ffffffff-ffff-4fff-bfff-ffffffffffff"


def transform(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``weir transform`` in its own process on the lake under ``state``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "DBT_"))}
    env["WEIR_STATE_DIR"] = str(state)
    weir_cli = str(Path(sys.executable).parent / "weir")
    return subprocess.run(
        [weir_cli, "transform", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A lake with 2,000 sample events (5 % invalid), 100 of them stored twice, built once."""
    state = tmp_path_factory.mktemp("dbt-state")
    settings = LakeSettings(str(state / "metastore.db"), str(state / "warehouse"))
    events = samples.generate_shop_events(2_000, invalid_fraction=0.05, seed=3)
    result = weir.process(json.dumps(events), "json")
    weir.append("raw.shop_events", result.output, settings=settings)
    weir.append("raw.shop_events", result.output.slice(0, 100), settings=settings)  # replays
    weir.append("raw.shop_events_rejected", result.rejected, settings=settings)
    # Another event of the first event's user at the same instant, showing another country
    # (as a second source would): its id sorts last, so it is the user's state at that instant.
    first = result.output.slice(0, 1).to_pylist()[0]
    tie = dict(
        first, event_id=TIE_EVENT, user_country="NZ" if first["user_country"] != "NZ" else "IE"
    )
    weir.append(
        "raw.shop_events", pa.Table.from_pylist([tie], result.output.schema), settings=settings
    )
    done = transform(state)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    expected = {
        "events": result.output.num_rows + 1,
        "violations": sum(len(v) for v in result.rejected["violations"].to_pylist()),
    }
    return state, expected


def test_events_at_the_same_instant_make_one_version_not_an_empty_window(
    built: tuple[Path, dict[str, int]],
) -> None:
    state, _ = built
    con = duckdb.connect(str(state / "dbt" / "weir.duckdb"), read_only=True)
    user, at, country = con.execute(
        "select user_id, event_time, user_country from staging.stg_weir__shop_events "
        "where event_id = ?",
        [TIE_EVENT],
    ).fetchone()
    versions = con.execute(
        "select valid_from, valid_to, user_country from marts.dim_users where user_id = ? "
        "order by valid_from",
        [user],
    ).fetchall()
    assert all(to is None or to > start for start, to, _ in versions), versions
    assert len({start for start, _, _ in versions}) == len(versions), versions
    (holding,) = [v for v in versions if v[0] <= at and (v[1] is None or at < v[1])]
    assert holding[0] == at and holding[2] == country, (versions, at, country)


def test_dbt_build_passes_on_the_lake(built: tuple[Path, dict[str, int]]) -> None:
    state, expected = built
    con = duckdb.connect(str(state / "dbt" / "weir.duckdb"), read_only=True)
    events = con.sql("select count(*), count(distinct event_id) from staging.stg_weir__shop_events")
    assert events.fetchall() == [(expected["events"], expected["events"])]
    violations = con.sql("select count(*) from staging.stg_weir__rejected_events").fetchall()
    assert violations == [(expected["violations"],)]
    log = (state / "dbt" / "target" / "run_results.json").read_text()
    statuses = [r["status"] for r in json.loads(log)["results"]]
    assert statuses and set(statuses) <= {"success", "pass"}, statuses


def test_a_user_who_moved_twice_has_three_versions_and_facts_point_in_time(
    built: tuple[Path, dict[str, int]],
) -> None:
    """Users whose only changes were two moves (``weir.samples.shop_history``) have three
    versions in ``dim_users``, in the order they moved, with contiguous windows; each of their
    events in ``fct_events`` points at the version valid at its time, whose country is the
    one the event shows."""
    state, _ = built
    changes: dict[str, list[tuple[str, object]]] = {}
    for kind, key, _, name, value in samples.shop_history(2_000, seed=3):
        if kind == "user":
            changes.setdefault(key, []).append((name, value))
    movers = {
        key: [value for _, value in named]
        for key, named in changes.items()
        if [name for name, _ in named] == ["user_country", "user_country"]
    }
    con = duckdb.connect(str(state / "dbt" / "weir.duckdb"), read_only=True)
    checked = 0
    for user, moved_to in movers.items():
        versions = con.execute(
            "select user_version_key, user_country, valid_from, valid_to, is_current "
            "from marts.dim_users where user_id = ? order by valid_from",
            [user],
        ).fetchall()
        if len(versions) != 3:  # the user was not seen between the moves
            assert len(versions) < 3, (user, versions)
            continue
        assert [v[1] for v in versions[1:]] == moved_to, (user, versions)
        assert versions[0][3] == versions[1][2] and versions[1][3] == versions[2][2]
        assert [v[4] for v in versions] == [False, False, True] and versions[2][3] is None
        facts = con.execute(
            "select f.event_time, f.user_version_key, s.user_country "
            "from marts.fct_events f join staging.stg_weir__shop_events s using (event_id) "
            "where s.user_id = ?",
            [user],
        ).fetchall()
        by_key = {v[0]: v for v in versions}
        for event_time, key, country in facts:
            version = by_key[key]
            assert version[2] <= event_time and (version[3] is None or event_time < version[3])
            assert country is None or country == version[1]
        checked += 1
    assert checked >= 2, movers


def test_products_and_order_lines_point_in_time(built: tuple[Path, dict[str, int]]) -> None:
    """Every event naming a product points at the product version valid at its time, which
    shows the event's category (and, for USD events, its price); products whose category
    changed have a version per category; order lines are the purchases and refunds, refunds
    negative, with revenue in USD through the exchange rates."""
    state, _ = built
    con = duckdb.connect(str(state / "dbt" / "weir.duckdb"), read_only=True)
    mismatched = con.sql(
        """
        select f.event_id
        from marts.fct_events f
        join staging.stg_weir__shop_events s using (event_id)
        join marts.dim_products p using (product_version_key)
        where s.event_time < p.valid_from or s.event_time >= p.valid_to
           or p.product_category is distinct from s.product_category
           or (s.currency = 'USD' and p.list_price_usd <> s.unit_price)
        """
    ).fetchall()
    assert mismatched == []
    named = con.sql(
        "select count(*) filter (where product_id is not null), "
        "count(*) filter (where product_version_key is not null) "
        "from marts.fct_events join staging.stg_weir__shop_events using (event_id)"
    ).fetchone()
    assert named[0] == named[1] > 0
    recategorised = {
        key
        for kind, key, _, name, _ in samples.shop_history(2_000, seed=3)
        if kind == "product" and name == "product_category"
    }
    categories = dict(
        con.sql(
            "select product_id, count(distinct product_category) from marts.dim_products group by 1"
        ).fetchall()
    )
    assert any(categories.get(p, 0) == 2 for p in recategorised), recategorised
    lines = con.sql(
        """
        select count(*), count(*) filter (where o.event_type = 'refund' and o.revenue >= 0),
               sum(abs(o.revenue_usd * r.units_per_usd - o.revenue) > 0.02 * r.units_per_usd)
        from marts.fct_order_lines o join reference.exchange_rates r using (currency)
        """
    ).fetchone()
    purchases = con.sql(
        "select count(*) from staging.stg_weir__shop_events "
        "where event_type in ('purchase', 'refund')"
    ).fetchone()
    assert lines[0] == purchases[0] > 0 and lines[1] == 0 and lines[2] == 0


def test_a_build_waits_for_another_one(
    built: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt's DuckDB file has one writer: `weir transform` started while another build holds
    the state folder (an Airflow run) waits for it, says so, then runs."""
    import time

    from weir import modeling

    state, _ = built
    monkeypatch.setenv("WEIR_STATE_DIR", str(state))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "DBT_"))}
    env["WEIR_STATE_DIR"] = str(state)
    weir_cli = str(Path(sys.executable).parent / "weir")
    with modeling.exclusive():
        waiting = subprocess.Popen(
            [weir_cli, "transform", "--select", "dim_date", "--no-publish"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        time.sleep(8)
        assert waiting.poll() is None, "the second build did not wait"
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-3000:]
    assert "waiting for another dbt build" in err


def test_a_failing_data_test_fails_the_build(built: tuple[Path, dict[str, int]]) -> None:
    """The data tests can fail: a stored row whose event type the contract does not know
    (written around the processor) makes `dbt build` exit non-zero naming the test."""
    state, _ = built
    settings = LakeSettings(str(state / "metastore.db"), str(state / "warehouse"))
    stored = weir.lake.read("raw.shop_events", settings=settings).slice(0, 1)
    bogus = stored.set_column(
        stored.schema.get_field_index("event_type"),
        "event_type",
        pa.array(["teleport"], type=stored.schema.field("event_type").type),
    )
    bogus = bogus.set_column(
        bogus.schema.get_field_index("event_id"),
        "event_id",
        pa.array([str(uuid.uuid4())], type=stored.schema.field("event_id").type),
    )
    weir.append("raw.shop_events", bogus.drop_columns(["ingested_at"]), settings=settings)
    published = {
        table: weir.lake.snapshots(table, settings=settings).num_rows
        for table in weir.lake.tables(settings=settings)
        if table.startswith("marts.")
    }
    assert published, "the first build published the marts"
    done = transform(state)
    assert done.returncode == 1, done.stderr
    failed = "fail test.weir.accepted_values_stg_weir__shop_events_event_type"
    assert failed in done.stderr, done.stderr
    assert "nothing was published" in done.stderr
    for table, snapshots in published.items():
        assert weir.lake.snapshots(table, settings=settings).num_rows == snapshots, table
