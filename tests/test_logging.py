"""Structured logs (requirement 10.1, 10.2): the Rust processor logs rejected records as JSON
lines with timestamp, component and event, one per record for small batches and a summary
for large ones. Run in a subprocess because the log subscriber is process-wide."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

SCRIPT = """
import weir
from weir import samples
events = samples.generate_shop_events({n}, invalid_fraction=0.3, seed=1)
result = weir.process(samples.to_ndjson(events), "ndjson")
print(result.stats["rejected"])
"""


def run(n: int) -> tuple[int, list[dict]]:
    env = {**os.environ, "WEIR_LOG": "info"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(n=n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    return int(done.stdout.strip()), lines


def test_small_batches_log_each_rejected_record():
    rejected, lines = run(20)
    assert rejected > 0
    per_record = [line for line in lines if line.get("event") == "record_rejected"]
    assert len(per_record) == rejected
    first = per_record[0]
    assert first["level"] == "WARN" and first["component"] == "processor"
    assert first["timestamp"] and first["dataset"] == "shop_events"
    assert isinstance(first["record_index"], int) and first["violations"]
    summary = [line for line in lines if line.get("event") == "batch_processed"]
    assert summary and summary[0]["rejected"] == rejected


def test_large_batches_log_a_summary_not_a_line_per_record():
    rejected, lines = run(2_000)
    assert rejected > 100
    assert len([line for line in lines if line.get("event") == "record_rejected"]) == 10
    (summary,) = [line for line in lines if line.get("event") == "records_rejected"]
    assert summary["rejected"] == rejected
    counts = dict(pair.split("=") for pair in summary["violations_by_field_and_rule"].split(", "))
    assert all(re.fullmatch(r"[\w-]+:\w+", key) for key in counts), counts
    assert sum(int(n) for n in counts.values()) >= rejected
