"""The `weir` command line: `weir process` summarises a file and writes its outputs; `weir
demo` runs the whole ingestion path on a private stack and `weir maintain` compacts the lake."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

import weir
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
    # The first run leaves the stack up, the second finds it running and stops it.
    assert cli.main(["demo", "--records", "600", "--batch-size", "200"]) == 0
    assert cli.main(["demo", "--records", "400", "--batch-size", "200", "--exit"]) == 0
    out = capsys.readouterr().out
    assert "already running" in out and "stopped" in out
    assert "partially_rejected" in out and "A quarantined record" in out
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
