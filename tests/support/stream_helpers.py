"""Helpers for tests that run a consumer: ``RunningConsumer`` (``weir.stream.consume`` in a
thread, stopped on exit), ``ConsumerProcess`` (``weir consume`` in a subprocess, its JSON log
lines parsed as they come), ``wait_final`` (jobs polled until final, else a clear failure),
``private_streams`` (a private lake and streams for one test) and ``break_folder`` (a lake
table's storage made unusable)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

import weir
from tests.support.servers import stop_process
from weir.config import lake_settings


def private_streams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shards: int = 2) -> Path:
    """A private lake (``WEIR_STATE_DIR``) and private streams (a unique stream prefix) on the
    session's kinesalite, for one test."""
    monkeypatch.setenv("WEIR_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("WEIR_KINESIS_STREAM_PREFIX", f"t{uuid.uuid4().hex[:10]}-")
    monkeypatch.setenv("WEIR_KINESIS_SHARDS", str(shards))
    return tmp_path


class RunningConsumer:
    """``weir.stream.consume`` in a thread, stopped on exit; batches are collected."""

    def __init__(self, **options: object) -> None:
        self.stop = threading.Event()
        self.batches: list[weir.stream.BatchMetrics] = []
        self.error: BaseException | None = None
        self.options = {"commit_interval_s": 0.3, "poll_interval_s": 0.05, **options}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            weir.stream.consume(
                ["shop_events"], stop=self.stop, on_batch=self.batches.append, **self.options
            )
        except BaseException as e:
            self.error = e

    def __enter__(self) -> RunningConsumer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the consumer did not stop"


def consume_command(
    consumer_id: str,
    *,
    commit_interval_s: float,
    lease_ttl_s: float,
    dataset: str = "shop_events",
) -> list[str]:
    """``weir consume`` of ``dataset`` as a named consumer."""
    return [
        sys.executable,
        "-m",
        "weir.cli",
        "consume",
        "--dataset",
        dataset,
        "--commit-interval",
        str(commit_interval_s),
        "--lease-ttl",
        str(lease_ttl_s),
        "--consumer-id",
        consumer_id,
    ]


#: Log filter for consumer processes: warnings, every lake commit, every batch and lease.
CONSUMER_LOG = "warn,weir::audit=info,weir_planner::stream=info"


class ConsumerProcess:
    """``weir consume`` in a subprocess (own session, ``CONSUMER_LOG`` lines on stderr), with
    its log lines parsed as they arrive so a test can wait for one (``wait_for``), and SIGSTOP
    / SIGCONT to pause it. Lines that are not JSON are kept as ``{"text": ...}``."""

    def __init__(
        self,
        consumer_id: str,
        *,
        commit_interval_s: float,
        lease_ttl_s: float,
        dataset: str = "shop_events",
    ) -> None:
        command = consume_command(
            consumer_id,
            commit_interval_s=commit_interval_s,
            lease_ttl_s=lease_ttl_s,
            dataset=dataset,
        )
        env = {**os.environ, "WEIR_LOG": CONSUMER_LOG}
        self.process = subprocess.Popen(
            command, env=env, stderr=subprocess.PIPE, start_new_session=True
        )
        self.lines: list[dict] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"text": raw.decode(errors="replace").rstrip()}
            with self._arrived:
                self.lines.append(line)
                self._arrived.notify_all()
        self.process.stderr.close()
        with self._arrived:
            self._arrived.notify_all()

    def wait_for(self, wanted: Callable[[dict], bool], what: str, timeout: float = 60.0) -> dict:
        """The first log line (from the start) for which ``wanted`` is true; fails naming
        ``what`` with the log's tail if none comes within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._arrived:
            while True:
                for line in self.lines[seen:]:
                    if wanted(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._reader.is_alive():
                    tail = "\n".join(json.dumps(line) for line in self.lines[-30:])
                    raise AssertionError(f"no {what} in the consumer's log; its tail:\n{tail}")
                self._arrived.wait(left)

    def pause(self) -> None:
        """SIGSTOP, and waits until every thread of the process is stopped."""
        self.process.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while not all(state in "Tt" for state in self._thread_states()):
            assert time.monotonic() < deadline, "SIGSTOP did not stop the consumer"
            time.sleep(0.001)

    def pause_outside_metastore_writes(self, metastore: Path) -> None:
        """``pause``, at a moment the process holds no write lock on the SQLite metastore:
        frozen inside a write (a lease renewal, say), it would block every other process's
        writes until woken, which is SQLite's limit, not the zombie a test is after."""
        self.pause()
        while self._writes_to(metastore):
            self.resume()
            time.sleep(0.005)
            self.pause()

    def _thread_states(self) -> list[str]:
        states = []
        for stat in Path(f"/proc/{self.process.pid}/task").glob("*/stat"):
            with contextlib.suppress(OSError):  # a thread that just ended
                states.append(stat.read_text().rsplit(")", 1)[1].split()[0])
        return states

    def _writes_to(self, database: Path) -> bool:
        """Whether the process is inside a write transaction on ``database`` (WAL mode): it
        then holds the POSIX write lock on byte 120 of the ``-shm`` file (``/proc/locks``)."""
        # Lines like "1: POSIX  ADVISORY  WRITE 17171 fe:00:10027048 120 120": pid, device and
        # inode, first and last byte.
        lock = ["POSIX", "ADVISORY", "WRITE", str(self.process.pid)]
        inode = str(Path(f"{database}-shm").stat().st_ino)
        return any(
            f[1:5] == lock and f[5].rsplit(":", 1)[-1] == inode and f[6] == "120"
            for f in (line.split() for line in Path("/proc/locks").read_text().splitlines())
        )

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Resumes it if paused, then SIGTERM (it stops after its batch), else SIGKILL."""
        if self.process.poll() is None:
            self.resume()
        stop_process(self.process)
        self._reader.join(timeout=10)


def wait_final(job_ids: list[str], timeout: float = 60.0) -> dict[str, weir.stream.Job]:
    jobs = weir.stream.wait_for_jobs(job_ids, timeout=timeout)
    pending = {k: (v.status if v else None) for k, v in jobs.items() if not (v and v.final)}
    assert not pending, f"jobs not final after {timeout} s: {pending}"
    return jobs  # type: ignore[return-value]


def data_folder(table: str) -> Path:
    """Where a lake table's data files are (local warehouse)."""
    namespace, name = table.split(".")
    return Path(lake_settings().warehouse) / namespace / name / "data"


def break_folder(path: Path) -> Path:
    """Makes ``path`` (a table's data folder) unusable: a file where the folder must be.
    Unlinking the returned file repairs it."""
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a folder: writes under it fail")
    return path
