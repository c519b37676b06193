"""A paused consumer (a zombie) cannot store a batch twice: a ``weir consume`` process is
frozen with SIGSTOP in the middle of a batch (its rejected rows committed, its valid rows
not), kept frozen past its shard leases while another consumer takes the shards over and
stores the same records, then woken with SIGCONT. Its late commit must be refused by the
checkpoint fence, and the lake must hold every event exactly once. Real kinesalite, real
lake, a real process."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

import weir
from tests.support.stream_helpers import (
    ConsumerProcess,
    break_folder,
    data_folder,
    private_streams,
    wait_final,
)
from weir import samples
from weir.config import lake_settings


def committed_to(table: str):
    """Matches the audit log line of a commit to ``table``."""
    return lambda line: line.get("event") == "commit" and line.get("table") == table


@pytest.mark.slow
def test_a_consumer_paused_past_its_lease_cannot_store_its_batch_again(
    tmp_path: Path, kinesis_endpoint: str, monkeypatch: pytest.MonkeyPatch, running_consumer
):
    private_streams(tmp_path, monkeypatch)
    weir.lake.ensure_dataset("shop_events")
    # The valid table's storage fails until the zombie is frozen, so it is frozen between its
    # two commits for certain, not only when it happens to be slower than this test.
    broken = break_folder(data_folder("raw.shop_events"))
    inputs = [
        samples.to_ndjson(samples.generate_shop_events(300, invalid_fraction=0.1, seed=81)),
        samples.to_ndjson(samples.generate_shop_events(200, invalid_fraction=0.1, seed=82)),
    ]
    zombie = ConsumerProcess("zombie", commit_interval_s=0.3, lease_ttl_s=1)
    try:
        first = weir.publish("shop_events", inputs[0])
        zombie.wait_for(committed_to("raw.shop_events_rejected"), "commit of the rejected rows")
        zombie.pause_outside_metastore_writes(lake_settings().sqlite_path())
        broken.unlink()
        with running_consumer(consumer_id="successor", lease_ttl_s=1.0) as successor:
            # The zombie's leases expire (it cannot renew them); the successor takes its
            # shards and stores the batch the zombie holds.
            stored_by_successor = wait_final([first.job_id])[first.job_id].snapshot_ids
            zombie.resume()
            fenced = zombie.wait_for(lambda line: line.get("event") == "fenced", "fenced commit")
            zombie.wait_for(lambda line: line.get("event") == "batch", "batch line after waking")
            # Both go on: the zombie with what it gets back of its share.
            second = weir.publish("shop_events", inputs[1])
            jobs = wait_final([first.job_id, second.job_id])
        assert successor.error is None, successor.error
    finally:
        zombie.stop()

    # The zombie's late commit was refused: the valid table's checkpoint had moved on.
    assert "table raw.shop_events:" in fenced["error"], fenced
    assert "by another consumer" in fenced["error"], fenced
    zombie_batches = [
        b for b in weir.stream.batches("shop_events").to_pylist() if b["consumer_id"] == "zombie"
    ]
    assert zombie_batches[0]["status"] == "fenced", zombie_batches
    assert set(stored_by_successor) <= {b.snapshot_id for b in successor.batches}
    # Its data files were deleted with the refusal: the folder holds the live files only.
    live = weir.lake.files("raw.shop_events").column("file_path").to_pylist()
    on_disk = {p.name for p in data_folder("raw.shop_events").rglob("*.parquet")}
    assert on_disk == {Path(p).name for p in live}

    # Every event exactly once: valid ones in the valid table, rejected ones in _rejected.
    expected = [weir.process(data, "ndjson") for data in inputs]
    stored = collections.Counter(weir.lake.read("raw.shop_events").column("event_id").to_pylist())
    assert stored == collections.Counter(
        e for result in expected for e in result.output.column("event_id").to_pylist()
    )
    rejected = weir.lake.read("raw.shop_events_rejected")
    got = collections.Counter(
        zip(rejected["job_id"].to_pylist(), rejected["record_index"].to_pylist(), strict=True)
    )
    assert got == collections.Counter(
        (job.job_id, index)
        for job, result in zip([first, second], expected, strict=True)
        for index in result.rejected.column("record_index").to_pylist()
    )
    assert weir.lake.read("raw.shop_events_dead_letter").num_rows == 0
    for job, result in zip([first, second], expected, strict=True):
        final = jobs[job.job_id]
        assert final.status == "partially_rejected", final
        assert (final.valid, final.rejected) == (result.stats["valid"], result.stats["rejected"])
