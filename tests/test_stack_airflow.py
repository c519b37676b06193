"""The whole product end to end (requirement 11.5), on the local stack ``weir up`` starts:
Kinesis-API server, consumer, ingest API, dashboard and Airflow (scheduler, triggerer, DAG
processor, API server, bound to 127.0.0.1, home and metadata database under the state
folder). Valid and invalid events are POSTed to the ingest API with a key from ``weir
api-key create``; the consumer commits them through Kinesis into Iceberg; the commits start
``weir_transform`` runs by themselves (the asset watcher: dbt, Great Expectations, marts
published), which succeed; then every stage holds exactly what an independent reference
(``tests/reference``, plain Python) says: each valid event in the raw table and in exactly
one fact row, each invalid one in the rejected table with its violations, revenue equal to
the sum computed from the input, and the dashboard's queries agreeing. ``airflow dags
trigger weir_transform`` starts another run at once; ``weir down`` leaves no process
behind. Real processes only; takes a few minutes.

    .venv/bin/python -m pytest tests/test_stack_airflow.py -s   # -s: prints the timings
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.reference import pure_python
from tests.support.servers import free_port
from weir import samples

ROOT = Path(__file__).resolve().parents[1]
#: units of each currency per US dollar (dbt/seeds/exchange_rates.csv), read independently.
RATES = {
    line.split(",")[0]: float(line.split(",")[1])
    for line in (ROOT / "dbt" / "seeds" / "exchange_rates.csv").read_text().splitlines()[1:]
    if line.strip()
}

pytestmark = pytest.mark.integration


def weir_cli(*args: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "weir.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


RUNS = """
import json
from weir import airflow_stack
done = airflow_stack.airflow("dags", "list-runs", "weir_transform", "-o", "json")
lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
print(json.dumps(json.loads(lines[-1]) if lines else []))
"""


#: Whether the transform workflow has processed the current snapshot of every raw table.
PROCESSED = """
from weir import orchestration
done = orchestration.processed_snapshots()
tables = sorted(set(done) | {"raw.shop_events", "raw.shop_events_rejected"})
print(bool(done) and orchestration.current_snapshots(tables) == {t: done.get(t) for t in tables})
"""

#: What each stage holds, read through Weir (and the dashboard's own queries), as JSON.
STAGES = """
import json, sys
sys.path.insert(0, "ROOT")
import weir
from streamlit_app import queries
ctx = weir.connect(read_only=True)
def rows(sql):
    return ctx.sql(sql).to_pylist()
engine = queries.LakeEngine()
everything = queries.Filters()
dq = rows("select count(*) as n, sum(case when not success and severity = 'critical' "
          "then 1 else 0 end) as bad from lake.ops.dq_results")[0]
