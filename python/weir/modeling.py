"""The dimensional model: ``dbt build`` of the project in ``<home>/dbt`` on the lake, then
the marts published to Iceberg as ``marts.<model>``.

    weir transform [--full-refresh] [--select stg_weir__shop_events+]

or from Python::

    result = weir.modeling.build()
    result.ok, result.models, result.tests_passed, result.failures
    result.sources["raw.shop_events"].new_files   # data files this run read
    result.published["marts.fct_events"]          # mode, rows, snapshot id

dbt runs in its own process (``dbt build`` with the project's profile) and reads the lake's
tables through the ``weir.dbt`` plugin; its DuckDB file, ``target/`` and logs live under the
state folder (``<state>/dbt``), never in the checkout. The summary comes from dbt's
``run_results.json`` and the plugin's ``weir_state.lake_reads``.

Publishing (only after a build with no error and no failed test): every mart built in the
run is written to ``marts.<model>`` through Weir's lake in one snapshot whose summary holds
the dbt invocation id (``dbt.invocation-id``) and the lake snapshots it was built from
(``dbt.source-snapshots``, JSON). A fact table with a ``_built_at`` column is appended to
when the run only added rows since the last publication, and replaced otherwise; other
marts are replaced. Columns starting with ``_`` are dbt's bookkeeping and not published.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from weir import lake, project
from weir.config import state_dir


@dataclass(frozen=True)
class SourceRead:
    """What the run read of one lake table: the snapshot, and ``new_files`` of its ``files``
    data files (those added since ``since_snapshot_id``; all of them in a full build)."""

    table: str
    snapshot_id: int | None
    since_snapshot_id: int | None
    new_files: int
    files: int


@dataclass(frozen=True)
class MartPublication:
    """One mart written to the lake: ``mode`` is ``append``, ``overwrite`` or ``unchanged``
    (nothing to write); ``rows`` the table's rows after it, ``written`` the rows written."""

    table: str
    mode: str
    rows: int
    written: int
    snapshot_id: int | None


@dataclass(frozen=True)
class BuildResult:
    """What one ``dbt build`` did: nodes by kind and status, the failing ones, the time."""

    returncode: int
    models: int
    tests_passed: int
    tests_failed: int
    seconds: float
    #: ``"<status> <node>: <message>"`` for every node that did not succeed or pass.
    failures: list[str] = field(default_factory=list)
    log: str = ""
    invocation_id: str | None = None
    #: Of ``seconds``: the time dbt ran, and the time publishing took.
    dbt_seconds: float = 0.0
    publish_seconds: float = 0.0
    #: Rows of every table the run built (views are not counted), as dbt left them.
    rows: dict[str, int] = field(default_factory=dict)
    #: What the run read of each lake table.
    sources: dict[str, SourceRead] = field(default_factory=dict)
    #: ``marts.<model>`` tables written after the build (empty when it failed).
    published: dict[str, MartPublication] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.failures


def dbt_folder() -> Path:
    """The dbt project (``<home>/dbt``)."""
    return project.home() / "dbt"


def work_folder() -> Path:
    """dbt's DuckDB file, ``target/`` and logs: ``<state>/dbt``."""
    return state_dir() / "dbt"


