"""Data quality with Great Expectations (``weir.quality``) on real Iceberg tables written by
Weir: suites generated from the contract, clean data passing, bad rows written around the
ingest gate (``weir.append``) failing exactly the matching expectations with their
``event_id``s named, incremental runs reading only new rows, results in ``ops.dq_results``,
Data Docs, log lines, and alerts to a real HTTP receiver and a real SMTP server (one for a
critical failure, none for warnings or success, a receiver that is down not failing the
run). The tests run in order on one lake.

    .venv/bin/python -m pytest tests/test_quality.py
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

import weir
from weir import quality, samples
from weir.quality import suites

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lake_state(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("quality")
    patch = pytest.MonkeyPatch()
    patch.setenv("WEIR_STATE_DIR", str(state))
    for name in ("WEIR_METASTORE_URI", "WEIR_WAREHOUSE", "WEIR_CONFIG", "WEIR_HOME"):
        patch.delenv(name, raising=False)
    events = samples.generate_shop_events(3_000, invalid_fraction=0.05, seed=21)
    result = weir.process(json.dumps(events), "json")
    weir.append("raw.shop_events", result.output)
    weir.append("raw.shop_events_rejected", result.rejected)
    try:
        yield {"state": state, "output": result.output, "rejected": result.rejected, "patch": patch}
    finally:
        patch.undo()


def raw_check(run: quality.QualityRun) -> quality.TableCheck:
    return next(t for t in run.tables if t.table == "raw.shop_events")


def rows_with(template: pa.Table, changes: list[dict]) -> tuple[pa.Table, list[str]]:
    """Copies of stored rows with fresh event ids and ``changes`` applied, one row each."""
    rows = template.slice(0, len(changes)).to_pylist()
    for row, change in zip(rows, changes, strict=True):
        row["event_id"] = str(uuid.uuid4())
        row.update(change)
    table = pa.Table.from_pylist(rows, template.schema)
    return table, [row["event_id"] for row in rows]


def test_clean_data_passes_every_expectation(lake_state) -> None:
    run = quality.check(alert=False)
    assert run.ok and run.failures == [], run.failures
    checked = raw_check(run)
    assert checked.table == "raw.shop_events" and checked.snapshot_from is None
    assert checked.rows_checked == lake_state["output"].num_rows
    assert {r["kind"] for r in run.results if r["suite"] == "contract"} == set(
        suites.CONTRACT_KINDS
    )
    assert run.docs is not None and "raw.shop_events" in run.docs.read_text()
    summary = json.loads(run.summary.read_text())
    assert summary["ok"] is True and summary["run_id"] == run.run_id
    stored = weir.connect().sql(
        f"select count(*) as n from lake.ops.dq_results where run_id = '{run.run_id}'"
    )
    assert stored.to_pylist()[0]["n"] == len(run.results)


def test_ingest_rejections_are_summarised_by_field_and_rule(lake_state) -> None:
    """The first run also summarised raw.shop_events_rejected: per field and rule, the
    records the gate rejected and their share of all records that arrived."""
    expected: dict[str, set[tuple[str, int]]] = {}
    for row in weir.lake.read("raw.shop_events_rejected").to_pylist():
        for violation in row["violations"]:
            name = f"{violation['field']}.{violation['rule']}"
            expected.setdefault(name, set()).add((row["job_id"], row["record_index"]))
    done = weir.lake.read("ops.dq_results").to_pylist()
    gate = {r["check_name"]: r for r in done if r["suite"] == quality.INGEST_SUITE}
    assert set(gate) == set(expected)
    arrived = lake_state["rejected"].num_rows + lake_state["output"].num_rows
    for name, records in expected.items():
        row = gate[name]
        assert row["unexpected_count"] == len(records), name
        assert row["unexpected_percent"] == pytest.approx(100 * len(records) / arrived, abs=1e-3)
        assert row["severity"] == "info" and row["success"] is True
        assert len(row["sample_ids"]) == min(len(records), quality.SAMPLE_IDS)


def test_bad_rows_fail_exactly_the_matching_expectations(lake_state, capfd) -> None:
    """Each injected row breaks one rule of the contract; the incremental run reads only
    those rows and fails exactly those checks, naming each row's event_id."""
    changes = {
        "user_id.not_null": {"user_id": None},
        "quantity.range": {"quantity": 5_000},
        "event_type.enum": {"event_type": "teleport"},
        "user_country.pattern": {"user_country": "gb"},
        "properties.format": {"properties": "[1, 2]"},
        "product_name.length": {"product_name": "x" * 201},
    }
    bad, ids = rows_with(lake_state["output"], list(changes.values()))
    not_uuid = lake_state["output"].slice(10, 1).to_pylist()[0] | {"event_id": "not-a-uuid"}
    bad = pa.concat_tables([bad, pa.Table.from_pylist([not_uuid], bad.schema)])
    expected = dict(zip(changes, ([i] for i in ids), strict=True)) | {
        "event_id.format": ["not-a-uuid"]
    }
    before = quality.last_validated("raw.shop_events", quality.CONTRACT_SUITE)
    weir.append("raw.shop_events", bad)
    run = quality.check(alert=False)
    checked = raw_check(run)
    assert checked.snapshot_from == before and checked.rows_checked == bad.num_rows
    failed = {f["check_name"]: f for f in run.failures}
    assert set(failed) == set(expected), sorted(failed)
    for name, sample in expected.items():
        assert failed[name]["unexpected_count"] == 1, failed[name]
        assert failed[name]["sample_ids"] == sample, failed[name]
    severities = {name: failed[name]["severity"] for name in failed}
    assert severities["user_id.not_null"] == severities["quantity.range"] == "critical"
    assert severities["event_id.format"] == "critical"  # gx/severity.yml's override
    assert severities["user_country.pattern"] == "warning"
    assert not run.ok
    # The report names them too: the JSON summary, and one log line per failure.
    summary = json.loads(run.summary.read_text())
    assert {f["check_name"] for f in summary["failures"]} == set(expected)
    logged = [
        json.loads(line)
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("{") and '"expectation_failed"' in line
    ]
    assert {line["check"] for line in logged} == set(expected)
    assert any(ids[0] in line["sample_ids"] for line in logged)