print(json.dumps({
    "raw_ids": [r["event_id"] for r in rows("select event_id from lake.raw.shop_events")],
    "rejected": [[r["job_id"], r["record_index"]] for r in rows(
        "select job_id, record_index from lake.raw.shop_events_rejected")],
    "violations": rows("select count(*) as n from (select unnest(violations) "
                       "from lake.raw.shop_events_rejected)")[0]["n"],
    "fact_ids": [r["event_id"] for r in rows("select event_id from lake.marts.fct_events")],
    "order_lines": rows("select count(*) as n from lake.marts.fct_order_lines")[0]["n"],
    "revenue_usd": float(
        rows("select sum(revenue_usd) as r from lake.marts.fct_order_lines")[0]["r"]),
    "dq_results": dq["n"],
    "dq_critical_failed": dq["bad"],
    "dashboard_events": sum(
        queries.events_by_hour(engine, everything).column("events").to_pylist()),
    "dashboard_revenue_usd": float(sum(
        queries.revenue_by_hour(engine, everything).column("revenue_usd").to_pylist())),
    "dashboard_funnel": queries.funnel(engine, everything).column("sessions").to_pylist(),
}))
""".replace("ROOT", str(ROOT))


def runs(env: dict[str, str]) -> list[dict]:
    return json.loads(python(RUNS, env).strip().splitlines()[-1])


def wait_for(condition, timeout: float, every: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    return None


def airflow_processes(home: Path) -> list[int]:
    wanted = f"AIRFLOW_HOME={home}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if wanted in (proc / "environ").read_bytes().split(b"\x00"):
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@pytest.fixture
def stack_env(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "AIRFLOW"))}
    env |= {
        "WEIR_STATE_DIR": str(tmp_path / "state"),
        "WEIR_KINESIS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "WEIR_API_PORT": str(free_port()),
        "WEIR_AIRFLOW_PORT": str(free_port()),
        "WEIR_DASHBOARD_PORT": str(free_port()),
        "WEIR_LOG": "error",
    }
    yield env
    weir_cli("down", env=env, timeout=120)


def test_events_posted_to_the_api_reach_the_marts_and_the_dashboard(
    stack_env: dict[str, str],
) -> None:
    home = Path(stack_env["WEIR_STATE_DIR"]) / "airflow"
    started = time.monotonic()
    up = weir_cli("up", "--timeout", "60", env=stack_env)
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    startup = time.monotonic() - started
    for component in ("scheduler", "triggerer", "dag-processor", "api-server"):
        assert f"airflow {component}: started" in up.stdout, up.stdout
    assert f"http://127.0.0.1:{stack_env['WEIR_AIRFLOW_PORT']}" in up.stdout
    assert "login admin / " in up.stdout
    status = weir_cli("status", env=stack_env, timeout=60)
    assert status.returncode == 0, status.stdout
    assert (home / "airflow.db").is_file()
    assert runs(stack_env) == []  # nothing new, nothing runs
    dashboard = f"http://127.0.0.1:{stack_env['WEIR_DASHBOARD_PORT']}"
    assert dashboard in status.stdout
    assert httpx.get(f"{dashboard}/_stcore/health", timeout=10).text == "ok"

    # Events through the API, as a client would send them: three requests, some invalid.
    key = weir_cli("api-key", "create", env=stack_env, timeout=60).stdout.split()[0]
    events = samples.generate_shop_events(600, invalid_fraction=0.1, seed=12)
    payloads = [samples.to_ndjson(events[i : i + 200]) for i in range(0, len(events), 200)]
    api = f"http://127.0.0.1:{stack_env['WEIR_API_PORT']}"
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/x-ndjson"}
    with httpx.Client(base_url=api, headers=headers, timeout=60) as http:
        jobs = []
        for payload in payloads:
            answer = http.post(
                "/v1/ingest/shop_events", params={"mode": "lenient"}, content=payload
            )
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json()["job_id"])
        committed_at = time.monotonic()

        def final() -> list[dict]:
            states = [http.get(f"/v1/jobs/{job}").json() for job in jobs]
            return (
                states
                if all(j["status"] in ("committed", "partially_rejected") for j in states)
                else []
            )

        assert wait_for(final, timeout=120, every=1), [
            http.get(f"/v1/jobs/{j}").json() for j in jobs
        ]
    committed = time.monotonic()
    first = wait_for(lambda: runs(stack_env), timeout=120)
    assert first, "no weir_transform run after a commit"
    assert first[0]["run_id"].startswith("asset_triggered"), first
    noticed = time.monotonic() - committed_at
    # Several commits may start several runs; wait until every raw snapshot is processed.
    processed = wait_for(
        lambda: (
            python(PROCESSED, stack_env).strip().splitlines()[-1] == "True"
            and all(r["state"] in ("success", "failed") for r in runs(stack_env))
        ),
        timeout=600,
        every=10,
    )
    all_runs = runs(stack_env)
    assert processed, all_runs
    assert all(r["state"] == "success" for r in all_runs), all_runs
    transformed = time.monotonic() - committed

    # Every stage against the independent reference.
    reference = [pure_python(payload, "ndjson") for payload in payloads]
    valid = [row for result in reference for row in result.output]
    expected_rejected = {
        (job, index)
        for job, result in zip(jobs, reference, strict=True)
        for index in {v[0] for v in result.violation_details}
    }
    lines = [row for row in valid if row["event_type"] in ("purchase", "refund")]
    revenue = sum(
        (-1 if row["event_type"] == "refund" else 1) * row["amount"] / RATES[row["currency"]]
        for row in lines
    )
    found = json.loads(python(STAGES, stack_env).strip().splitlines()[-1])
    assert sorted(found["raw_ids"]) == sorted(row["event_id"] for row in valid)
    assert {(j, i) for j, i in found["rejected"]} == expected_rejected
    assert found["violations"] == sum(result.violations for result in reference)
    assert sorted(found["fact_ids"]) == sorted(row["event_id"] for row in valid)  # once each
    assert found["order_lines"] == len(lines)
    assert abs(found["revenue_usd"] - revenue) <= 0.005 * len(lines) + 1e-6
    assert found["dq_critical_failed"] == 0 and found["dq_results"] > 0
    assert found["dashboard_events"] == len(valid)
    assert abs(found["dashboard_revenue_usd"] - found["revenue_usd"]) < 1e-6
    assert found["dashboard_funnel"][0] == len(
        {r["session_id"] for r in valid if r["event_type"] == "page_view"}
    )

    trigger = python(
        "from weir import airflow_stack\n"
        "done = airflow_stack.airflow('dags', 'trigger', 'weir_transform')\n"
        "print(done.returncode)\n",
        stack_env,
    )
    assert trigger.strip().splitlines()[-1] == "0"
    manual = wait_for(
        lambda: [
            r
            for r in runs(stack_env)
            if r["run_id"].startswith("manual") and r["state"] in ("running", "success")
        ],
        timeout=30,
        every=2,
    )
    assert manual, runs(stack_env)

    down = weir_cli("down", env=stack_env, timeout=120)
    assert down.returncode == 0, down.stderr
    assert airflow_processes(home) == []
    print(
        f"startup {startup:.0f} s, first commit noticed after {noticed:.0f} s, "
        f"marts built {transformed:.0f} s after the last job committed"
    )