def dbt_environment() -> dict[str, str]:
    """The environment a dbt process of this project needs (on top of this one's)."""
    work = work_folder()
    return {
        "WEIR_DBT_DATABASE": str(work / "weir.duckdb"),
        "DBT_TARGET_PATH": str(work / "target"),
        "DBT_LOG_PATH": str(work / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """One dbt build or publication at a time per state folder (dbt's DuckDB file has one
    writer): a ``weir transform`` started while an Airflow run builds waits for it."""
    work = work_folder()
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another dbt build on {work} to finish...", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build(
    *, select: list[str] | None = None, full_refresh: bool = False, publish: bool = True
) -> BuildResult:
    """Runs ``dbt build`` (models, seeds, data tests, unit tests), summarises it and, when
    it passed and ``publish`` is set, publishes the marts it built (:func:`publish`). Waits
    for another build of the same state folder to finish first (:func:`exclusive`)."""
    with exclusive():
        return _build(select=select, full_refresh=full_refresh, publish=publish)


def _build(*, select: list[str] | None, full_refresh: bool, publish: bool) -> BuildResult:
    work = work_folder()
    work.mkdir(parents=True, exist_ok=True)
    results = work / "target" / "run_results.json"
    results.unlink(missing_ok=True)
    command = [str(Path(sys.executable).parent / "dbt"), "build", "--no-version-check"]
    command += ["--project-dir", str(dbt_folder()), "--profiles-dir", str(dbt_folder())]
    if select:
        command += ["--select", *select]
    if full_refresh:
        command.append("--full-refresh")
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **dbt_environment()}
    )
    dbt_seconds = time.perf_counter() - started
    report = json.loads(results.read_text()) if results.is_file() else {}
    nodes = report.get("results", [])
    models = sum(1 for n in nodes if n["unique_id"].startswith(("model.", "seed.")))
    tests = [n for n in nodes if n["unique_id"].startswith(("test.", "unit_test."))]
    failures = [
        f"{n['status']} {n['unique_id']}: {n.get('message') or ''}".strip()
        for n in nodes
        if n["status"] not in ("success", "pass")
    ]
    if done.returncode != 0 and not failures:
        failures.append(f"dbt exited with {done.returncode}: {done.stdout[-2000:]}")
    invocation = report.get("metadata", {}).get("invocation_id")
    built = [
        n["relation_name"]
        for n in nodes
        if n["unique_id"].startswith("model.")
        and n["status"] == "success"
        and n.get("relation_name")
    ]
    rows: dict[str, int] = {}
    sources: dict[str, SourceRead] = {}
    published: dict[str, MartPublication] = {}
    publish_seconds = 0.0
    database = work / "weir.duckdb"
    if database.is_file():
        with duckdb.connect(str(database), read_only=True) as con:
            # Timestamps leave DuckDB as Arrow timestamps in UTC (not the session's zone).
            con.execute("set TimeZone = 'UTC'")
            tables = {
                f"{schema}.{name}"
                for schema, name in con.sql(
                    "select table_schema, table_name from information_schema.tables "
                    "where table_type = 'BASE TABLE'"
                ).fetchall()
            }
            for relation in built:
                name = relation.replace('"', "").split(".", 1)[1]
                if name in tables:  # views are not counted: that would compute them
                    rows[name] = con.sql(f"select count(*) from {relation}").fetchone()[0]
            if _has_table(con, "weir_state", "lake_reads"):
                for row in con.sql("select * from weir_state.lake_reads order by 1").fetchall():
                    sources[row[0]] = SourceRead(*row)
            publishing = time.perf_counter()
            if publish and done.returncode == 0 and not failures:
                marts = [r for r in built if r.replace('"', "").split(".")[1] == "marts"]
                properties = _publication_properties(con, invocation)
                for relation in marts:
                    publication = publish_mart(con, relation, properties)
                    published[publication.table] = publication
            publish_seconds = time.perf_counter() - publishing
    return BuildResult(
        returncode=done.returncode,
        models=models,
        tests_passed=sum(1 for n in tests if n["status"] == "pass"),
        tests_failed=sum(1 for n in tests if n["status"] != "pass"),
        seconds=round(time.perf_counter() - started, 2),
        failures=failures,
        log=done.stdout,
        invocation_id=invocation,
        dbt_seconds=round(dbt_seconds, 2),
        publish_seconds=round(publish_seconds, 2),
        rows=rows,
        sources=sources,
        published=published,
    )


