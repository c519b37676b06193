"""The steps of Weir's Airflow workflows, as plain functions (``dags/`` only wires them).

    from weir import orchestration
    orchestration.build_layer("staging")      # dbt build of one layer, no publishing
    orchestration.check_raw()                 # the contract suites on new raw rows
    orchestration.publish_marts()             # marts.* from dbt's tables
    orchestration.check_marts()               # the marts' suites
    orchestration.maintain()                  # the maintenance policy on every table
    orchestration.mark_processed(snapshots)   # what the next run starts after

New data starts a run by itself: :class:`weir.triggers.NewSnapshotTrigger` (the asset
watcher of the ``weir_transform`` DAG) polls the raw tables' current snapshots and fires
when they differ from the ones the last successful run processed
(``<state>/orchestration/processed.json``, written by its last task), once per burst of
commits.

Each step logs its start, inputs, outcome and duration (JSON lines, ``component:
orchestration``; in Airflow they land in the task's log), returns a small JSON-able
summary (Airflow passes it on as XCom) and raises :class:`StepError` naming what failed,
so the task fails and Airflow retries it (retries, backoff and timeout:
:func:`task_defaults`). :func:`on_failure` is the failure callback of every task: it
logs the failure with its context and sends it through the data-quality
alert channels (``[alerts]``, :mod:`weir.alerts`).

The workflow, in order: the dbt layers (``staging`` → ``intermediate`` → ``marts``, dbt
tests gate each), the contract suites on the raw tables (a critical failure stops the run
before anything is published), publishing the marts, the marts' suites, a summary line.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from weir.logs import json_logger, log_event

_log = json_logger("weir.orchestration")

#: dbt selections of each layer, in order (the seed feeds the intermediate layer).
LAYERS: dict[str, list[str]] = {
    "staging": ["staging"],
    "intermediate": ["exchange_rates", "intermediate"],
    "marts": ["marts"],
}


#: Every task's defaults: 3 retries with exponential backoff, a timeout, the callback.
RETRIES = 3
RETRY_DELAY = timedelta(seconds=30)
TIMEOUT = timedelta(minutes=30)


def task_defaults(**overrides: Any) -> dict[str, Any]:
    """Arguments every task of Weir's DAGs gets (``@task(**task_defaults())``): retries,
    exponential backoff, a timeout and :func:`on_failure` as failure callback."""
    return {
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "execution_timeout": TIMEOUT,
        "on_failure_callback": on_failure,
    } | overrides


class StepError(RuntimeError):
    """A workflow step that did not succeed; the message names what failed."""


@contextmanager
def _step(name: str, **inputs: Any) -> Iterator[dict[str, Any]]:
    """Logs a step's start (with its inputs), its outcome and its duration."""
    started = time.perf_counter()
    log_event(_log, "step_started", step=name, **inputs)
    outcome: dict[str, Any] = {}
    try:
        yield outcome
    except Exception as error:
        log_event(
            _log,
            "step_failed",
            step=name,
            seconds=round(time.perf_counter() - started, 2),
            error=str(error)[:2000],
        )
        raise
    log_event(
        _log, "step_finished", step=name, seconds=round(time.perf_counter() - started, 2), **outcome
    )


def build_layer(layer: str, *, full_refresh: bool = False) -> dict[str, Any]:
    """``dbt build`` of one layer (models and their tests), without publishing."""
    from weir import modeling

    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r} (layers: {', '.join(LAYERS)})")
    with _step("dbt build", layer=layer, select=LAYERS[layer], full_refresh=full_refresh) as out:
        result = modeling.build(select=LAYERS[layer], full_refresh=full_refresh, publish=False)
        out |= {
            "models": result.models,
            "tests_passed": result.tests_passed,
            "tests_failed": result.tests_failed,
            "snapshots": {t: s.snapshot_id for t, s in result.sources.items() if s.files},
            "files_read": {t: s.new_files for t, s in result.sources.items() if s.files},
            "rows": result.rows,
        }
        if not result.ok:
            raise StepError(f"dbt build of layer {layer} failed: " + "; ".join(result.failures))
    return out


def _quality(name: str, tables: list[str] | None) -> dict[str, Any]:
    from weir import quality

    with _step(name, tables=tables or "default") as out:
        run = quality.check(tables)
        out |= {
            "run_id": run.run_id,
            "tables": {
                t.table: [t.snapshot_from, t.snapshot_to, t.rows_checked] for t in run.tables
            },
            "failed": [
                f"{f['table_name']} {f['check_name']} ({f['severity']})" for f in run.failures
            ],
            "docs": str(run.docs) if run.docs else None,
        }
        if not run.ok:
            raise StepError(
                f"critical data-quality checks failed (run {run.run_id}): "
                + "; ".join(
                    f"{f['table_name']} {f['check_name']}: {f['unexpected_count']} unexpected, "
                    f"e.g. {', '.join(f['sample_ids'][:3])}"
                    for f in run.critical_failures
                )
            )
    return out


