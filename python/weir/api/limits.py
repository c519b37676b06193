"""Rate limits per API key: two token buckets, requests per second and events per second.

A key's limits come from the key (``weir api-key create --rate 500 --request-rate 20``) or,
where it sets none, from ``[api] rate_events_per_second`` / ``rate_requests_per_second``
(0, the default: no limit). A request is let in when its key's request bucket holds a token
and its event bucket is not in debt; the events it carried are charged once the processor has
counted them, so one large request may take the event bucket below zero and the key's next
requests wait until it has refilled (``429`` with ``Retry-After``, nothing of them published).
Each bucket holds one second of its rate (at least one request). The limits are per API
process: with ``--workers N`` each process allows ``1/N`` of the rate.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from weir.api.keys import ApiKey
from weir.api.problems import ProblemError
from weir.config import ApiSettings


@dataclass
class _Bucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, needed: float) -> float:
        """Seconds until the bucket holds ``needed`` tokens."""
        return max(0.0, (needed - self.tokens) / self.rate)


def _bucket(rate: float, minimum: float, now: float) -> _Bucket:
    capacity = max(rate, minimum)
    return _Bucket(rate=rate, capacity=capacity, tokens=capacity, stamp=now)


class RateLimiter:
    """The buckets of every key that has a limit, in this process."""

    def __init__(self, settings: ApiSettings) -> None:
        self.default_events = settings.rate_events_per_second
        self.default_requests = settings.rate_requests_per_second
        self.share = 1.0 / max(1, settings.workers)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def _rates(self, key: ApiKey) -> tuple[float, float]:
        events = self.default_events if key.events_per_second is None else key.events_per_second
        requests = (
            self.default_requests if key.requests_per_second is None else key.requests_per_second
        )
        return events * self.share, requests * self.share

    def _get(self, key: ApiKey, kind: str, rate: float, minimum: float, now: float) -> _Bucket:
        bucket = self._buckets.get((key.name, kind))
        if bucket is None or bucket.rate != rate:  # new key, or its limit changed
            bucket = self._buckets[(key.name, kind)] = _bucket(rate, minimum, now)
        bucket.refill(now)
        return bucket

    def admit(self, key: ApiKey) -> None:
        """Takes a request token, or raises the 429 problem with ``Retry-After``."""
        events_rate, requests_rate = self._rates(key)
        if not events_rate and not requests_rate:
            return
        now = time.monotonic()
        with self._lock:
            waits = []
            requests = events = None
            if requests_rate:
                requests = self._get(key, "requests", requests_rate, 1.0, now)
                waits.append(requests.wait(1.0))
            if events_rate:
                events = self._get(key, "events", events_rate, 1.0, now)
                waits.append(events.wait(0.0) if events.tokens < 0 else 0.0)
            wait = max(waits)
            if wait > 0:
                raise ProblemError(
                    429,
                    "rate-limited",
                    f"the API key {key.name!r} is over its limit "
                    f"({_describe(key, events_rate, requests_rate, self.share)}); "
                    f"retry in {math.ceil(wait)} s; nothing of this request was published",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            if requests is not None:
                requests.tokens -= 1.0

    def charge(self, key: ApiKey, events: int) -> None:
        """Charges the events a request carried to the key's event bucket."""
        events_rate, _ = self._rates(key)
        if not events_rate or events <= 0:
            return
        with self._lock:
            bucket = self._get(key, "events", events_rate, 1.0, time.monotonic())
            bucket.tokens -= events


def _describe(key: ApiKey, events_rate: float, requests_rate: float, share: float) -> str:
    parts = []
    if events_rate:
        parts.append(f"{events_rate / share:g} events/s")
    if requests_rate:
        parts.append(f"{requests_rate / share:g} requests/s")
    return " and ".join(parts)
