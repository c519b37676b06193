"""The `weir` command line: `weir process` summarises a file and writes its outputs; `weir
demo` runs the whole ingestion path on a private stack and `weir maintain` compacts the lake;
`weir dashboard` serves the Streamlit app until a signal stops it; `weir sql` prints a query's
rows and `weir jobs` the jobs table; `weir sample` writes generated events in each format.

    .venv/bin/python -m pytest tests/test_cli.py
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
import pyarrow.parquet as pq
import pytest

import weir
from tests.support.servers import free_port
from weir import cli, samples, stack


def test_process_writes_outputs_and_prints_a_summary(tmp_path, capsys):
    events = samples.generate_shop_events(500, invalid_fraction=0.1, seed=5)
    source = tmp_path / "events.jsonl"
    source.write_bytes(samples.to_ndjson(events))
    out, bad = tmp_path / "out.parquet", tmp_path / "bad.ndjson"
    assert cli.main(["process", str(source), "--output", str(out), "--rejected", str(bad)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 500
    assert summary["valid"] + summary["rejected"] == 500 and summary["rejected"] > 0
    assert pq.read_table(out).num_rows == summary["valid"]
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"
    rejected = [json.loads(line) for line in bad.read_text().splitlines()]
    assert len(rejected) == summary["rejected"] and rejected[0]["violations"]


def test_unknown_suffix_and_missing_file_are_clear_errors(tmp_path):
    odd = tmp_path / "events.xml"
    odd.write_text("<a/>")
    for argv, message in (
        (["process", str(odd)], "cannot tell the format"),
        (["process", str(tmp_path / "missing.csv")], "does not exist"),
    ):
        with pytest.raises(SystemExit, match=message):
            cli.main(argv)


def test_weir_errors_exit_2_with_the_message(tmp_path, capsys):
    source = tmp_path / "events.json"
    source.write_bytes(b"PAR1....")
    assert cli.main(["process", str(source)]) == 2
    assert "UnsupportedFormatError" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_the_whole_path_and_maintain_compacts_it(tmp_path, monkeypatch, capsys):
    from tests.support.servers import free_port

    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEIR_KINESIS_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("WEIR_API_PORT", str(free_port()))
    monkeypatch.setenv("WEIR_DASHBOARD_PORT", str(free_port()))
    # The first run leaves the stack up, the second finds it running and stops it. Without
    # Airflow (tests/test_stack_airflow.py runs the workflow): the transform and the quality
    # checks run in the demo's process.
    demo = ["demo", "--batch-size", "200", "--no-airflow"]
    try:
        assert cli.main([*demo, "--records", "600"]) == 0
        first = capsys.readouterr().out
        assert "The stack keeps running" in first and "dashboard  http://127.0.0.1:" in first
        assert cli.main([*demo, "--records", "400", "--exit"]) == 0
    finally:
        stack.down()  # also when the demo failed: no service outlives the test
    out = first + capsys.readouterr().out
    assert "already running" in out and "stopped" in out
    assert "partially_rejected" in out and "A quarantined record" in out
    assert "marts published" in out and "Marts (the star schema" in out
    assert re.search(r"marts\.fct_events\s+│\s+[1-9]", out), out[-3000:]
    assert "Data quality (latest check of each table)" in out and "raw.shop_events" in out
    assert (
        weir.lake.read("raw.shop_events").num_rows
        + weir.lake.read("raw.shop_events_rejected").num_rows
        == 1000
    )
    assert all(not s.running for s in stack.status())
    assert (
        cli.main(
            ["maintain", "--table", "raw.shop_events", "--retain-last", "1", "--max-age-hours", "0"]
        )
        == 0
    )
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    compact, expire = reports
    assert compact["step"] == "compact" and compact["partitions_compacted"] >= 1
    assert expire["step"] == "expire" and expire["snapshots_kept"] == 1
    # The whole lake: the policy on every table, then the jobs' retention (30 days), which
    # keeps the demo's jobs.
    jobs = weir.stream.jobs().num_rows
    assert cli.main(["maintain"]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["step"] for r in reports[:-1]] == ["policy"] * len(weir.lake.tables())
    assert reports[-1] == {**reports[-1], "step": "prune", "jobs": 0, "job_records": 0}
    assert weir.stream.jobs().num_rows == jobs > 0


def dashboard_home(folder: Path) -> Path:
    """A project home whose Streamlit app is a one-line page: these tests are about starting
    and stopping the dashboard, not about its pages (``streamlit_app/`` tests those)."""
    app = folder / "streamlit_app" / "streamlit_app.py"
    app.parent.mkdir(parents=True)
    app.write_text('import streamlit as st\n\nst.title("stub")\n')
    return folder


def wait_for_health(base_url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            answer = httpx.get(f"{base_url}/_stcore/health", trust_env=False, timeout=2)
            if answer.status_code == 200 and answer.text.strip() == "ok":
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base_url}/_stcore/health did not answer ok in {timeout:g}s")


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dashboard_serves_the_app_until_a_signal(tmp_path, stop_signal):
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "WEIR_HOME": str(dashboard_home(tmp_path))}
    env.pop("WEIR_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "weir.cli", "dashboard", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_health(base_url, process)
        page = httpx.get(f"{base_url}/", trust_env=False, timeout=5)
        assert page.status_code == 200 and "<title>Streamlit</title>" in page.text
        # Streamlit runs in this process: `weir status` / `weir down` find it by this marker.
        assert b"weir.cli\x00dashboard\x00" in Path(f"/proc/{process.pid}/cmdline").read_bytes()
        process.send_signal(stop_signal)
        _out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"weir dashboard: {base_url}" in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/_stcore/health", trust_env=False, timeout=2)


def test_dashboard_without_its_app_names_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("WEIR_HOME", str(tmp_path))
    missing = tmp_path / "streamlit_app" / "streamlit_app.py"
    with pytest.raises(SystemExit, match=re.escape(f"the Streamlit app {missing} does not")):
        cli.main(["dashboard", "--port", str(free_port())])


def weir_on(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``weir <args>`` in its own process on the lake under ``state``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env |= {"WEIR_STATE_DIR": str(state), "COLUMNS": "200"}
    weir_cli = str(Path(sys.executable).parent / "weir")
    return subprocess.run([weir_cli, *args], capture_output=True, text=True, env=env, timeout=120)


def test_sql_prints_rows_as_a_table_csv_or_json(dashboard_lake: Path) -> None:
    from tests.support.dashboard import EVENTS_PER_JOB, JOBS

    query = "select event_type, count(*) as n from lake.raw.shop_events group by 1 order by 1"
    as_csv = weir_on(dashboard_lake, "sql", query, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    lines = as_csv.stdout.strip().splitlines()
    assert lines[0] == '"event_type","n"'
    counts = {row.split(",")[0].strip('"'): int(row.split(",")[1]) for row in lines[1:]}
    as_json = weir_on(dashboard_lake, "sql", query, "--format", "json")
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {r["event_type"]: r["n"] for r in rows} == counts
    jobs = weir_on(dashboard_lake, "jobs", "--format", "json")
    stored = sum(json.loads(line)["valid"] for line in jobs.stdout.splitlines())
    assert sum(counts.values()) == stored and 0 < stored < JOBS * EVENTS_PER_JOB
    as_table = weir_on(dashboard_lake, "sql", query, "--limit", "2")
    assert as_table.returncode == 0 and "add_to_cart" in as_table.stdout
    assert f"{len(counts)} rows, 2 shown (--limit)" in as_table.stdout


def test_sql_with_an_error_names_it_and_the_tables(dashboard_lake: Path) -> None:
    done = weir_on(dashboard_lake, "sql", "select nope from lake.raw.shop_events")
    assert done.returncode == 2
    assert "No field named nope" in done.stderr
    assert "lake.marts.fct_events" in done.stderr  # the tables there are


def test_jobs_lists_the_newest_and_shows_one(dashboard_lake: Path) -> None:
    from tests.support.dashboard import JOBS

    listed = weir_on(dashboard_lake, "jobs", "--format", "json")
    jobs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(jobs) == JOBS
    created = [j["created_at_ms"] for j in jobs]
    assert created == sorted(created, reverse=True)
    table = weir_on(dashboard_lake, "jobs", "--limit", "2")
    assert table.returncode == 0 and jobs[0]["job_id"] in table.stdout
    assert jobs[2]["job_id"] not in table.stdout
    status = jobs[0]["status"]
    only = weir_on(dashboard_lake, "jobs", "--status", status, "--format", "json")
    assert {json.loads(line)["status"] for line in only.stdout.splitlines()} == {status}
    one = weir_on(dashboard_lake, "jobs", jobs[1]["job_id"])
    assert one.returncode == 0
    assert re.search(rf"^status\s+{status}$", one.stdout, re.M)
    assert re.search(rf"^received\s+{jobs[1]['received']}$", one.stdout, re.M)
    unknown = weir_on(dashboard_lake, "jobs", "no-such-job")
    assert unknown.returncode == 1 and "no job 'no-such-job'" in unknown.stderr


def test_sample_writes_events_the_processor_reads_back(tmp_path, capsys) -> None:
    target = tmp_path / "events.ndjson"
    assert cli.main(["sample", "200", "--invalid-fraction", "0.05", "-o", str(target)]) == 0
    assert "wrote 200 shop_events records (10 broken on purpose)" in capsys.readouterr().err
    assert target.read_bytes() == samples.to_ndjson(
        samples.generate_shop_events(200, invalid_fraction=0.05, seed=0)
    )
    result = weir.process(target.read_bytes(), "ndjson")
    assert (result.output.num_rows, result.rejected.num_rows) == (190, 10)
    # to standard output, as CSV, another seed, nothing broken
    sample = ["sample", "50", "--format", "csv", "--seed", "3", "--invalid-fraction", "0"]
    assert cli.main(sample) == 0
    text = capsys.readouterr().out
    assert text.startswith("event_id,") and len(text.strip().splitlines()) == 51
    assert weir.process(text.encode(), "csv").output.num_rows == 50
    for bad, message in ((["-1"], "0 or more"), (["--invalid-fraction", "2"], "between 0 and 1")):
        with pytest.raises(SystemExit, match=message):
            cli.main(["sample", *bad])


def test_every_command_shows_an_example_in_its_help(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    commands = re.search(r"\{([a-z,-]+)\}", capsys.readouterr().out).group(1).split(",")
    assert {"sql", "jobs", "notebook", "dashboard", "transform"} <= set(commands)
    for command in commands:
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        shown = capsys.readouterr().out
        assert f"Example: weir {command}" in shown, command
