"""Data quality: the lake's tables validated with Great Expectations, from the contracts.

    weir quality check [--table raw.shop_events] [--full]

or from Python (the Airflow workflow calls the same function)::

    run = weir.quality.check()             # every dataset's raw table, new rows only
    run.ok                                  # no critical expectation failed
    run.failures                            # the failed expectations, with sample ids
    run.docs                                # Great Expectations' Data Docs (index.html)

Each run, per table: the snapshot it validates is the table's current one; the rows are
those of the data files added since the snapshot the last run validated for the table and
suite (remembered in ``ops.dq_results``), or all of them with ``full=True``. The columns are
read as Arrow (DuckDB's ``read_parquet`` on exactly those files, so S3 works too) and handed
to a Great Expectations pandas data source backed by Arrow, not copied row by row. The suite
is generated from the contract (:mod:`weir.quality.suites`) with the severities of
``gx/severity.yml``.

What a run leaves (all under the state folder, ``<state>/quality``):

- rows in the Iceberg table ``ops.dq_results`` (one per expectation and table: run id,
  snapshot range, suite, expectation, column, severity, success, unexpected count, sample
  ids, times), readable through ``weir.connect()`` and the dashboard;
- Great Expectations' validation results and Data Docs (``gx/data_docs/index.html``);
- ``runs/<run id>.json``, this run's summary;
- one JSON log line per failed expectation (``component: quality``, ``expectation_failed``)
  and one per run (``quality_run``);
- an alert (:mod:`weir.alerts`) when a critical expectation failed and a channel is set.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from weir import lake, project
from weir.config import state_dir
from weir.logs import json_logger, log_event
from weir.quality import suites

#: The table every run appends its results to.
RESULTS_TABLE = "ops.dq_results"
#: The suite generated from a dataset's contract (raw tables), and the marts' suite.
CONTRACT_SUITE = "contract"
MART_SUITE = "marts"
#: The summary of the ingest-time rejections (``raw.<dataset>_rejected``): one result per
#: field and rule, severity ``info`` (the gate kept those records out; reported only).
INGEST_SUITE = "ingest_gate"
#: Sample ids kept per failed expectation.
SAMPLE_IDS = 20

RESULTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("table_name", pa.string()),
        ("suite", pa.string()),
        ("snapshot_from", pa.int64()),
        ("snapshot_to", pa.int64()),
        ("rows_checked", pa.int64()),
        ("expectation", pa.string()),
        ("check_name", pa.string()),
        ("kind", pa.string()),
        ("column_name", pa.string()),
        ("severity", pa.string()),
        ("success", pa.bool_()),
        ("unexpected_count", pa.int64()),
        ("unexpected_percent", pa.float64()),
        ("observed_value", pa.string()),
        ("sample_ids", pa.list_(pa.string())),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
    ]
)

_log = json_logger("weir.quality")


@dataclass(frozen=True)
class TableCheck:
    """What one run validated of one table."""

    table: str
    suite: str
    snapshot_from: int | None
    snapshot_to: int | None
    rows_checked: int
    files_read: int
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class QualityRun:
    """One ``weir quality check``: its tables, failures, report paths and alert deliveries."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    tables: list[TableCheck]
    docs: Path | None
    summary: Path
    alerts: list[Any] = field(default_factory=list)

    @property
    def results(self) -> list[dict[str, Any]]:
        return [r for t in self.tables for r in t.results]

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["success"]]

    @property
    def critical_failures(self) -> list[dict[str, Any]]:
        return [r for r in self.failures if r["severity"] == "critical"]

    @property
    def ok(self) -> bool:
        return not self.critical_failures


def quality_folder() -> Path:
    return state_dir() / "quality"


def default_tables() -> list[str]:
    """The raw table of every dataset (``raw.<dataset>``) and every published mart that
    ``gx/marts.yml`` has a suite for."""
    existing = set(lake.tables())
    marts = [table for table in suites.mart_config() if table in existing]
    return [f"raw.{dataset}" for dataset in project.datasets()] + marts


def _context() -> Any:
    """A file-based Great Expectations context on the state folder's copy of the project."""
    import great_expectations as gx

    root = quality_folder()
    (root / "gx").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        suites.gx_folder() / "great_expectations.yml", root / "gx" / "great_expectations.yml"
    )
    return gx.get_context(mode="file", project_root_dir=str(root))


