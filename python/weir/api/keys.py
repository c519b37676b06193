"""API keys: made at random, stored only as SHA-256 digests, checked in constant time, each
with a name, optional dataset scopes and optional rate limits.

    weir api-key create [--name N] [--datasets a,b] [--rate EVENTS/S] [--request-rate REQ/S]
    weir api-key list                 # names, scopes, limits, created, last used; never a key
    weir api-key revoke NAME

Keys are 32 random bytes (URL-safe base64), so a plain SHA-256 digest is enough: there is
nothing to brute-force, unlike a password. ``<state>/api-keys`` holds one JSON object per key
(``name``, ``hash``, ``datasets``, ``events_per_second``, ``requests_per_second``,
``created_ms``); a line holding only a ``sha256:`` digest (the older format, or one written by
hand) is a key with no scope or limit. Keys configured in ``weir.toml`` / ``WEIR_API_KEY_HASHES``
are named ``configured-<first hex digits>``. Writers take an exclusive lock on the file and
replace it atomically; a running API notices a change within a fraction of a second (one
``stat`` at most every 200 ms, no read unless it changed). When a key was last used is kept
in ``<state>/api-keys.used``, written by the API at most every few seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from weir.api.problems import ProblemError
from weir.config import api_keys_file
from weir.exceptions import ConfigError

PREFIX = "weir_"
#: How often a running API looks at the key file (seconds).
RELOAD_EVERY = 0.2
#: How often a running API writes when keys were last used (seconds).
USED_FLUSH_EVERY = 5.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class ApiKey:
    """One accepted key, as stored (the digest, never the key)."""

    name: str
    hash: str
    #: datasets the key may send to and read jobs of; ``None``: every dataset
    datasets: tuple[str, ...] | None = None
    #: token-bucket limits; ``None``: the API's default (``[api] rate_*``), 0: no limit
    events_per_second: float | None = None
    requests_per_second: float | None = None
    created_ms: int | None = None
    #: where it comes from: the key file, or the setting that configured it
    origin: str = "key file"

    def allows(self, dataset: str) -> bool:
        return self.datasets is None or dataset in self.datasets

    def record(self) -> dict[str, object]:
        """The key file's JSON object for this key."""
        data = asdict(self)
        data.pop("origin")
        data["datasets"] = list(self.datasets) if self.datasets is not None else None
        return data


def key_hash(key: str) -> str:
    """The stored form of a key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _stored_hash(where: str, text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise ConfigError(f"{where}: expected sha256:<64 hex digits>, got {text[:20]!r}...")
    return value


def _rate(where: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: a rate is a number of 0 or more per second, got {value!r}")
    return float(value)


def parse_line(where: str, line: str) -> ApiKey | None:
    """One line of the key file (``None`` for blank lines and ``#`` comments)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if not text.startswith("{"):
        digest = _stored_hash(where, text)
        return ApiKey(name=f"key-{digest[7:15]}", hash=digest)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not a JSON object: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{where}: a key needs a name")
    datasets = data.get("datasets")
    if datasets is not None and (
        not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets)
    ):
        raise ConfigError(f"{where}: datasets must be a list of dataset names")
    created = data.get("created_ms")
    return ApiKey(
        name=data["name"],
        hash=_stored_hash(where, str(data.get("hash", ""))),
        datasets=tuple(datasets) if datasets is not None else None,
        events_per_second=_rate(f"{where}: events_per_second", data.get("events_per_second")),
        requests_per_second=_rate(f"{where}: requests_per_second", data.get("requests_per_second")),
        created_ms=created if isinstance(created, int) else None,
    )


def read_keys(path: Path | None = None) -> list[ApiKey]:
    """The keys in the key file, in order (none if it does not exist)."""
    path = path or api_keys_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        key = parse_line(f"{path}:{number}", line)
        if key is not None:
            found.append(key)
    return found


