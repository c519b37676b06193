"""The dimensional model: ``dbt build`` of the project in ``<home>/dbt`` on the lake.

    weir transform [--full-refresh] [--select stg_weir__shop_events+]

or from Python::

    result = weir.modeling.build()
    result.ok, result.models, result.tests_passed, result.failures

dbt runs in its own process (``dbt build`` with the project's profile) and reads the lake's
tables through the ``weir.dbt`` plugin; its DuckDB file, ``target/`` and logs live under the
state folder (``<state>/dbt``), never in the checkout. The summary comes from dbt's
``run_results.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from weir import project
from weir.config import state_dir


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


def build(*, select: list[str] | None = None, full_refresh: bool = False) -> BuildResult:
    """Runs ``dbt build`` (models, seeds, data tests, unit tests) and summarises it."""
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
    seconds = time.perf_counter() - started
    nodes = json.loads(results.read_text())["results"] if results.is_file() else []
    models = sum(1 for n in nodes if n["unique_id"].startswith(("model.", "seed.")))
    tests = [n for n in nodes if n["unique_id"].startswith(("test.", "unit_test."))]
    failures = [
        f"{n['status']} {n['unique_id']}: {n.get('message') or ''}".strip()
        for n in nodes
        if n["status"] not in ("success", "pass")
    ]
    if done.returncode != 0 and not failures:
        failures.append(f"dbt exited with {done.returncode}: {done.stdout[-2000:]}")
    return BuildResult(
        returncode=done.returncode,
        models=models,
        tests_passed=sum(1 for n in tests if n["status"] == "pass"),
        tests_failed=sum(1 for n in tests if n["status"] != "pass"),
        seconds=round(seconds, 2),
        failures=failures,
        log=done.stdout,
    )