def test_a_full_run_reads_the_whole_snapshot(lake_state) -> None:
    run = quality.check(full=True, alert=False)
    checked = raw_check(run)
    total = weir.lake.snapshots("raw.shop_events").column("total_records")[-1].as_py()
    assert checked.snapshot_from is None and checked.rows_checked == total
    assert not run.ok  # the bad rows are still there


def test_a_contract_change_changes_the_suite(lake_state, tmp_path: Path) -> None:
    """A new enum value, a wider range and another type in the contract, and nothing else:
    the generated suite follows: the rows that failed the old enum and range now pass, and
    the stored string column fails the new type."""
    home = tmp_path / "home"
    for folder in ("contracts", "sql", "gx"):
        shutil.copytree(ROOT / folder, home / folder)
    contract_file = home / "contracts" / "shop_events.json"
    contract = json.loads(contract_file.read_text())
    contract["properties"]["event_type"]["enum"].append("teleport")
    contract["properties"]["quantity"]["maximum"] = 10_000
    # A type the stored column cannot hold: the type check (on the Arrow schema) fails.
    contract["properties"]["session_id"] = {"type": "integer"}
    contract_file.write_text(json.dumps(contract))
    columns = weir.lake.read("raw.shop_events").column_names
    before = {c.name: c for c in suites.contract_checks("raw.shop_events", columns)}
    assert "teleport" not in before["event_type.enum"].kwargs["value_set"]
    lake_state["patch"].setenv("WEIR_HOME", str(home))
    try:
        after = {c.name: c for c in suites.contract_checks("raw.shop_events", columns)}
        assert "teleport" in after["event_type.enum"].kwargs["value_set"]
        assert after["quantity.range"].kwargs == {"min_value": 1, "max_value": 10_000}
        run = quality.check(full=True, alert=False)
    finally:
        lake_state["patch"].delenv("WEIR_HOME")
    failed = {f["check_name"]: f for f in run.failures}
    assert "event_type.enum" not in failed and "quantity.range" not in failed
    assert "user_id.not_null" in failed
    assert "session_id.length" not in failed  # the contract no longer has a maxLength
    wrong_type = failed["session_id.type"]
    assert (
        wrong_type["severity"] == "critical" and "contract: integer" in wrong_type["observed_value"]
    )


def test_alerts_go_out_once_for_critical_failures_only(
    lake_state, receiver, mailbox, closed_port
) -> None:
    recorder, smtp_port = mailbox
    patch = lake_state["patch"]
    settings = {
        "WEIR_ALERT_WEBHOOK_URL": receiver.url,
        "WEIR_ALERT_SMTP_HOST": "127.0.0.1",
        "WEIR_ALERT_SMTP_PORT": str(smtp_port),
        "WEIR_ALERT_EMAIL_FROM": "weir@example.com",
        "WEIR_ALERT_EMAIL_TO": "data-team@example.com",
        "WEIR_ALERT_RETRIES": "2",
        "WEIR_ALERT_RETRY_BACKOFF_SECONDS": "0.01",
    }
    for name, value in settings.items():
        patch.setenv(name, value)
    try:
        template = lake_state["output"]
        # Success: nothing is sent.
        clean, _ = rows_with(template, [{}, {}])
        weir.append("raw.shop_events", clean)
        run = quality.check()
        assert run.ok and run.alerts == [] and receiver.bodies == [] and recorder.messages == []
        # Warnings only: nothing is sent.
        warned, _ = rows_with(template, [{"user_country": "gb"}])
        weir.append("raw.shop_events", warned)
        run = quality.check()
        assert run.ok and [f["severity"] for f in run.failures] == ["warning"]
        assert run.alerts == [] and receiver.bodies == [] and recorder.messages == []
        # A critical failure: one notification per channel, naming the record.
        broken, ids = rows_with(template, [{"quantity": 9_999}, {"user_id": None}])
        weir.append("raw.shop_events", broken)
        run = quality.check()
        assert not run.ok
        assert [(d.channel, d.ok) for d in run.alerts] == [("webhook", True), ("email", True)]
        assert len(receiver.bodies) == 1 and len(recorder.messages) == 1
        assert ids[0] in json.dumps(receiver.bodies[0])
        assert ids[1] in recorder.messages[0][2].get_content()
        # A receiver that is down: the run still completes and its results are stored.
        patch.setenv("WEIR_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{closed_port}/hook")
        again, _ = rows_with(template, [{"quantity": 0}])
        weir.append("raw.shop_events", again)
        run = quality.check()
        webhook = next(d for d in run.alerts if d.channel == "webhook")
        assert not webhook.ok and webhook.attempts == 2
        assert len(recorder.messages) == 2
        stored = weir.connect().sql(
            f"select count(*) as n from lake.ops.dq_results where run_id = '{run.run_id}'"
        )
        assert stored.to_pylist()[0]["n"] == len(run.results) > 0
    finally:
        for name in settings:
            patch.delenv(name, raising=False)
