"""Streaming from Python: publish events to Kinesis, consume them into the lake exactly once.

    import weir
    receipt = weir.publish("shop_events", ndjson_bytes)   # returns once Kinesis accepted all
    weir.stream.job(receipt.job_id)                        # accepted → published → committed
    weir.stream.jobs(since_ms=...)                         # the jobs table, newest first
    weir.stream.batches(since_ms=...)                      # per-batch consumer metrics
    weir.stream.prune()                                    # forget jobs older than 30 days
    weir.stream.consume(stop=threading.Event())            # what `weir consume` runs

A job's events travel packed many per Kinesis record (zstd, with a header naming the job),
on the stream ``<stream_prefix><dataset>`` (settings: :func:`weir.config.kinesis_settings`).
Consumers (``weir consume``, one or several processes) share the shards through leases in the
metastore, run each batch through the dataset's contract and pipeline SQL, and commit
``raw.<dataset>`` (valid rows), ``raw.<dataset>_rejected`` and ``raw.<dataset>_dead_letter``
with the Kinesis checkpoint in the same Iceberg snapshot. Jobs and per-batch metrics are in
the metastore tables ``weir_jobs`` and ``weir_consumer_batches``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from weir import _native, project
from weir.config import KinesisSettings, LakeSettings, kinesis_settings, lake_settings
from weir.lake import open_lake
from weir.processor import processor

log = logging.getLogger("weir.stream")

#: Every job state in the order a job goes through them: ``accepted`` (registered),
#: ``published`` (every record in Kinesis), then one of :data:`FINAL_STATES`. Defined in Rust.
JOB_STATES: tuple[str, ...] = tuple(_native.JOB_STATES)
#: The states a job ends in: ``committed``, ``partially_rejected``, ``failed``.
FINAL_STATES: tuple[str, ...] = tuple(_native.FINAL_JOB_STATES)
ACCEPTED, PUBLISHED, COMMITTED, PARTIALLY_REJECTED, FAILED = JOB_STATES

#: Where Kinesis stored one record of a job: ``shard_id``, ``sequence_number``, ``events``
#: (the job's events in it) and ``bytes`` (the job's share of it). Immutable; defined in Rust.
RecordReceipt = _native.RecordReceipt
#: A published job: ``job_id``, ``dataset``, ``stream``, ``events``, ``input_bytes``,
#: ``record_bytes`` and ``records`` (``RecordReceipt`` s). Immutable; defined in Rust.
Publication = _native.Publication
#: One row of the jobs table: ``job_id``, ``dataset``, ``status``, ``received``, ``records``,
#: ``valid``, ``rejected``, ``snapshot_ids``, ``error``, ``created_at_ms``, ``updated_at_ms``,
#: ``contract_versions`` (the versions of the contracts that judged its records, once final;
#: see ``weir contract history``) and ``final`` (whether the status is final). Immutable;
#: defined in Rust.
Job = _native.Job
#: Metrics of one consumer batch (a row of ``weir_consumer_batches``): ``batch_id``,
#: ``consumer_id``, ``dataset``, ``status``, ``shards``, ``source_records``, ``events``,
#: ``valid``, ``rejected``, ``dead_lettered``, ``bytes``, ``attempts``, ``read_ms``,
#: ``process_ms``, ``commit_ms``, ``batch_ms``, ``lag_ms``, ``snapshot_id``, ``error``.
#: Immutable; defined in Rust.
BatchMetrics = _native.BatchMetrics


def as_dict(record: Any) -> dict[str, Any]:
    """The fields of a record defined in Rust (``Job``, ``BatchMetrics``, ...) as a dict, in
    their declared order."""
    return {
        name: getattr(record, name)
        for name, attribute in vars(type(record)).items()
        if type(attribute).__name__ == "getset_descriptor"
    }


@functools.cache
def _producer(
    kinesis: tuple[tuple[str, str], ...], lake: tuple[tuple[str, str], ...], linger_ms: int
) -> _native.Producer:
    return _native.Producer(
        dict(kinesis), _native.Lake(dict(lake)) if lake else None, linger_ms=linger_ms
    )


def producer(
    settings: KinesisSettings | None = None,
    lake: LakeSettings | None = None,
    *,
    register_jobs: bool = True,
    linger_ms: int = 0,
) -> _native.Producer:
    """The process's producer for these settings (default: the configured ones). With
    ``register_jobs`` every job is recorded in the metastore's jobs table. ``linger_ms``
    holds each PutRecords group open that long for other jobs' records to join it (like
    the KPL's ``RecordMaxBufferedTime``): fewer, fuller records for a little latency; with
    the default 0 only jobs published concurrently share records."""
    if linger_ms < 0:
        raise ValueError(f"linger_ms must be 0 or more, not {linger_ms}")
    settings = settings or kinesis_settings()
    lake_props = (
        tuple(sorted((lake or lake_settings()).properties().items())) if register_jobs else ()
    )
    return _producer(tuple(sorted(settings.properties().items())), lake_props, linger_ms)


def publish(
    dataset: str,
    data: bytes,
    format: str = "ndjson",
    *,
    job_id: str | None = None,
    settings: KinesisSettings | None = None,
    lake: LakeSettings | None = None,
) -> Publication:
    """Publishes ``data`` (JSON, NDJSON or CSV bytes) as one job on the dataset's stream.

    Returns once Kinesis accepted every record; raises :class:`weir.KinesisError` if some
    were not (the message says how many were) and :class:`weir.UnpublishableError` for input
    that cannot be packed. Concurrent calls from several threads share PutRecords calls."""
    if dataset not in project.datasets():
        raise ValueError(
            f"unknown dataset {dataset!r}; contracts: {', '.join(project.datasets()) or 'none'}"
        )
    return producer(settings, lake).publish(dataset, bytes(data), format, job_id)


@functools.cache
def _ops(properties: tuple[tuple[str, str], ...]) -> _native.OpsTables:
    return _native.OpsTables(_native.Lake(dict(properties)))


def _ops_tables(settings: LakeSettings | None) -> _native.OpsTables:
    # Read through Rust: the writers' SQLite library must be the only one in this process
    # that opens the metastore file (two SQLite copies undo each other's POSIX locks).
    settings = settings or lake_settings()
    return _ops(tuple(sorted(settings.properties().items())))


def job(job_id: str, settings: LakeSettings | None = None) -> Job | None:
    """The job's row in the jobs table, or ``None`` for an unknown id."""
    return _ops_tables(settings).job(job_id)


