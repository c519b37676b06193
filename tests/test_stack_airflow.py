"""The local stack with Airflow (``weir up``): its scheduler, triggerer, DAG processor and
API server start bound to 127.0.0.1 with their home and metadata database under the state
folder; a commit to ``raw.shop_events`` starts a ``weir_transform`` run by itself (the asset
watcher), which succeeds; ``airflow dags trigger weir_transform`` starts another at once;
``weir down`` leaves no Airflow process behind. Real processes only; takes a few minutes.

    .venv/bin/python -m pytest tests/test_stack_airflow.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.servers import free_port

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
        "WEIR_LOG": "error",
    }
    yield env
    weir_cli("down", env=env, timeout=120)


def test_a_commit_starts_the_transform_and_a_trigger_starts_one_at_once(
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

    python(
        "import json, weir\n"
        "from weir import samples\n"
        "events = samples.generate_shop_events(600, seed=12)\n"
        "weir.append('raw.shop_events', weir.process(json.dumps(events), 'json').output)\n",
        stack_env,
    )
    committed = time.monotonic()
    first = wait_for(lambda: runs(stack_env), timeout=120)
    assert first, "no weir_transform run after a commit"
    assert first[0]["run_id"].startswith("asset_triggered"), first
    noticed = time.monotonic() - committed
    done = wait_for(
        lambda: [r for r in runs(stack_env) if r["state"] in ("success", "failed")],
        timeout=420,
        every=10,
    )
    assert done and done[0]["state"] == "success", done

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
    print(f"startup {startup:.0f} s, commit noticed after {noticed:.0f} s")
