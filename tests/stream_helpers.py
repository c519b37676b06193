"""Helpers for tests that run a consumer: ``RunningConsumer`` (``weir.stream.consume`` in a
thread, stopped on exit) and ``wait_final`` (jobs polled until final, else a clear failure)."""

from __future__ import annotations

import threading

import weir


class RunningConsumer:
    """``weir.stream.consume`` in a thread, stopped on exit; batches are collected."""

    def __init__(self, **options: object) -> None:
        self.stop = threading.Event()
        self.batches: list[dict] = []
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


def wait_final(job_ids: list[str], timeout: float = 60.0) -> dict[str, weir.stream.Job]:
    jobs = weir.stream.wait_for_jobs(job_ids, timeout=timeout)
    pending = {k: (v.status if v else None) for k, v in jobs.items() if not (v and v.final)}
    assert not pending, f"jobs not final after {timeout} s: {pending}"
    return jobs  # type: ignore[return-value]
