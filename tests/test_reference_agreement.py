"""Requirement 2.2 ("identify all schema violations") checked against an independent
implementation: the pure-Python baseline of bench/processor/baselines.py must find exactly the
violations (record, field, rule) weir finds, and keep exactly the same rows, on generated data
with a large share of records broken in varied ways."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

import weir
from weir import samples

BASELINES = Path(__file__).resolve().parents[1] / "bench" / "processor" / "baselines.py"


@pytest.fixture(scope="module")
def baselines():
    spec = importlib.util.spec_from_file_location("processor_baselines", BASELINES)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("fmt", ["ndjson", "csv"])
def test_weir_and_the_python_reference_agree_on_every_violation(baselines, seed, fmt):
    events = samples.generate_shop_events(3_000, invalid_fraction=0.3, seed=seed)
    data = (
        samples.to_ndjson(events) if fmt == "ndjson" else samples.to_csv(events, extra_columns=True)
    )
    reference = baselines.pure_python(data, fmt)
    result = weir.process(data, fmt)
    expected = Counter((r, f or "", rule) for r, f, rule, _, _ in reference.violation_details)
    found = Counter(
        (v["record_index"], v["field"] or "", v["rule"]) for v in result.violation_list()
    )
    assert found == expected
    assert result.output.num_rows == reference.output_rows
    assert result.output.column("event_id").to_pylist() == [
        row["event_id"] for row in reference.output
    ]
