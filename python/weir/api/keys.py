"""API keys: made at random, stored only as SHA-256 digests, checked in constant time.

    weir api-key create        # prints a new key once; its hash goes to <state>/api-keys

Keys are 32 random bytes (URL-safe base64), so a plain SHA-256 digest is enough: there is
nothing to brute-force, unlike a password.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

from weir.api.problems import ProblemError
from weir.config import api_key_file_hashes, api_keys_file

PREFIX = "weir_"


def key_hash(key: str) -> str:
    """The stored form of a key: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def create_key() -> str:
    """Makes a key, appends its hash to the key file, returns the key (shown once)."""
    key = new_key()
    path = api_keys_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(key_hash(key) + "\n")
    path.chmod(0o600)
    return key


class KeyRing:
    """The key hashes a running API accepts: the configured ones (``weir.toml``,
    ``WEIR_API_KEY_HASHES``) plus those in the key file, which is read again whenever it
    changes, so a key made by ``weir api-key create`` works at once and one deleted from the
    file stops working, without a restart."""

    def __init__(self, hashes: tuple[str, ...], path: Path | None = None) -> None:
        self.path = path or api_keys_file()
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        in_file = set(api_key_file_hashes(self.path)) if self._stamp else set()
        self.configured = tuple(h for h in hashes if h not in in_file)
        self._hashes = tuple(dict.fromkeys((*self.configured, *in_file)))

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def hashes(self) -> tuple[str, ...]:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                in_file = api_key_file_hashes(self.path) if stamp else ()
                self._hashes = tuple(dict.fromkeys((*self.configured, *in_file)))
                self._stamp = stamp
        return self._hashes


def is_valid(presented: str, hashes: tuple[str, ...]) -> bool:
    """Whether ``presented`` is one of the keys; compares every stored hash in constant time."""
    digest = key_hash(presented)
    found = False
    for stored in hashes:
        found |= hmac.compare_digest(digest, stored)
    return found


def require(authorization: str, hashes: tuple[str, ...]) -> None:
    """Checks an ``Authorization`` header value; raises the 401 problem if it does not carry
    one of the keys as ``Bearer <key>``."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ProblemError(
            401,
            "unauthorized",
            "send an API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="weir"'},
        )
    if not is_valid(key.strip(), hashes):
        raise ProblemError(
            401,
            "unauthorized",
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="weir", error="invalid_token"'},
        )