def jobs(
    dataset: str | None = None,
    *,
    since_ms: int = 0,
    limit: int = 1000,
    settings: LakeSettings | None = None,
) -> pa.Table:
    """The jobs table (``weir_jobs``), newest first: at most ``limit`` jobs created since
    ``since_ms`` (milliseconds since the epoch), of ``dataset`` or of every dataset; the
    columns of :data:`Job`, with ``snapshot_ids`` and ``contract_versions`` as lists."""
    rows = _ops_tables(settings).jobs(dataset, since_ms, limit)
    schema = pa.schema(
        [
            ("job_id", pa.string()),
            ("dataset", pa.string()),
            ("status", pa.string()),
            ("received", pa.int64()),
            ("records", pa.int64()),
            ("valid", pa.int64()),
            ("rejected", pa.int64()),
            ("snapshot_ids", pa.list_(pa.int64())),
            ("error", pa.string()),
            ("created_at_ms", pa.int64()),
            ("updated_at_ms", pa.int64()),
            ("contract_versions", pa.list_(pa.string())),
            ("final", pa.bool_()),
        ]
    )
    return pa.Table.from_pylist([as_dict(j) for j in rows], schema)


def batches(
    dataset: str | None = None, *, since_ms: int = 0, settings: LakeSettings | None = None
) -> pa.Table:
    """Consumer batch metrics (``weir_consumer_batches``), oldest first: status, shards,
    records, events, valid, rejected, dead-lettered, bytes, attempts, read/process/commit/batch
    milliseconds, Kinesis lag, snapshot id and error."""
    rows = _ops_tables(settings).batches(dataset, since_ms)
    return pa.Table.from_pylist([as_dict(b) for b in rows])


def prune(older_than: timedelta | None = None, settings: LakeSettings | None = None) -> dict:
    """Deletes finished jobs (with their per-record rows) last updated more than
    ``older_than`` ago, and the metrics of batches started before then; default age
    ``[lake.maintenance] job_retention_days`` (30 days). Jobs not yet final stay. Consumers
    do this once an hour; ``weir maintain`` does it too. Returns what was deleted:
    ``{"jobs", "job_records", "batches", "before"}`` (``before``: the cutoff, UTC)."""
    settings = settings or lake_settings()
    if older_than is None:
        older_than = timedelta(days=settings.maintenance["job_retention_days"])
    before = datetime.now(UTC) - older_than
    report = _ops_tables(settings).prune(int(before.timestamp() * 1000))
    return {**report, "before": before.isoformat()}


