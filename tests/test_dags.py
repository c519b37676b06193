"""Airflow 3 DAGs (``dags/``) on real Iceberg tables, dbt and Great Expectations: the
DagBag loads fast with no errors, ``dag.test()`` of ``weir_transform`` on demo data ends
successful and updates the marts and ``ops.dq_results``, and Weir's task defaults retry a
task that fails twice (both tries in its history) and fail the run when a task always
fails, with its error in the task's log.

Airflow runs in its own processes (``airflow db migrate``, then a script calling
``dag.test()``) with ``AIRFLOW_HOME`` and a SQLite metadata database in a temporary folder,
so its configuration never leaks into the test process.

    .venv/bin/python -m pytest tests/test_dags.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import weir

ROOT = Path(__file__).resolve().parents[1]


def airflow_env(home: Path, state: Path, dags: Path = ROOT / "dags") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WEIR_"))}
    return env | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "WEIR_STATE_DIR": str(state),
        "WEIR_LOG": "error",
    }


def run_python(code: str, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata database, migrated once for the module."""
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home, home / "state")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return home


DAG_TEST = """
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    run = bag.get_dag(sys.argv[2]).test()
    with create_session() as session:
        history = {
            (h.task_id, h.try_number): str(h.state)
            for h in session.query(TaskInstanceHistory).filter_by(run_id=run.run_id)
        }
        instances = {
            ti.task_id: [str(ti.state), ti.try_number]
            for ti in run.get_task_instances(session=session)
        }
    print("RESULT " + json.dumps({
        "state": str(run.state),
        "instances": instances,
        "history": [[t, n, s] for (t, n), s in sorted(history.items())],
    }))
"""


