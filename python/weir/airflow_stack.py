"""Airflow in the local stack: ``weir up`` starts its scheduler, triggerer, DAG processor and
API server (the UI) next to Weir's services, all bound to 127.0.0.1.

    weir up                 # ... and Airflow at http://127.0.0.1:8080 (login printed)
    weir up --no-airflow    # Weir's services only

Airflow keeps its home (``airflow.cfg``, logs, the generated login) and its own SQLite
metadata database under ``<state>/airflow`` (``WEIR_AIRFLOW_DATABASE`` for PostgreSQL:
``postgresql+psycopg2://...``); Weir's metastore is a separate database. The DAGs are
``<home>/dags``. ``LocalExecutor`` with 2 parallel tasks (2-core machines), DAGs unpaused at
creation, no examples. ``WEIR_AIRFLOW_PORT`` moves the API server (default 8080).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from weir import project
from weir.config import state_dir

#: The components ``weir up`` starts, in order.
COMPONENTS = ("scheduler", "triggerer", "dag-processor", "api-server")
#: The user of Airflow's simple auth manager; its password is generated on first start.
USER = "admin"


def home() -> Path:
    return state_dir() / "airflow"


def port() -> int:
    return int(os.environ.get("WEIR_AIRFLOW_PORT") or 8080)


def url() -> str:
    return f"http://127.0.0.1:{port()}"


def environment() -> dict[str, str]:
    """Airflow's settings for the local stack (added to the environment of its processes
    and of ``airflow`` commands run for it)."""
    folder = home()
    database = os.environ.get("WEIR_AIRFLOW_DATABASE") or f"sqlite:///{folder}/airflow.db"
    bin_folder = str(Path(sys.executable).parent)
    defaults = {
        "AIRFLOW_HOME": str(folder),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project.home() / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port()),
        "AIRFLOW__API__BASE_URL": url(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url()}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(port() + 13),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "10",
        "WEIR_STATE_DIR": str(state_dir()),
        # Airflow starts task runners as `airflow ...` from PATH: this environment's first.
        "PATH": bin_folder + os.pathsep + os.environ.get("PATH", ""),
    }
    # Settings the user gave (AIRFLOW__SECTION__KEY) win; the home and state are the stack's.
    chosen = {
        k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__") and k in defaults
    }
    return defaults | chosen


def airflow(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs ``airflow <args>`` for the local stack (its home and database)."""
    command = [str(Path(sys.executable).parent / "airflow"), *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **environment()},
        timeout=timeout,
        check=False,
    )


def migrate() -> None:
    """Creates or upgrades Airflow's metadata database (idempotent; ~10 s)."""
    home().mkdir(parents=True, exist_ok=True)
    done = airflow("db", "migrate")
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{done.stderr[-3000:]}")


def answers() -> bool:
    try:
        with urllib.request.urlopen(f"{url()}/api/v2/monitor/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def login() -> str:
    """``user / password`` of the UI (the simple auth manager writes the password on its
    first start), or where to find it."""
    generated = home() / "simple_auth_manager_passwords.json.generated"
    if generated.is_file():
        import json

        passwords: dict[str, Any] = json.loads(generated.read_text())
        if USER in passwords:
            return f"{USER} / {passwords[USER]}"
    return f"{USER} / (see {generated})"
