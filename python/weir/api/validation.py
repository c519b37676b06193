"""Validation of concurrent small requests in one processor call (a group commit for checks).

Each processor call pays a fixed cost for the dataset's SQL rules (planning a DataFusion
query, about 2 ms) however few records it checks, which would cap single-event requests at a
few hundred per second. The batcher queues the records of small bodies (one JSON object, or a
few NDJSON lines) from every request waiting at that moment, validates them as one NDJSON
input, and hands each request its own results with record indexes renumbered. Records whose
syntax is broken are validated again alone, so their error names their own position.
Larger bodies, JSON arrays and CSV are validated directly.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool

import weir

#: Bodies up to this size are batched.
MAX_BATCHED_BODY = 64 * 1024


@dataclass
class Checked:
    """One request's validation: record count, rejected count, every violation (record
    indexes within the request)."""

    received: int
    rejected: int
    violations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def valid(self) -> int:
        return self.received - self.rejected


def _lines(body: bytes, fmt: str) -> list[bytes] | None:
    """The body as NDJSON lines, or None if it is not a small object/NDJSON body."""
    if len(body) > MAX_BATCHED_BODY:
        return None
    if fmt == "json":
        text = body.strip()
        if not text.startswith(b"{"):
            return None
        # Raw line breaks in JSON text are whitespace (inside strings they are escaped).
        return [text.replace(b"\r", b" ").replace(b"\n", b" ")]
    if fmt == "ndjson":
        return [line for line in body.splitlines() if line.strip()]
    return None


def check_alone(body: bytes, dataset: str, fmt: str) -> Checked:
    result = weir.validate(body, dataset, format=fmt)
    rejected = result.rejected.num_rows
    return Checked(result.valid.num_rows + rejected, rejected, result.violation_list())


class ValidationBatcher:
    """Per dataset: ``await batcher.check(body, fmt)``."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._pending: list[tuple[list[bytes], asyncio.Future[Checked]]] = []
        self._flushing = False

    async def check(self, body: bytes, fmt: str) -> Checked:
        lines = _lines(body, fmt)
        if lines is None:
            return await run_in_threadpool(check_alone, body, self.dataset, fmt)
        if not lines:
            return Checked(0, 0)
        future: asyncio.Future[Checked] = asyncio.get_running_loop().create_future()
        self._pending.append((lines, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        checked = await future
        if any(v["rule"] == "syntax" for v in checked.violations):
            return await run_in_threadpool(check_alone, body, self.dataset, fmt)
        return checked

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await run_in_threadpool(self._check_batch, batch)
                except Exception as e:  # each request gets the error (and its own 4xx/5xx)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                    continue
                for (_, future), checked in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(checked)
        finally:
            self._flushing = False

    def _check_batch(self, batch: list[tuple[list[bytes], Any]]) -> list[Checked]:
        data = b"".join(line + b"\n" for lines, _ in batch for line in lines)
        result = weir.validate(data, self.dataset, format="ndjson")
        total = sum(len(lines) for lines, _ in batch)
        if result.valid.num_rows + result.rejected.num_rows != total:
            # The lines did not come out one record each: check every body on its own.
            return [check_alone(b"\n".join(lines), self.dataset, "ndjson") for lines, _ in batch]
        by_record: dict[int, list[dict[str, Any]]] = {}
        for violation in result.violation_list():
            by_record.setdefault(violation["record_index"], []).append(violation)
        results, offset = [], 0
        for lines, _ in batch:
            violations = []
            rejected = 0
            for index in range(offset, offset + len(lines)):
                found = by_record.get(index)
                if found:
                    rejected += 1
                    violations.extend({**v, "record_index": index - offset} for v in found)
            results.append(Checked(len(lines), rejected, violations))
            offset += len(lines)
        return results
