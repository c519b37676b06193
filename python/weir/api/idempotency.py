"""Idempotent retries of ingest requests: the ``Idempotency-Key`` header.

A client that sends ``Idempotency-Key: <its own unique text>`` with a request may send the
same request again (after a timeout, a dropped connection, an API restart) and get the job
of the first one back, with nothing published twice:

* the first request claims the key (for its API key) in the metastore's
  ``weir_idempotency_keys`` table, with the digest of what it asks (dataset, mode, content
  type, body) and the job id it will publish as, in one transaction, so of concurrent
  requests with the same key exactly one gets it, across API processes and restarts;
* a repeat with the same digest gets **200** with the first request's job (its id, counts and
  current status) and ``Idempotent-Replayed: true``; with another digest, **422**
  (``idempotency-key-reused``); while the first is still being validated and published,
  **409** (``idempotency-key-in-use``, ``Retry-After: 1``);
* a request that was refused (400, 422) or could not be published (503) gives its claim up,
  so its retry is processed afresh; a claim whose request died before registering its job is
  taken over after ``IN_FLIGHT_SECONDS``;
* claims last ``[api] idempotency_window_hours`` (24 by default), then the key may be used
  again; expired claims are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
import uuid
from dataclasses import dataclass

import weir
from weir.api.keys import ApiKey
from weir.api.problems import ProblemError

#: A claim whose job is not registered after this long belongs to a request that died.
IN_FLIGHT_SECONDS = 30.0
#: How often a process deletes expired claims (seconds).
EXPIRE_EVERY = 600.0
_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class Claim:
    """What to do with a request carrying an idempotency key: publish it as ``job_id``
    (``replay`` false) or answer with the earlier request's job (``replay`` true)."""

    key: str
    owner: str
    job_id: str
    replay: bool
    job: weir.stream.Job | None = None


def _uuid7() -> str:
    """A new job id like the ones Rust makes (UUID version 7: time-ordered, random)."""
    value = (int(time.time() * 1000) & ((1 << 48) - 1)) << 80 | int.from_bytes(
        uuid.uuid4().bytes, "big"
    ) & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def request_hash(dataset: str, mode: str, media_type: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (dataset, mode, media_type):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return "sha256:" + digest.hexdigest()


class Idempotency:
    """The claims of one API process (the table is shared by all)."""

    def __init__(self, window_hours: float) -> None:
        self.window_ms = int(window_hours * 3600 * 1000)
        self._expired_at = 0.0

    @staticmethod
    def _ops():  # the metastore's operational tables, opened once per process
        return weir.stream._ops_tables(None)

    async def claim(self, api_key: ApiKey, key: str, digest: str) -> Claim:
        """Claims ``key`` for a new request, or finds the earlier one's job; raises the 409
        or 422 problem when neither applies."""
        if not _KEY.fullmatch(key):
            raise ProblemError(
                422,
                "invalid-request",
                "header Idempotency-Key: 1 to 255 visible ASCII characters, no spaces",
            )
        owner = api_key.hash
        job_id = _uuid7()
        now_ms = int(time.time() * 1000)
        ops = self._ops()
        held, held_hash, claimed_ms = await asyncio.to_thread(
            ops.claim_idempotency_key, owner, key, digest, job_id, now_ms - self.window_ms
        )
        self._expire_now_and_then(now_ms)
        if held == job_id:
            return Claim(key, owner, job_id, replay=False)
        if held_hash != digest:
            raise ProblemError(
                422,
                "idempotency-key-reused",
                f"Idempotency-Key {key!r} was used for a different request (another body, "
                "dataset, mode or content type) within the last "
                f"{self.window_ms / 3_600_000:g} h; use a new key for a new request",
            )
        job = await asyncio.to_thread(weir.stream.job, held)
        if job is not None and job.status != weir.stream.FAILED:
            return Claim(key, owner, held, replay=True, job=job)
        # No job: the first request is still being checked, or died before registering it.
        # A failed job: its publish failed and its claim could not be given up.
        if job is None and now_ms - claimed_ms < IN_FLIGHT_SECONDS * 1000:
            raise ProblemError(
                409,
                "idempotency-key-in-use",
                f"a request with Idempotency-Key {key!r} is still being processed; retry "
                "in a second to get its job",
                headers={"Retry-After": "1"},
            )
        if await asyncio.to_thread(ops.reclaim_idempotency_key, owner, key, held, job_id):
            return Claim(key, owner, job_id, replay=False)
        return await self.claim(api_key, key, digest)  # another retry took it over first

    async def release(self, claim: Claim) -> None:
        """Gives up the claim of a request that was refused or not published."""
        # The metastore may be down: then the claim expires or is taken over.
        with contextlib.suppress(weir.WeirError):
            await asyncio.to_thread(
                self._ops().release_idempotency_key, claim.owner, claim.key, claim.job_id
            )

    def _expire_now_and_then(self, now_ms: int) -> None:
        if time.monotonic() - self._expired_at < EXPIRE_EVERY:
            return
        self._expired_at = time.monotonic()
        before = now_ms - self.window_ms

        def expire() -> None:
            with contextlib.suppress(weir.WeirError):  # else the next time
                self._ops().expire_idempotency_keys(before)

        asyncio.get_running_loop().run_in_executor(None, expire)
