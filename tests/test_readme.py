"""The README, tried as a new user would: its shell and Python blocks, run as written.

Every command line of every ``sh`` block in ``README.md`` is either run here or listed in
``NOT_RUN`` with the reason; a new line in the README fails this test until it is one or the
other. The order is a newcomer's: ``make demo`` (its recipe, without re-running set-up),
then the stack's URLs are checked while it keeps running (the dashboard, the API docs,
Airflow), then the README's ``weir`` commands, the ``curl`` calls of the ingest API and the
Python blocks against that stack, ``weir down`` (no process of the stack left), and last the
commands that run in the foreground (``weir dashboard``, ``weir notebook``: started, checked
to answer, stopped with Ctrl-C's signal).

What differs from a user's terminal, and only this: the services listen on free ports and the
state lives in a temporary folder, set through the documented variables (``WEIR_API_PORT``,
``WEIR_KINESIS_ENDPOINT``, ``WEIR_DASHBOARD_PORT``, ``WEIR_AIRFLOW_PORT``,
``WEIR_STATE_DIR``), so the README's ``127.0.0.1:8000`` becomes the API's port; the demo
posts 2,000 events instead of 20,000 (``DEMO_ARGS``); ``<job_id>`` is the job the first
``curl`` returned; the Python blocks' placeholders (``datetime_utc``, ``schema``, ...) are
defined in ``PRELUDE``. Commands run in a fresh folder holding only a ``.venv`` link to the
checkout's, so ``events.ndjson`` is the one the README's ``weir sample`` line writes. Takes
about four minutes (Airflow's start and the transform workflow).

    .venv/bin/python -m pytest tests/test_readme.py -s
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.integration

#: Command lines not run here, and why (each is still checked to be in the README).
NOT_RUN = {
    "make test": "the test suite itself; this test runs inside it",
    ".venv/bin/weir consume & .venv/bin/weir serve --host 0.0.0.0": (
        "needs AWS Kinesis, PostgreSQL and S3; its variables are checked instead"
    ),
}
#: Commands that run until stopped: started, checked to answer, then stopped.
FOREGROUND = {
    ".venv/bin/weir dashboard",
    ".venv/bin/weir notebook",
    ".venv/bin/weir consume",
}

#: Names the Python blocks use without defining them, as a user would have them.
PRELUDE = """
from datetime import datetime, timezone
import pyarrow as pa
data = open("events.ndjson", "rb").read()
ndjson_bytes = data
datetime_utc = datetime.now(timezone.utc)
schema = pa.schema([("day", pa.date32()), ("revenue", pa.float64())])
daily_sales_table = pa.table(
    {"day": pa.array([datetime_utc.date()], pa.date32()), "revenue": pa.array([12.5])}
)
run_id = "readme"
"""


def outside_make(env: dict[str, str]) -> dict[str, str]:
    """``env`` as a terminal has it: without the variables of the ``make test`` running this
    test (a nested make would announce its directories and share the outer one's flags)."""
    return {k: v for k, v in env.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}


def blocks(language: str) -> list[str]:
    return [
        body
        for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)
        if lang == language
    ]


def commands(block: str) -> list[str]:
    """The block's command lines: continuation lines joined, comments and outputs dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        text = re.sub(r"\s{2,}#.*$", "", line).strip()
        if text and not text.startswith("#"):
            found.append(text)
    return found


def shell(command: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"README command failed ({done.returncode}): {command}\n"
        f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


def answers(url: str, expect: str | None = None, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=5, trust_env=False, follow_redirects=True)
            if answer.status_code == 200 and (expect is None or expect in answer.text):
                return answer
            last = answer.status_code
        except httpx.TransportError as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 in {timeout:g} s (last: {last})")


def started(command: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stopped(process: subprocess.Popen, timeout: float = 60) -> str:
    """Ctrl-C's signal, then the exit code and output; the process group is gone after."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(
            f"did not stop on SIGINT within {timeout:g} s:\n{output[-3000:]}"
        ) from None
    return output


def stack_processes(state: Path) -> list[int]:
    """Processes started with this test's state folder (the stack's services)."""
    wanted = f"WEIR_STATE_DIR={state}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and wanted in (proc / "environ").read_bytes().split(
                b"\x00"
            ):
                found.append(int(proc.name))
        except (OSError, ValueError):
            pass
    return found


@pytest.fixture
def newcomer(tmp_path: Path):
    """A user's terminal: a fresh folder with the checkout's ``.venv``, the stack's ports
    free, the state folder new, no browser to open."""
    state = tmp_path / "state"
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "AIRFLOW"))}
    env |= {
        "WEIR_STATE_DIR": str(state),
        "WEIR_KINESIS_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "WEIR_API_PORT": str(free_port()),
        "WEIR_AIRFLOW_PORT": str(free_port()),
        "WEIR_DASHBOARD_PORT": str(free_port()),
        "WEIR_LOG": "error",
        "BROWSER": "true",  # `weir notebook` opens a browser: here a no-op
    }
    yield env, work, state
    subprocess.run(
        [sys.executable, "-m", "weir.cli", "down"], env=env, capture_output=True, timeout=180
    )


def test_every_readme_command_line_is_run_or_says_why_not() -> None:
    lines = [line for block in blocks("sh") for line in commands(block)]
    assert "make demo" in lines and ".venv/bin/weir up" in lines, lines
    for line in NOT_RUN:
        assert line in lines, f"NOT_RUN lists a line the README no longer has: {line}"
    handled = set(NOT_RUN) | FOREGROUND
    runnable = {
        "make demo",
        *(line for line in lines if line.startswith((".venv/bin/weir", "curl", "export"))),
    }
    assert set(lines) <= handled | runnable, set(lines) - handled - runnable
    # the demo's recipe is set-up, then `weir demo` with DEMO_ARGS
    recipe = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "setup", "demo", "DEMO_ARGS=--exit"],
        cwd=ROOT,
        env=outside_make(dict(os.environ)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert recipe.endswith(".venv/bin/weir demo --exit"), recipe


def test_readme_runs_as_written(newcomer) -> None:
    env, work, state = newcomer
    api_port = env["WEIR_API_PORT"]
    sh = [commands(block) for block in blocks("sh")]
    lines = [line for block in sh for line in block]
    # the block configuring PostgreSQL, S3 and AWS: checked below, not run against the stack
    remote = next(block for block in sh if any("WEIR_METASTORE" in line for line in block))
    timings = {}

    # 1. `make demo`: its recipe (set-up is what the test session already has). The stack
    # keeps running and its URLs answer.
    clock = time.monotonic()
    demo = shell(
        'make --no-print-directory -o setup demo DEMO_ARGS="--records 2000"',
        outside_make(env),
        ROOT,
        timeout=1500,
    )
    timings["make demo"] = time.monotonic() - clock
    assert "The stack keeps running" in demo, demo[-3000:]
    assert re.search(r"marts\.fct_events\s+│\s+[1-9]", demo), demo[-3000:]
    urls = dict(re.findall(r"^\s*(dashboard|API docs|Airflow)\s+(http://\S+)", demo, re.M))
    assert set(urls) == {"dashboard", "API docs", "Airflow"}, demo[-2000:]
    answers(urls["dashboard"].rstrip("/") + "/_stcore/health", "ok")
    assert "Swagger UI" in answers(urls["API docs"]).text
    answers(urls["Airflow"])
    assert f"127.0.0.1:{api_port}" in urls["API docs"]

    # 2. The README's commands against the running stack, in the README's order; `weir
    # down` and the foreground commands come after.
    later = {".venv/bin/weir down"} | FOREGROUND
    job_id = None
    for line in lines:
        if line in NOT_RUN or line in later or line in remote or line.startswith("make "):
            continue
        command = line.replace("127.0.0.1:8000", f"127.0.0.1:{api_port}")
        if "<job_id>" in command:
            assert job_id, "the README asks for a job before posting one"
            command = command.replace("<job_id>", job_id)
        clock = time.monotonic()
        if line.startswith("export "):  # the variable carries over to the next lines
            out = shell(f"{command} && env -0", env, work)
            env = dict(item.split("=", 1) for item in out.split("\0") if "=" in item)
            assert re.match(r"export (\w+)=", line).group(1) in env, line
            continue
        out = shell(command, env, work, timeout=900)
        timings[line[:40]] = time.monotonic() - clock
        if line == ".venv/bin/weir api-key create":
            env["WEIR_KEY"] = out.split()[0]
        elif line.startswith(".venv/bin/weir up"):
            assert "already running" in out, out
        elif line.startswith(".venv/bin/weir status"):
            assert f"127.0.0.1:{env['WEIR_DASHBOARD_PORT']}" in out, out
        elif line.startswith(".venv/bin/weir sample"):
            assert (work / "events.ndjson").stat().st_size > 0
        elif line.startswith("curl -X POST"):
            body = json.loads(out)
            assert (body["status"], body["received"], body["valid"], body["rejected"]) == (
                "published",
                500,
                490,
                10,
            ), body
            job_id = body["job_id"]
        elif line.startswith("curl") and job_id:
            assert json.loads(out)["job_id"] == job_id, out
        elif line.startswith(".venv/bin/weir sql"):
            assert "page_view" in out and "purchase" in out, out
        elif line.startswith(".venv/bin/weir jobs"):
            assert "committed" in out or "partially_rejected" in out, out
    assert job_id, "the README's curl POST did not run"

    # The streaming block's consumer: another consumer beside the stack's, sharing shards.
    consumer = started(".venv/bin/weir consume", env, work)
    time.sleep(5)
    assert consumer.poll() is None, consumer.communicate()[0][-3000:]
    stopped(consumer)
    assert consumer.returncode == 0, consumer.returncode

    # 3. The Python blocks, in one interpreter as a user would type them (later blocks use
    # names from earlier ones), with only their placeholders defined.
    runner = (
        "import json, sys, traceback\n"
        "namespace = {}\n"
        "exec(compile(sys.argv[1], 'PRELUDE', 'exec'), namespace)\n"
        "for number, block in enumerate(json.loads(sys.argv[2]), 1):\n"
        "    try:\n"
        "        exec(compile(block, f'README python block {number}', 'exec'), namespace)\n"
        "    except Exception:\n"
        "        print(f'--- block {number} failed:\\n{block}', file=sys.stderr)\n"
        "        traceback.print_exc()\n"
        "        sys.exit(1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", runner, PRELUDE, json.dumps(blocks("python"))],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    # The configuration block's variables mean what the README says (running it needs AWS).
    exports = [line for line in remote if line.startswith("export ")]
    assert exports, "the README's configuration block has no variables"
    probe = (
        "import json, weir.config as c\n"
        "lake, kinesis = c.lake_settings().properties(), c.kinesis_settings().properties()\n"
        "print(json.dumps([lake[k] for k in ('metastore', 'warehouse', 's3.region')]"
        " + [kinesis[k] for k in ('kinesis.endpoint', 'kinesis.region')]))"
    )
    settings = json.loads(
        shell("; ".join([*exports, f'{sys.executable} -c "$PROBE"']), env | {"PROBE": probe}, work)
        .splitlines()[-1]
    )
    assert settings[0].startswith("postgresql://weir:secret@db.internal:5432/weir"), settings
    assert settings[1:] == ["s3://my-bucket/lake", "eu-west-1", "", "eu-west-1"], settings

    # 4. `weir down`: nothing of the stack is left.
    shell(".venv/bin/weir down", env, work, timeout=180)
    deadline = time.monotonic() + 30
    while stack_processes(state) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack_processes(state) == []

    # 5. The foreground commands: they answer, and Ctrl-C stops them.
    dashboard = started(".venv/bin/weir dashboard", env, work)
    try:
        answers(f"http://127.0.0.1:{env['WEIR_DASHBOARD_PORT']}/_stcore/health", "ok", 90)
    finally:
        stopped(dashboard)
    notebook = started(".venv/bin/weir notebook", env, work)
    try:
        deadline = time.monotonic() + 90
        url = None
        while url is None and time.monotonic() < deadline and notebook.poll() is None:
            line = notebook.stdout.readline()
            found = re.search(r"(http://127\.0\.0\.1:\d+/lab\?token=\w+)", line)
            url = found.group(1) if found else None
        assert url, "JupyterLab did not print its URL"
        assert "JupyterLab" in answers(url).text
    finally:
        stopped(notebook)
    print({k: round(v) for k, v in timings.items()})