def wait_for_jobs(
    job_ids: Iterable[str], timeout: float = 60.0, settings: LakeSettings | None = None
) -> dict[str, Job | None]:
    """Polls until every job is final (or ``timeout`` seconds pass); returns their rows."""
    pending = list(job_ids)
    deadline = time.monotonic() + timeout
    jobs: dict[str, Job | None] = {}
    while True:
        jobs = {job_id: job(job_id, settings) for job_id in pending}
        if all(j is not None and j.final for j in jobs.values()) or time.monotonic() > deadline:
            return jobs
        time.sleep(0.2)


def source_table(dataset: str, settings: KinesisSettings | None = None) -> _native.DataFusionTable:
    """The records on ``dataset``'s stream now, oldest first, as a table to register in a
    DataFusion session (columns shard_id, sequence_number, partition_key, arrival_time,
    data: the packed Weir record)::

        ctx.register_table("incoming", weir.stream.source_table("shop_events"))
        ctx.sql("select shard_id, count(*) from incoming group by 1").show()
    """
    settings = settings or kinesis_settings()
    return _native.kinesis_table(settings.properties(), settings.stream_name(dataset))


def consumer(
    dataset: str,
    *,
    settings: KinesisSettings | None = None,
    lake: LakeSettings | None = None,
    **options: Any,
) -> _native.Consumer:
    """A consumer of ``dataset`` (not yet holding shards: call ``balance()`` or ``assign()``).
    ``options``: consumer_id, commit_interval_s, max_records_per_shard, poll_interval_s,
    retries, retry_backoff_s, lease_ttl_s, on_failure ("dead_letter" | "halt"), start_from,
    maintenance (run the lake's maintenance policy in the background; default True)."""
    settings = settings or kinesis_settings()
    return _native.Consumer(
        open_lake(lake), settings.properties(), processor(dataset), options or None
    )


def replay(
    dataset: str,
    *,
    since: datetime | None = None,
    dry_run: bool = False,
    settings: KinesisSettings | None = None,
    lake: LakeSettings | None = None,
) -> dict[str, Any]:
    """Runs the records of ``raw.<dataset>_dead_letter`` (those dead-lettered at or after
    ``since``, a timezone-aware datetime; all by default) through the dataset's current
    contract and pipeline SQL again, into ``raw.<dataset>_rejected`` and ``raw.<dataset>``,
    exactly once: a record an earlier replay stored is skipped, whichever process ran it.
    Their jobs are finalized again. With ``dry_run`` nothing is written.

    Returns a summary: ``dead_letters`` (considered), ``already_replayed``, ``replayed``,
    ``events``, ``valid``, ``rejected``, ``still_failing`` (``(shard_id, sequence_number,
    reason)`` of records that still cannot be read; they stay in the dead-letter table),
    ``job_records`` (moved from failed to stored), ``snapshot_ids``, ``replay_id`` (in the
    summary of every snapshot the replay made, as ``weir.replay-id``)."""
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    since_ms = int(since.timestamp() * 1000) if since is not None else None
    c = consumer(dataset, settings=settings, lake=lake, maintenance=False)
    return c.replay(since_ms, dry_run)


def consume(
    datasets: Iterable[str] | None = None,
    *,
    stop: threading.Event | None = None,
    settings: KinesisSettings | None = None,
    lake: LakeSettings | None = None,
    on_batch: Any = None,
    **options: Any,
) -> None:
    """Runs a consumer per dataset (default: every contract) until ``stop`` is set: each
    balances its shard leases, then collects, stores and commits a batch, again and again.
    A consumer that halts (``on_failure="halt"``) raises after setting ``stop``."""
    stop = stop or threading.Event()
    names = list(datasets or project.datasets())
    failures: list[BaseException] = []

    def run(dataset: str) -> None:
        try:
            c = consumer(dataset, settings=settings, lake=lake, **options)
            log.info("consumer for %s on stream %s started", dataset, c.stream)
            try:
                while not stop.is_set():
                    c.balance()
                    metrics = c.run_batch()
                    if metrics is not None and on_batch is not None:
                        on_batch(metrics)
            finally:
                c.release()
        except BaseException as e:  # reported to the caller below
            failures.append(e)
            stop.set()

    threads = [threading.Thread(target=run, args=(d,), name=f"consume-{d}") for d in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