def configured_keys(hashes: tuple[str, ...]) -> list[ApiKey]:
    """Keys configured as digests (``weir.toml`` ``[api] key_hashes``, ``WEIR_API_KEY_HASHES``)."""
    origin = "configured (key_hashes)"
    return [ApiKey(name=f"configured-{h[7:15]}", hash=h, origin=origin) for h in hashes]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for writers of the key file (a sibling lock file, so the key file
    itself can be replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write(path: Path, keys: list[ApiKey]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text("".join(json.dumps(k.record(), sort_keys=True) + "\n" for k in keys))
    temporary.chmod(0o600)
    os.replace(temporary, path)


def create_key(
    name: str | None = None,
    *,
    datasets: list[str] | None = None,
    events_per_second: float | None = None,
    requests_per_second: float | None = None,
    path: Path | None = None,
) -> tuple[str, ApiKey]:
    """Makes a key and stores its digest with its name, scopes and limits; returns the key
    (shown once) and what was stored. Raises ``ConfigError`` for a name in use or a bad
    value."""
    path = path or api_keys_file()
    if name is not None and not _NAME.fullmatch(name):
        raise ConfigError(
            f"api-key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)"
        )
    if datasets is not None and not datasets:
        raise ConfigError("api-key datasets: name at least one dataset (or leave it out)")
    key = new_key()
    with _locked(path):
        existing = read_keys(path)
        names = {k.name for k in existing}
        if name is None:
            number = len(existing) + 1
            while f"key-{number}" in names:
                number += 1
            name = f"key-{number}"
        elif name in names:
            raise ConfigError(f"an API key named {name!r} exists; revoke it or pick another")
        stored = ApiKey(
            name=name,
            hash=key_hash(key),
            datasets=tuple(datasets) if datasets is not None else None,
            events_per_second=_rate("--rate", events_per_second),
            requests_per_second=_rate("--request-rate", requests_per_second),
            created_ms=int(time.time() * 1000),
        )
        _write(path, [*existing, stored])
    return key, stored


def revoke_key(name: str, path: Path | None = None) -> ApiKey:
    """Removes the key named ``name`` from the key file; a running API refuses it within a
    second. Raises ``ConfigError`` naming the known keys if there is none by that name."""
    path = path or api_keys_file()
    with _locked(path):
        existing = read_keys(path)
        kept = [k for k in existing if k.name != name]
        if len(kept) == len(existing):
            known = ", ".join(k.name for k in existing) or "none"
            raise ConfigError(f"no API key named {name!r} in {path} (keys: {known})")
        _write(path, kept)
    return next(k for k in existing if k.name == name)


def used_file(path: Path | None = None) -> Path:
    path = path or api_keys_file()
    return path.with_name(path.name + ".used")


def last_used(path: Path | None = None) -> dict[str, int]:
    """When each key was last used (epoch ms), as the APIs last wrote it."""
    try:
        data = json.loads(used_file(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}


class KeyRing:
    """The keys a running API accepts: the configured ones plus those in the key file, which
    is looked at every ``RELOAD_EVERY`` seconds at most and read again only when it changed,
    so a key made by ``weir api-key create`` works at once and a revoked one stops, with no
    restart. Also remembers when each key was last used."""

    def __init__(self, hashes: tuple[str, ...] = (), path: Path | None = None) -> None:
        self.path = path or api_keys_file()
        self._lock = threading.Lock()
        self.configured = configured_keys(hashes)
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._keys: tuple[ApiKey, ...] = ()
        self._used: dict[str, int] = {}
        self._flushed = time.monotonic()
        self._reload(self._file_stamp())

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _reload(self, stamp: tuple[int, int, int] | None) -> None:
        in_file = read_keys(self.path) if stamp else []
        hashes = {k.hash for k in in_file}
        keys = [*in_file, *(k for k in self.configured if k.hash not in hashes)]
        self._keys, self._stamp = tuple(keys), stamp

    def keys(self) -> tuple[ApiKey, ...]:
        now = time.monotonic()
        if now - self._checked >= RELOAD_EVERY:
            self._checked = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                with self._lock:
                    try:
                        self._reload(stamp)
                    except ConfigError:  # a half-edited file: keep the keys we had
                        self._stamp = stamp
        return self._keys

    def hashes(self) -> tuple[str, ...]:
        return tuple(k.hash for k in self.keys())

    def find(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, comparing with every stored digest in constant time."""
        digest = key_hash(presented)
        found = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.hash):
                found = key
        if found is not None:
            self._used[found.name] = int(time.time() * 1000)
            if time.monotonic() - self._flushed >= USED_FLUSH_EVERY:
                self.flush_used()
        return found

    def flush_used(self) -> None:
        """Merges this process's last-use times into ``<key file>.used``."""
        self._flushed = time.monotonic()
        if not self._used:
            return
        try:
            with _locked(used_file(self.path)):
                merged = last_used(self.path)
                for name, ms in self._used.items():
                    merged[name] = max(ms, merged.get(name, 0))
                target = used_file(self.path)
                temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
                temporary.write_text(json.dumps(merged, sort_keys=True))
                os.replace(temporary, target)
            self._used.clear()
        except OSError:  # a read-only state folder: last-use times are a convenience
            pass

    def require(self, authorization: str) -> ApiKey:
        """Checks an ``Authorization`` header value; returns the key, or raises the 401
        problem if it does not carry one of the keys as ``Bearer <key>``."""
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise ProblemError(
                401,
                "unauthorized",
                "send an API key as `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": 'Bearer realm="weir"'},
            )
        key = self.find(presented.strip())
        if key is None:
            raise ProblemError(
                401,
                "unauthorized",
                "the API key is not valid (revoked, or never made: `weir api-key list`)",
                headers={"WWW-Authenticate": 'Bearer realm="weir", error="invalid_token"'},
            )
        return key


def require_scope(key: ApiKey, dataset: str) -> None:
    """The 403 problem when ``key`` may not use ``dataset``."""
    if not key.allows(dataset):
        raise ProblemError(
            403,
            "forbidden-dataset",
            f"the API key {key.name!r} may not use dataset {dataset!r} "
            f"(it may use: {', '.join(key.datasets or ())})",
        )
