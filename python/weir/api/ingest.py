"""``POST /v1/ingest/{dataset}``: the ingest route, kept lean because it is the hot path.

:class:`IngestEndpoint` answers a request from its raw ASGI scope and body: API key,
scope and rate limit (``weir.api.keys``, ``weir.api.limits``), content type, body limit,
then one call into Rust (:class:`Ingestor`) that validates the
body against the contract and SQL rules (grouped with other small bodies), applies
``mode=strict|lenient``, registers the job and publishes it to Kinesis with the shared
group-committing producer. The application calls it for these paths before FastAPI's
routing (``weir.api.app.AccessLog``); the FastAPI routes with the same paths call it too and
carry the OpenAPI documentation, so there is one implementation.

No Python thread waits per request and no Rust thread takes the GIL: finished requests are
collected by the event loop itself, which watches the service's completion socket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import weir
from weir import _native
from weir.api import keys
from weir.api.idempotency import Claim, Idempotency, request_hash
from weir.api.limits import RateLimiter
from weir.api.problems import MEDIA_TYPE, ProblemError, problem
from weir.config import ApiSettings
from weir.processor import processor
from weir.stream import producer

#: Violations listed in one response; ``violations_total`` gives the full count.
MAX_VIOLATIONS = 1000
#: Content types the route reads, and the processor format of each.
CONTENT_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "text/csv": "csv",
}
MODES = ("strict", "lenient")
RETRY_AFTER_SECONDS = "5"

error_log = logging.getLogger("weir.api")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Headers = list[tuple[bytes, bytes]]


class Ingestor:
    """Submits bodies to ``weir._native.IngestService`` and awaits their outcomes; one per
    process and event loop."""

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
        self, dataset: str, body: bytes, format: str, *, strict: bool, job_id: str | None = None
    ) -> dict:
        """The request's outcome: ``outcome`` ("published", "empty", "unparseable" or
        "violations"), ``received``, ``valid``, ``rejected``, and ``job_id`` (``job_id`` when
        given, else a new one) once published
        or ``violations`` (+ ``violations_total``, ``unreadable``) when refused. Raises the
        error of a failed publish (``weir.KinesisError``, ...)."""
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


def server_timing(timings: dict[str, float]) -> str:
    """The ``Server-Timing`` header (W3C; browsers' developer tools show it) of an accepted
    request: milliseconds in the contract check, the job ledger and Kinesis."""
    return ", ".join(f"{step};dur={ms:.2f}" for step, ms in timings.items())


def _header(headers: Headers, name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


class ClientDisconnectedError(Exception):
    """The client went away before sending its whole body."""


class IngestEndpoint:
    """The ingest route for the project's datasets."""

    def __init__(self, settings: ApiSettings, datasets: Iterable[str]) -> None:
        self.settings = settings
        self.key_ring = keys.KeyRing(settings.key_hashes)
        self.limits = RateLimiter(settings)
        self.idempotency = Idempotency(settings.idempotency_window_hours)
        self.datasets = list(datasets)
        #: path → dataset
        self.paths = {f"/v1/ingest/{name}": name for name in self.datasets}
        self._ingestor: Ingestor | None = None

    def ingestor(self) -> Ingestor:
        if self._ingestor is None:  # settings and processors resolved once
            self._ingestor = Ingestor.for_datasets(self.datasets)
        return self._ingestor

    def warm(self) -> None:
        """Readies the ingest path before the first request (``create_app``'s start-up), so
        no request pays for it: the producer, the job ledger and the processors, whose
        pipeline SQL is planned by checking one empty record (nothing is published). If the
        metastore or Kinesis cannot be reached yet, the first request tries again."""
        try:
            self.ingestor()
            for dataset in self.datasets:
                weir.validate(b"{}\n", dataset, format="ndjson")
        except weir.WeirError as e:  # requests will say what is wrong
            error_log.warning("warm_up_failed", extra={"fields": {"error": str(e)}})

    async def respond(
        self, dataset: str, scope: dict[str, Any], receive: Receive
    ) -> tuple[int, Headers, bytes]:
        """Status, headers and body of the answer to one request."""
        try:
            status, body, headers = await self._ingest(dataset, scope, receive)
            media_type = "application/json"
        except ProblemError as e:
            status, headers = e.status, e.headers
            body = problem(e.status, e.kind, e.detail, scope["path"], **e.extra)
            media_type = MEDIA_TYPE
        content = json.dumps(body, separators=(",", ":")).encode()
        raw = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(content)).encode()),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        return status, raw, content

    async def _ingest(
        self, dataset: str, scope: dict[str, Any], receive: Receive
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers: Headers = scope["headers"]
        key = self.key_ring.require(_header(headers, b"authorization"))
        scope.setdefault("state", {})["api_key"] = key.name  # for the access log
        keys.require_scope(key, dataset)
        self.limits.admit(key)
        mode = "strict"
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):  # `mode=` is no mode
            if name != "mode":  # a typo such as `mdoe=lenient` must not quietly mean strict
                raise ProblemError(
                    422,
                    "invalid-request",
                    f"query.{name[:40]}: unknown parameter (the only one is mode)",
                )
            mode = value
        if mode not in MODES:
            raise ProblemError(
                422, "invalid-request", "query.mode: Input should be 'strict' or 'lenient'"
            )
        media_type = _header(headers, b"content-type").split(";")[0].strip().lower()
        if media_type not in CONTENT_TYPES:
            raise ProblemError(
                415,
                "unsupported-content-type",
                f"content type {media_type or '(none)'!r} is not supported",
                supported=sorted(CONTENT_TYPES),
            )
        body = await self._read_body(headers, receive)
        if not body.strip():
            raise ProblemError(400, "unparseable", "the body holds no records")
        fmt = CONTENT_TYPES[media_type]
        claim = None
        idempotency_key = _header(headers, b"idempotency-key")
        if idempotency_key:
            digest = request_hash(dataset, mode, media_type, body)
            claim = await self.idempotency.claim(key, idempotency_key, digest)
            if claim.replay:
                return await self._replayed(claim, dataset, mode, body, fmt)
        try:
            outcome = await self._submit(
                scope,
                dataset,
                body,
                fmt,
                strict=mode == "strict",
                job_id=claim.job_id if claim else None,
            )
        except BaseException:
            if claim is not None:  # nothing was published: a retry starts afresh
                await self.idempotency.release(claim)
            raise
        timings = outcome["timings"]
        scope["state"]["timings"] = timings  # for the access log
        received = outcome["received"]
        self.limits.charge(key, received)
        refused = outcome["outcome"]
        if refused != "published" and claim is not None:
            await self.idempotency.release(claim)
        if refused == "empty":
            raise ProblemError(400, "unparseable", "the body holds no records")
        if refused == "unparseable":
            first = outcome["violations"][0]
            raise ProblemError(
                400,
                "unparseable",
                f"{outcome['unreadable']} of {received} records cannot be parsed as {fmt}; "
                f"first: record {first['record_index']}: {first['message']}",
                violations=outcome["violations"],
                violations_total=outcome["violations_total"],
            )
        if refused == "violations":
            raise ProblemError(
                422,
                "contract-violation",
                f"{outcome['rejected']} of {received} records break the {dataset} contract; "
                "nothing was accepted (send ?mode=lenient to accept the valid ones)",
                violations=outcome["violations"],
                violations_total=outcome["violations_total"],
            )
        job_id = outcome["job_id"]
        accepted = {
            "job_id": job_id,
            "dataset": dataset,
            "status": weir.stream.PUBLISHED,
            "mode": mode,
            "received": received,
            "valid": outcome["valid"],
            "rejected": outcome["rejected"],
            "status_url": f"/v1/jobs/{job_id}",
        }
        headers = {"Location": f"/v1/jobs/{job_id}", "Server-Timing": server_timing(timings)}
        return 202, accepted, headers

    async def _replayed(
        self, claim: Claim, dataset: str, mode: str, body: bytes, fmt: str
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """200 with the earlier request's job: its id and status, and the counts its 202 gave
        (the same body checked again: the processor is deterministic)."""
        job = claim.job
        assert job is not None
        checked = await asyncio.to_thread(lambda: weir.validate(body, dataset, format=fmt))
        valid, rejected = checked.valid.num_rows, checked.rejected.num_rows
        answer = {
            "job_id": job.job_id,
            "dataset": job.dataset,
            "status": job.status,
            "mode": mode,
            "received": valid + rejected,
            "valid": valid,
            "rejected": rejected,
            "status_url": f"/v1/jobs/{job.job_id}",
        }
        headers = {"Location": f"/v1/jobs/{job.job_id}", "Idempotent-Replayed": "true"}
        return 200, answer, headers

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        declared = _header(headers, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            raise ProblemError(
                413, "body-too-large", f"the body is {declared} bytes; the limit is {limit}"
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ProblemError(
                    413, "body-too-large", f"the body is over the limit of {limit} bytes"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _submit(
        self,
        scope: dict[str, Any],
        dataset: str,
        body: bytes,
        fmt: str,
        *,
        strict: bool,
        job_id: str | None = None,
    ) -> dict[str, Any]:
        try:
            ingestor = self.ingestor()
        except (weir.ConfigError, weir.LakeError, weir.StreamError) as e:
            # Opening the metastore or the producer failed (a metastore that cannot be opened
            # is a ConfigError); the next request tries again.
            raise _unavailable(scope, e) from e
        try:
            return await ingestor.submit(dataset, body, fmt, strict=strict, job_id=job_id)
        except weir.UnsupportedFormatError as e:
            raise ProblemError(
                415, "unsupported-content-type", str(e), supported=sorted(CONTENT_TYPES)
            ) from e
        except weir.ParseError as e:  # the input as a whole (e.g. a CSV header) is unreadable
            raise ProblemError(400, "unparseable", str(e)) from e
        except (weir.KinesisError, weir.LakeError) as e:
            raise _unavailable(scope, e) from e
        except weir.UnpublishableError as e:
            raise ProblemError(413, "record-too-large", str(e)) from e


def _unavailable(scope: dict[str, Any], error: Exception) -> ProblemError:
    """The 503 for a request that Kinesis or the metastore kept from being published (logged
    with its error, which names no record)."""
    request_id = scope.get("state", {}).get("request_id")
    error_log.warning(
        "publish_failed", extra={"fields": {"request_id": request_id, "error": str(error)}}
    )
    return ProblemError(
        503,
        "unavailable",
        "the records could not be published (Kinesis or the metastore is unreachable); "
        "nothing was accepted, retry later",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )
