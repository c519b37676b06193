"""The lake the dashboard tests look at, filled the real way once per session: 2,000 sample
events (5 % invalid, users and products that change) published as four jobs to the local
Kinesis-API server and consumed into the lake, then ``weir transform`` and ``weir quality
check`` run as commands. Fixture ``dashboard_lake`` (its state folder); helper
``weir_command``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import weir
from tests.support.stream_helpers import RunningConsumer, private_streams, wait_final
from weir import samples

#: Jobs the lake was filled with, and events in each.
JOBS, EVENTS_PER_JOB = 4, 500


def weir_command(state: Path, *args: str) -> None:
    """``weir <args>`` in its own process on the lake under ``state``; fails with its output
    if it exits non-zero."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "DBT_"))}
    env["WEIR_STATE_DIR"] = str(state)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "weir"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert done.returncode == 0, f"weir {' '.join(args)}: {output}"


@pytest.fixture(scope="session")
def dashboard_lake(kinesis_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("dashboard")
    with pytest.MonkeyPatch.context() as mp:
        private_streams(state, mp)
        events = samples.generate_shop_events(JOBS * EVENTS_PER_JOB, invalid_fraction=0.05, seed=11)
        with RunningConsumer():
            receipts = [
                weir.publish("shop_events", samples.to_ndjson(events[i : i + EVENTS_PER_JOB]))
                for i in range(0, len(events), EVENTS_PER_JOB)
            ]
            wait_final([r.job_id for r in receipts])
        weir_command(state, "transform")
        weir_command(state, "quality", "check", "--no-alert")
    return state