def last_validated(table: str, suite: str) -> int | None:
    """The snapshot of ``table`` the newest run of ``suite`` validated (``None``: never)."""
    if RESULTS_TABLE not in lake.tables():
        return None
    done = lake.read(RESULTS_TABLE).select(["table_name", "suite", "snapshot_to", "finished_at"])
    rows = [
        r
        for r in done.to_pylist()
        if r["table_name"] == table and r["suite"] == suite and r["snapshot_to"] is not None
    ]
    return max(rows, key=lambda r: r["finished_at"])["snapshot_to"] if rows else None


def _current_snapshot(table: str) -> int | None:
    ids = lake.snapshots(table).column("snapshot_id").to_pylist()
    return ids[-1] if ids else None


def _read(table: str, paths: list[str], columns: list[str]) -> pa.Table:
    """``columns`` of the data files ``paths``, as Arrow (DuckDB reads them)."""
    con = lake.duckdb_connection()
    con.execute("set TimeZone = 'UTC'")
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    selected = ", ".join(f'"{c}"' for c in columns)
    return con.sql(
        f"select {selected} from read_parquet([{listed}], union_by_name = true)"
    ).fetch_arrow_table()


def _id_column(table: str, columns: list[str]) -> str | None:
    dataset = table.split(".", 1)[1]
    contract = json.loads(project.contract_path(dataset).read_text())
    for name, spec in (contract.get("properties") or {}).items():
        if spec.get("x-weir-unique") and name in columns:
            return name
    return None


def _validate(
    context: Any,
    table: str,
    data: pa.Table,
    checks: list[suites.Check],
    id_column: str | None,
    suite_name: str = "contract",
    extra: dict[str, dict[str, Any]] | None = None,
) -> list[Any]:
    """Runs the checks on ``data`` through a checkpoint (results stored, Data Docs updated);
    returns Great Expectations' expectation results. ``extra`` adds run-time arguments per
    check name."""
    import great_expectations as gx
    import pandas as pd
    from great_expectations.execution_engine import pandas_execution_engine

    # GX 1.24 fingerprints every dataframe under HASH_THRESHOLD bytes (an md5 over pandas'
    # row hashes) only to label the batch: ~40 % of a full validation of 1M rows. Weir
    # labels a batch by its snapshot range instead (ops.dq_results), so it is switched off.
    pandas_execution_engine.HASH_THRESHOLD = 0
    frame = data.to_pandas(types_mapper=pd.ArrowDtype)
    source = context.data_sources.add_or_update_pandas("weir")
    try:
        asset = source.get_asset(table)
    except LookupError:
        asset = source.add_dataframe_asset(table)
    try:
        batch = asset.get_batch_definition("whole table")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole table")
    suite = gx.ExpectationSuite(name=f"{table}.{suite_name}")
    for check in checks:
        if check.expectation != suites.TYPE_CHECK:
            suite.add_expectation(suites.expectation(check, **(extra or {}).get(check.name, {})))
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=f"{table}.{suite_name}", data=batch, suite=suite)
    )
    result_format: dict[str, Any] = {
        "result_format": "COMPLETE",
        "partial_unexpected_count": SAMPLE_IDS,
        "return_unexpected_index_query": False,
    }
    if id_column:
        result_format["unexpected_index_column_names"] = [id_column]
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=f"weir {table}",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data docs")],
            result_format=result_format,
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    return [r for run in outcome.run_results.values() for r in run.results]


