"""The ingest route's work for the event loop: check, decide, publish, in Rust.

:class:`Ingestor` hands each request body to ``weir._native.IngestService`` (grouped
validation against the contract and SQL rules, strict/lenient decision, job registration,
publishing to Kinesis with the shared group-committing producer) and awaits the outcome. No
Python thread waits per request and no Rust thread takes the GIL: finished requests are
collected by the event loop itself, which watches the service's completion socket.

    ingestor = Ingestor.for_datasets(project.datasets())
    outcome = await ingestor.submit("shop_events", body, "json", strict=True, job_id=job_id)
    outcome["outcome"]  # "published" | "empty" | "unparseable" | "violations"
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from weir import _native
from weir.processor import processor
from weir.stream import producer

#: Violations listed in one response; ``violations_total`` gives the full count.
MAX_VIOLATIONS = 1000


class Ingestor:
    """One per process and event loop."""

    def __init__(self, service: _native.IngestService) -> None:
        self._service = service
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def for_datasets(cls, datasets: Iterable[str]) -> Ingestor:
        """The ingest path for ``datasets`` with the configured producer and job ledger (the
        processors and settings are resolved once, here)."""
        processors = [processor(name) for name in datasets]
        return cls(_native.IngestService(processors, producer(), MAX_VIOLATIONS))

    async def submit(
        self, dataset: str, body: bytes, format: str, *, strict: bool, job_id: str
    ) -> dict[str, Any]:
        """The request's outcome: ``outcome``, ``received``, ``valid``, ``rejected``, and
        ``job_id`` once published or ``violations`` (+ ``violations_total``, ``unreadable``)
        when refused. Raises the error of a failed publish (``weir.KinesisError``, ...)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._watch(loop)
        token = self._service.submit(dataset, body, format, strict, job_id)
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[token] = future
        return await future

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._service.fileno())
        loop.add_reader(self._service.fileno(), self._collect)
        self._loop = loop

    def _collect(self) -> None:
        for token, ok, value in self._service.completions():
            future = self._waiting.pop(token, None)
            if future is None or future.done():  # the client went away: nothing to answer
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