def check_raw() -> dict[str, Any]:
    """The contract suites on the rows added to every dataset's raw table since the last
    check (and the ingest gate's summary)."""
    from weir import project

    return _quality("quality check raw", [f"raw.{d}" for d in project.datasets()])


def check_marts() -> dict[str, Any]:
    """The marts' suites (``gx/marts.yml``) on the published marts."""
    from weir import lake
    from weir.quality import suites

    existing = set(lake.tables())
    return _quality("quality check marts", [t for t in suites.mart_config() if t in existing])


def publish_marts() -> dict[str, Any]:
    """Writes dbt's marts to ``marts.*`` (:func:`weir.modeling.publish`)."""
    from weir import modeling

    with _step("publish marts") as out:
        published = modeling.publish()
        out |= {
            "published": {
                t: [p.mode, p.written, p.rows, p.snapshot_id] for t, p in published.items()
            }
        }
    return out


def maintain() -> dict[str, Any]:
    """The maintenance policy on every table and the jobs' retention (``weir maintain``):
    consumers already run both; this covers the tables they do not write (marts, batch
    loads) and catches up."""
    from weir import lake, stream

    with _step("maintain") as out:
        reports = lake.maintain()
        pruned = stream.prune()
        out |= {
            "jobs_pruned": pruned["jobs"],
            "batches_pruned": pruned["batches"],
            "tables": len(reports),
            "snapshots_expired": sum(r.get("snapshots_expired", 0) for r in reports),
            "files_compacted": sum(r.get("files_compacted", 0) for r in reports),
            "orphans_deleted": sum(r.get("orphans_deleted", 0) for r in reports),
        }
    return out


def summarise(*steps: dict[str, Any]) -> dict[str, Any]:
    """The run's last line: what each step reported, in one log event."""
    summary = {"steps": len(steps), "failed_checks": sum(len(s.get("failed", [])) for s in steps)}
    log_event(_log, "workflow_finished", **summary)
    return summary


def on_failure(context: dict[str, Any], send: Callable[..., Any] | None = None) -> None:
    """Airflow's ``on_failure_callback``: logs the failure with its DAG, task, try, inputs
    and error, and sends it through the alert channels (a channel failing is logged, never
    raised: a callback must not fail)."""
    from weir import alerts

    instance = context.get("ti") or context.get("task_instance")
    dag_id = getattr(instance, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
    task_id = getattr(instance, "task_id", None)
    attempt = getattr(instance, "try_number", None)
    run_id = getattr(instance, "run_id", None) or str(context.get("run_id", ""))
    error = str(context.get("exception") or "unknown error")[:2000]
    log_event(
        _log,
        "task_failed",
        logging.ERROR,
        dag=dag_id,
        task=task_id,
        attempt=attempt,
        run_id=run_id,
        error=error,
    )
    try:
        (send or alerts.send)(
            alerts.Alert(
                title=f"Airflow task {dag_id}.{task_id} failed (try {attempt})",
                text=error,
                severity="critical",
                run_id=str(run_id),
                details=[{"dag": dag_id, "task": task_id, "try": attempt}],
            )
        )
    except Exception as failure:  # the settings may be broken: log, never raise
        log_event(_log, "alert_not_sent", dag=dag_id, task=task_id, error=str(failure))


# --- New snapshots -> runs ---------------------------------------------------------------


def _processed_path(state: str | None) -> Path:
    from weir.config import state_dir

    return (Path(state) if state else state_dir()) / "orchestration" / "processed.json"


def processed_snapshots(state: str | None = None) -> dict[str, int]:
    """The raw tables' snapshots the last successful run processed (empty before one)."""
    path = _processed_path(state)
    return json.loads(path.read_text()) if path.is_file() else {}


def mark_processed(snapshots: dict[str, int | None], state: str | None = None) -> dict[str, Any]:
    """Records ``snapshots`` (table -> snapshot id the run's staging consumed) as processed,
    atomically (write, then rename): the trigger compares the lake with it."""
    path = _processed_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = processed_snapshots(state) | {t: s for t, s in snapshots.items() if s is not None}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(merged, sort_keys=True))
    temporary.replace(path)
    log_event(_log, "snapshots_processed", snapshots=merged)
    return merged


def current_snapshots(tables: list[str]) -> dict[str, int | None]:
    """The current snapshot id of each table (``None``: no snapshot or no table)."""
    from weir import lake

    existing = set(lake.tables())
    found: dict[str, int | None] = {}
    for table in tables:
        ids = lake.snapshots(table).column("snapshot_id").to_pylist() if table in existing else []
        found[table] = ids[-1] if ids else None
    return found


def pending_snapshots(tables: list[str], state: str | None = None) -> dict[str, int]:
    """The tables whose current snapshot is not the one the last run processed."""
    processed = processed_snapshots(state)
    return {
        t: s
        for t, s in current_snapshots(tables).items()
        if s is not None and s != processed.get(t)
    }