def _type_result(check: suites.Check, arrow_type: Any, rows: int) -> dict[str, Any]:
    """The ``type`` check of one column, on the Arrow schema."""
    ok = suites.type_matches(arrow_type, check.kwargs["expected"])
    return {
        "table_name": check.table,
        "suite": CONTRACT_SUITE,
        "rows_checked": rows,
        "expectation": check.expectation,
        "check_name": check.name,
        "kind": check.kind,
        "column_name": check.column,
        "severity": check.severity,
        "success": ok,
        "unexpected_count": 0 if ok else rows,
        "unexpected_percent": 0.0 if ok else 100.0,
        "observed_value": f"{arrow_type} (contract: {check.kwargs['expected']})",
        "sample_ids": [],
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def _sample_ids(result: Any, id_column: str | None) -> list[str]:
    found = result.result.get("unexpected_index_list") or []
    ids: list[str] = []
    for entry in found:
        value = entry.get(id_column) if isinstance(entry, dict) and id_column else entry
        if value is not None and not (isinstance(value, float) and value != value):
            ids.append(str(value))
        if len(ids) >= SAMPLE_IDS:
            break
    return ids


def _outcome_rows(
    outcomes: list[Any], checks: list[suites.Check], id_column: str | None, base: dict[str, Any]
) -> list[dict[str, Any]]:
    """Rows of ``ops.dq_results`` for Great Expectations' results of ``checks``."""
    by_name = {c.name: c for c in checks}
    rows = []
    for outcome in outcomes:
        config = outcome.expectation_config
        meta = config.meta or {}
        check = by_name.get(meta.get("check", ""))
        raised = (outcome.exception_info or {}).get("raised_exception")
        unexpected = outcome.result.get("unexpected_count")
        row = base | {
            "table_name": check.table if check else None,
            "expectation": config.type,
            "check_name": meta.get("check"),
            "kind": meta.get("kind"),
            "column_name": check.column if check else config.kwargs.get("column"),
            "severity": check.severity if check else meta.get("severity", "critical"),
            "success": bool(outcome.success) and not raised,
            "unexpected_count": int(unexpected) if unexpected is not None else None,
            "unexpected_percent": outcome.result.get("unexpected_percent"),
            "observed_value": _text(outcome.result.get("observed_value")),
            "sample_ids": [] if raised else _sample_ids(outcome, id_column),
        }
        if raised:
            message = (outcome.exception_info or {}).get("exception_message")
            row["observed_value"] = _text(f"error: {message}")
            log_event(
                _log,
                "expectation_error",
                table=row["table_name"],
                check=row["check_name"],
                error=message,
            )
        rows.append(row)
    return rows


def _check_table(
    context: Any, run_id: str, table: str, full: bool, started: datetime
) -> TableCheck:
    snapshot = _current_snapshot(table)
    since = None if full else last_validated(table, CONTRACT_SUITE)
    if snapshot is None:
        return TableCheck(table, CONTRACT_SUITE, since, None, 0, 0)
    paths = lake.added_files(table, since, snapshot_id=snapshot) if since is not None else None
    if paths is None:  # full, first run, or the remembered snapshot expired
        since = None
        paths = lake.files(table, snapshot_id=snapshot).column("file_path").to_pylist()
    if not paths:
        return TableCheck(table, CONTRACT_SUITE, since, snapshot, 0, 0)
    schema = _schema_of(table)
    all_columns = schema.names
    checks = suites.contract_checks(table, all_columns)
    id_column = _id_column(table, all_columns)
    needed = [c.column for c in checks if c.column] + ([id_column] if id_column else [])
    needed = list(dict.fromkeys(needed))
    data = _read(table, paths, needed)
    outcomes = _validate(context, table, data, checks, id_column)
    finished = datetime.now(UTC)
    results = [
        _type_result(check, schema.field(check.column).type, data.num_rows)
        | {"run_id": run_id, "snapshot_from": since, "snapshot_to": snapshot}
        | {"started_at": started, "finished_at": finished}
        for check in checks
        if check.expectation == suites.TYPE_CHECK and check.column
    ]
    base = {"run_id": run_id, "snapshot_from": since, "snapshot_to": snapshot}
    base |= {"started_at": started, "finished_at": finished, "rows_checked": data.num_rows}
    results += _outcome_rows(outcomes, checks, id_column, base | {"suite": CONTRACT_SUITE})
    return TableCheck(table, CONTRACT_SUITE, since, snapshot, data.num_rows, len(paths), results)


def _schema_of(table: str) -> pa.Schema:
    """The table's current columns (from its metadata; no data file is read)."""
    con = lake.duckdb_connection()
    location = lake.metadata_location(table).replace("'", "''")
    return con.sql(f"select * from iceberg_scan('{location}') limit 0").fetch_arrow_table().schema


def _check_mart(context: Any, run_id: str, table: str, full: bool, started: datetime) -> TableCheck:
    """A mart's suite on its whole current snapshot (marts are replaced or appended to by
    each publication), skipped when the last run already validated that snapshot."""
    suite = suites.mart_suite(table, suites.mart_config()[table])
    snapshot = _current_snapshot(table)
    since = last_validated(table, MART_SUITE)
    if snapshot is None or (snapshot == since and not full):
        return TableCheck(table, MART_SUITE, since, snapshot, 0, 0)
    con = lake.duckdb_connection()
    con.execute("set TimeZone = 'UTC'")
    namespaces = {table.split(".")[0]} | {
        c.kwargs["references"].split(".")[0] for c in suite.checks if "references" in c.kwargs
    }
    lake.register_duckdb_views(con, tuple(sorted(namespaces)))
    data = con.sql(suite.sql).fetch_arrow_table()
    extra: dict[str, dict[str, Any]] = {}
    if suite.rows_match:
        extra["row_count"] = {"value": _raw_rows(con, table, snapshot, suite.rows_match)}
    outcomes = _validate(context, table, data, suite.checks, suite.key, MART_SUITE, extra)
    base = {"run_id": run_id, "snapshot_from": since, "snapshot_to": snapshot}
    base |= {"started_at": started, "finished_at": datetime.now(UTC), "rows_checked": data.num_rows}
    results = _outcome_rows(outcomes, suite.checks, suite.key, base | {"suite": MART_SUITE})
    files = lake.files(table, snapshot_id=snapshot).num_rows
    return TableCheck(table, MART_SUITE, since, snapshot, data.num_rows, files, results)


def _raw_rows(con: Any, mart: str, snapshot: int, match: tuple[str, str, str | None]) -> int:
    """Distinct ``column`` values of the raw table at the snapshot the mart was built from
    (its summary's ``dbt.source-snapshots``; the raw table's current one without it)."""
    raw_table, column, where = match
    history = lake.snapshots(mart)
    summaries = dict(
        zip(
            history.column("snapshot_id").to_pylist(),
            history.column("summary").to_pylist(),
            strict=True,
        )
    )
    sources = json.loads(json.loads(summaries[snapshot]).get("dbt.source-snapshots", "{}"))
    raw_snapshot = sources.get(raw_table) or _current_snapshot(raw_table)
    location = lake.metadata_location(raw_table).replace("'", "''")
    scan = f"iceberg_scan('{location}', snapshot_from_id = {raw_snapshot})"
    found = con.sql(
        f"select count(distinct {column}) from {scan}" + (f" where {where}" if where else "")
    ).fetchone()
    return int(found[0])


def _summarise_rejections(
    run_id: str, table: str, valid_rows: int, full: bool, started: datetime
) -> TableCheck | None:
    """The ingest gate's rejections of the dataset of raw ``table`` since the last summary
    (or all with ``full``): per field and rule, how many records it rejected, their share of
    the records that arrived (rejected + the valid rows checked in this run), sample
    ``job_id#record_index`` ids."""
    rejected = f"{table}_rejected"
    if rejected not in lake.tables():
        return None
    snapshot = _current_snapshot(rejected)
    since = None if full else last_validated(rejected, INGEST_SUITE)
    if snapshot is None:
        return TableCheck(rejected, INGEST_SUITE, since, None, 0, 0)
    paths = lake.added_files(rejected, since, snapshot_id=snapshot) if since is not None else None
    if paths is None:
        since = None
        paths = lake.files(rejected, snapshot_id=snapshot).column("file_path").to_pylist()
    if not paths:
        return TableCheck(rejected, INGEST_SUITE, since, snapshot, 0, 0)
    con = lake.duckdb_connection()
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    con.execute(
        "create temp table violations as select "
        "coalesce(job_id, '-') || '#' || record_index as record, "
        "v.field as field, v.rule as rule "
        f"from read_parquet([{listed}], union_by_name = true), unnest(violations) as t(v)"
    )
    records = con.sql("select count(distinct record) from violations").fetchone()[0]
    arrived = records + valid_rows
    finished = datetime.now(UTC)
    results = [
        {
            "run_id": run_id,
            "table_name": rejected,
            "suite": INGEST_SUITE,
            "snapshot_from": since,
            "snapshot_to": snapshot,
            "rows_checked": records,
            "expectation": "rejected_at_ingest",
            "check_name": f"{field}.{rule}",
            "kind": "ingest",
            "column_name": field,
            "severity": "info",
            "success": True,
            "unexpected_count": count,
            "unexpected_percent": round(100.0 * count / arrived, 4) if arrived else None,
            "observed_value": f"{count} of {arrived} records arrived",
            "sample_ids": list(samples),
            "started_at": started,
            "finished_at": finished,
        }
        for field, rule, count, samples in con.sql(
            "select field, rule, count(distinct record), "
            f"(list(distinct record order by record))[1:{SAMPLE_IDS}] "
            "from violations group by all order by 3 desc, 1, 2"
        ).fetchall()
    ]
    return TableCheck(rejected, INGEST_SUITE, since, snapshot, records, len(paths), results)


def _write_results(rows: list[dict[str, Any]]) -> None:
    lake.create_table(RESULTS_TABLE, RESULTS_SCHEMA, exist_ok=True)
    if rows:
        lake.append(RESULTS_TABLE, pa.Table.from_pylist(rows, RESULTS_SCHEMA))


def _alert(run: QualityRun) -> list[Any]:
    from weir import alerts

    critical = run.critical_failures
    tables = sorted({r["table_name"] for r in critical})
    alert = alerts.Alert(
        title=f"{len(critical)} critical data-quality check(s) failed in {', '.join(tables)}",
        text=(
            f"Run {run.run_id} validated {sum(t.rows_checked for t in run.tables):,} rows; "
            f"{len(run.failures)} expectation(s) failed, {len(critical)} of them critical."
        ),
        severity="critical",
        run_id=run.run_id,
        details=[
            {
                "table": r["table_name"],
                "expectation": r["expectation"],
                "column": r["column_name"],
                "unexpected_count": r["unexpected_count"],
                "sample_ids": r["sample_ids"],
                "snapshots": f"{r['snapshot_from']}..{r['snapshot_to']}",
            }
            for r in critical
        ],
        links={"Data Docs": run.docs.as_uri()} if run.docs else {},
    )
    return alerts.send(alert)


def check(tables: list[str] | None = None, *, full: bool = False, alert: bool = True) -> QualityRun:
    """Validates ``tables`` (default: every dataset's raw table): new rows since the last
    run, or everything with ``full``. Writes ``ops.dq_results``, Data Docs, the run's JSON
    summary and log lines, and alerts on critical failures (unless ``alert`` is off)."""
    from weir.config import alert_settings

    alert_settings()  # a broken [alerts] setting fails now, before any work
    run_id = str(uuid.uuid4())
    started = datetime.now(UTC)
    clock = time.perf_counter()
    context = _context()
    marts = suites.mart_config()
    checked = [
        (_check_mart if table in marts else _check_table)(context, run_id, table, full, started)
        for table in tables or default_tables()
    ]
    for checked_table in list(checked):
        if checked_table.suite == CONTRACT_SUITE:
            summary = _summarise_rejections(
                run_id, checked_table.table, checked_table.rows_checked, full, started
            )
            if summary is not None:
                checked.append(summary)
    _write_results([r for t in checked for r in t.results])
    docs = quality_folder() / "gx" / "data_docs" / "index.html"
    summary = quality_folder() / "runs" / f"{run_id}.json"
    run = QualityRun(
        run_id, started, datetime.now(UTC), checked, docs if docs.is_file() else None, summary
    )
    for failure in run.failures:
        log_event(
            _log,
            "expectation_failed",
            run_id=run_id,
            table=failure["table_name"],
            snapshot_from=failure["snapshot_from"],
            snapshot_to=failure["snapshot_to"],
            expectation=failure["expectation"],
            check=failure["check_name"],
            severity=failure["severity"],
            unexpected_count=failure["unexpected_count"],
            sample_ids=failure["sample_ids"][:5],
        )
    deliveries = _alert(run) if alert and run.critical_failures else []
    run = QualityRun(**{**run.__dict__, "alerts": deliveries})
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps(_summary(run), indent=2, default=str) + "\n")
    log_event(
        _log,
        "quality_run",
        run_id=run_id,
        tables=[t.table for t in checked],
        rows_checked=sum(t.rows_checked for t in checked),
        expectations=len(run.results),
        failed=len(run.failures),
        critical=len(run.critical_failures),
        seconds=round(time.perf_counter() - clock, 2),
        docs=str(run.docs) if run.docs else None,
    )
    return run


def _summary(run: QualityRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat(),
        "ok": run.ok,
        "docs": str(run.docs) if run.docs else None,
        "tables": [{k: v for k, v in asdict(t).items() if k != "results"} for t in run.tables],
        "failures": run.failures,
        "alerts": [asdict(d) for d in run.alerts],
    }