def _has_table(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


def _publication_properties(
    con: duckdb.DuckDBPyConnection, invocation: str | None
) -> dict[str, str]:
    """The snapshot summary of a publication: the dbt invocation, and the raw snapshots
    whose data the staging models hold (``weir_state.lake_consumed``)."""
    consumed = {}
    if _has_table(con, "weir_state", "lake_consumed"):
        consumed = dict(con.sql("select * from weir_state.lake_consumed").fetchall())
    return {
        "dbt.invocation-id": invocation or "",
        "dbt.source-snapshots": json.dumps(consumed, sort_keys=True),
    }


def publish() -> dict[str, MartPublication]:
    """Publishes every mart in dbt's DuckDB file (``marts`` schema) to the lake, as
    :func:`build` does after a passing build: for workflows that build in steps (the
    Airflow DAG builds layer by layer, checks, then publishes). Facts unchanged since their
    last publication are left as they are."""
    with exclusive():
        return _publish()


def _publish() -> dict[str, MartPublication]:
    database = work_folder() / "weir.duckdb"
    if not database.is_file():
        raise FileNotFoundError(f"{database}: no dbt build has run yet (weir transform)")
    results = work_folder() / "target" / "run_results.json"
    invocation = None
    if results.is_file():
        invocation = json.loads(results.read_text()).get("metadata", {}).get("invocation_id")
    published: dict[str, MartPublication] = {}
    with duckdb.connect(str(database), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
        properties = _publication_properties(con, invocation)
        relations = con.sql(
            "select table_name from information_schema.tables "
            "where table_schema = 'marts' and table_type = 'BASE TABLE' order by 1"
        ).fetchall()
        for (name,) in relations:
            publication = publish_mart(con, f'"weir"."marts"."{name}"', properties)
            published[publication.table] = publication
    return published


#: The summary key of the newest ``_built_at`` a fact table's publication holds.
BUILT_THROUGH = "dbt.built-through"


def publish_mart(
    con: duckdb.DuckDBPyConnection, relation: str, properties: dict[str, str]
) -> MartPublication:
    """Writes dbt's table ``relation`` (``"weir"."marts"."fct_events"``) to the lake as
    ``marts.fct_events`` in one snapshot (see the module's doc for append or replace)."""
    schema_name, name = relation.replace('"', "").split(".")[1:]
    table = f"{schema_name}.{name}"
    columns = [
        c
        for (c,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [schema_name, name],
        ).fetchall()
    ]
    public = ", ".join(f'"{c}"' for c in columns if not c.startswith("_"))
    total = con.sql(f"select count(*) from {relation}").fetchone()[0]
    incremental = "_built_at" in columns
    props = dict(properties)
    if incremental:
        newest = con.sql(f"select max(_built_at) from {relation}").fetchone()[0]
        props[BUILT_THROUGH] = newest.isoformat() if newest is not None else ""
    data = con.sql(f"select {public} from {relation} limit 0").arrow()
    lake.create_table(table, data.schema, exist_ok=True)
    history = lake.snapshots(table)
    if incremental and history.num_rows:
        last = json.loads(history.column("summary")[-1].as_py())
        published_rows = history.column("total_records")[-1].as_py() or 0
        through = last.get(BUILT_THROUGH)
        if through:
            changed = con.execute(
                f"select count(*) from {relation} where _built_at > ?::timestamptz", [through]
            ).fetchone()[0]
            if changed == 0 and published_rows == total:
                return MartPublication(table, "unchanged", total, 0, None)
            if changed == total - published_rows:
                rows = con.execute(
                    f"select {public} from {relation} where _built_at > ?::timestamptz",
                    [through],
                ).arrow()
                info = lake.append(table, rows, props)
                return MartPublication(table, "append", total, changed, info.snapshot_id)
    rows = con.sql(f"select {public} from {relation}").arrow()
    info = lake.overwrite(table, rows, props)
    return MartPublication(table, "overwrite", total, total, info.snapshot_id)