def dag_test(env: dict[str, str], folder: Path, dag_id: str) -> tuple[dict, str]:
    done = run_python(
        "import sys; sys.argv[1:] = "
        + repr([str(folder), dag_id])
        + "\n"
        + textwrap.dedent(DAG_TEST),
        env,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(lines[-1][len("RESULT ") :]), done.stdout + done.stderr


def test_the_dagbag_loads_fast_with_no_errors(airflow_home: Path) -> None:
    done = run_python(
        """
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=__import__("os").environ["AIRFLOW__CORE__DAGS_FOLDER"])
        print(json.dumps({
            "errors": bag.import_errors,
            "dags": {d: [t.task_id for t in bag.get_dag(d).tasks] for d in bag.dag_ids},
            "seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
            "retries": {d: sorted({t.retries for t in bag.get_dag(d).tasks}) for d in bag.dag_ids},
        }))
        """,
        airflow_env(airflow_home, airflow_home / "state"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert set(found["dags"]) == {"weir_transform", "weir_maintenance"}
    assert found["dags"]["weir_transform"] == [
        "dbt_staging", "dbt_intermediate", "dbt_marts", "quality_raw",
        "publish_marts", "quality_marts", "summary", "mark_processed",
    ]  # fmt: skip
    assert all(seconds < 2.0 for seconds in found["seconds"].values()), found["seconds"]
    assert found["retries"] == {"weir_transform": [3], "weir_maintenance": [3]}


def test_weir_transform_runs_on_demo_data(
    airflow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dbt layers, checks, publishing: the run succeeds and leaves marts and results."""
    state = tmp_path / "state"
    env = airflow_env(airflow_home, state)
    done = run_python(
        """
        import json, weir
        from weir import samples
        events = samples.generate_shop_events(1500, invalid_fraction=0.04, seed=9)
        result = weir.process(json.dumps(events), "json")
        weir.append("raw.shop_events", result.output)
        weir.append("raw.shop_events_rejected", result.rejected)
        """,
        env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result, log = dag_test(env, ROOT / "dags", "weir_transform")
    assert result["state"] == "success", log[-5000:]
    assert all(state == "success" for state, _ in result["instances"].values()), result
    monkeypatch.setenv("WEIR_STATE_DIR", str(state))
    tables = set(weir.lake.tables())
    assert {"marts.fct_events", "marts.dim_users", "ops.dq_results"} <= tables
    counts = (
        weir.connect()
        .sql("select suite, count(distinct table_name) as n from lake.ops.dq_results group by 1")
        .to_pylist()
    )
    assert {r["suite"]: r["n"] for r in counts} == {"contract": 1, "ingest_gate": 1, "marts": 5}
    summary = weir.lake.snapshots("marts.fct_events").column("summary")[-1].as_py()
    assert "dbt.invocation-id" in json.loads(summary)
    # Its last task recorded the raw snapshot it processed: nothing is pending now.
    current = weir.lake.snapshots("raw.shop_events").column("snapshot_id")[-1].as_py()
    processed = json.loads((state / "orchestration" / "processed.json").read_text())
    assert processed["raw.shop_events"] == current


RETRY_DAG = '''
"""Test DAG: Weir's task defaults (no delay between tries)."""
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import dag, task

from weir.orchestration import task_defaults

COUNTER = Path(__file__).with_name("tries")


@dag(dag_id="weir_retry_check", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def weir_retry_check():
    @task(**task_defaults(retry_delay=timedelta(seconds=0), retry_exponential_backoff=False))
    def flaky():
        tries = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
        COUNTER.write_text(str(tries))
        if tries < 3:
            raise RuntimeError(f"flaky failure number {tries}")
        return tries

    flaky()


@dag(dag_id="weir_always_fails", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def weir_always_fails():
    no_wait = {"retry_delay": timedelta(seconds=0), "retry_exponential_backoff": False}

    @task(**task_defaults(retries=1, **no_wait))
    def broken():
        raise RuntimeError("the lake is on fire (deliberate test failure)")

    broken()


weir_retry_check()
weir_always_fails()
'''


def test_weir_task_defaults_retry_and_fail_runs(airflow_home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "retry_check.py").write_text(RETRY_DAG)
    env = airflow_env(airflow_home, tmp_path / "state", folder)
    result, log = dag_test(env, folder, "weir_retry_check")
    assert result["state"] == "success", log[-5000:]
    assert result["instances"]["flaky"] == ["success", 3]
    assert [h[:2] for h in result["history"]] == [["flaky", 1], ["flaky", 2]], result["history"]
    assert (folder / "tries").read_text() == "3"
    failed, log = dag_test(env, folder, "weir_always_fails")
    assert failed["state"] == "failed"
    assert failed["instances"]["broken"][0] == "failed"
    assert "the lake is on fire" in log
    # The failure callback logged the failure with its context.
    assert '"event": "task_failed"' in log and '"task": "broken"' in log


TRIGGER_CHECK = """
    import asyncio, json, sys, time
    import weir
    from weir import orchestration, samples
    from weir.triggers import NewSnapshotTrigger

    events = weir.process(json.dumps(samples.generate_shop_events(40, seed=4)), "json").output
    weir.append("raw.shop_events", events.slice(0, 10))
    first = orchestration.current_snapshots(["raw.shop_events"])
    orchestration.mark_processed(first)
    trigger = NewSnapshotTrigger(["raw.shop_events"], poll_seconds=0.1, quiet_seconds=1.0)
    assert NewSnapshotTrigger(*trigger.serialize()[1].values()).serialize() == trigger.serialize()
    fired = []

    async def watch():
        async for event in trigger.run():
            fired.append(event.payload)

    async def main():
        watcher = asyncio.create_task(watch())
        await asyncio.sleep(2.5)
        quiet = list(fired)
        for k in range(3):  # a burst of commits
            await asyncio.to_thread(weir.append, "raw.shop_events", events.slice(10 + k * 10, 10))
            await asyncio.sleep(0.3)
        await asyncio.sleep(2.5)
        burst = list(fired)
        orchestration.mark_processed(burst[-1]["snapshots"] if burst else {})
        await asyncio.sleep(1.5)
        watcher.cancel()
        last = orchestration.current_snapshots(["raw.shop_events"])
        print("RESULT " + json.dumps({"quiet": quiet, "burst": burst, "after": fired[len(burst):],
                                      "last": last, "first": first}))

    asyncio.run(main())
"""


def test_the_snapshot_trigger_fires_once_per_burst_of_new_snapshots(
    airflow_home: Path, tmp_path: Path
) -> None:
    """Nothing new (the current snapshot was processed): no event. Three commits in a
    burst: one event, carrying the last snapshot, once they are quiet for a second. Marked
    processed: no further event."""
    done = run_python(TRIGGER_CHECK, airflow_env(airflow_home, tmp_path / "state"))
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["quiet"] == []
    assert result["burst"] == [{"snapshots": result["last"]}]
    assert result["last"] != result["first"]
    assert result["after"] == []
