"""Weir's exception classes.

Every error Weir raises on purpose is a ``WeirError``; each subclass also derives from the
builtin it resembles, so ``except ValueError`` keeps working in generic code. The Rust
extension raises these classes directly and attaches structured fields, so callers never
have to parse messages::

    try:
        weir.parse(data, "ndjson")
    except weir.ParseError as e:
        for error in e.errors:          # one dict per bad record
            print(error["record_index"], error["message"])
"""

from __future__ import annotations

from typing import Any


class WeirError(Exception):
    """Base class of every error Weir raises on purpose."""


class ContractError(WeirError, ValueError):
    """A data contract that cannot be compiled.

    Attributes: ``contract`` (file), ``path`` (JSON pointer into it), ``keyword``.
    """

    contract: str = ""
    path: str = ""
    keyword: str = ""


class UnsupportedFormatError(WeirError, ValueError):
    """Input in a format Weir does not read. Attributes: ``format``, ``supported``."""

    format: str = ""
    supported: list[str] = []  # noqa: RUF012 - class-level default, replaced per instance


class ParseError(WeirError, ValueError):
    """Input that could not be decoded.

    ``errors`` holds one dict per problem: ``record_index``, ``field``, ``rule`` (``syntax``
    or ``type``), ``value`` and ``message``.
    """

    errors: list[dict[str, Any]] = []  # noqa: RUF012


class ValidationError(WeirError, ValueError):
    """Records that break their contract, raised when the caller asked for strict handling.

    ``violations`` holds one dict per broken rule (as in :class:`ParseError`), and
    ``rejected_records`` the number of records concerned.
    """

    violations: list[dict[str, Any]] = []  # noqa: RUF012
    rejected_records: int = 0


class PipelineError(WeirError):
    """Pipeline SQL that is malformed or fails. Attribute: ``origin`` (file or description)."""

    origin: str = ""


class ConfigError(WeirError, ValueError):
    """A setting that is missing or malformed. Attribute: ``setting`` (its key or file)."""

    setting: str = ""


class StackError(WeirError, RuntimeError):
    """A local stack service (``weir up``) that cannot start, stop or be found. Attributes:
    ``service`` (its name) and ``log`` (the last lines of its log, if it wrote one)."""

    service: str = ""
    log: str = ""


class LakeError(WeirError):
    """The lake (catalog, metastore or object store) failed. Attribute: ``table``."""

    table: str = ""


class TableError(LakeError, LookupError):
    """A table name that is not ``namespace.table``, or a table or snapshot that does not exist."""


class SchemaMismatchError(LakeError, ValueError):
    """Data whose columns do not fit the table; nothing was written."""


class IncompatibleChangeError(SchemaMismatchError):
    """A contract or pipeline change that the dataset's tables cannot follow (a removed or
    renamed column, a narrowed or changed type, another partitioning); nothing was changed.
    Attributes: ``table`` and ``changes`` (one sentence per breaking change). ``weir contract
    check`` lists them with the way forward."""

    changes: list[str] = []  # noqa: RUF012 - an instance attribute Rust sets


class CommitConflictError(LakeError):
    """A commit that lost against other writers more often than the retry budget allows."""


class StreamError(WeirError):
    """Kinesis, the producer or the consumer failed. Attribute: ``stream`` (when known)."""

    stream: str = ""


class KinesisError(StreamError, ConnectionError):
    """A Kinesis call failed (after retries), or records were not accepted."""


class UnpublishableError(StreamError, ValueError):
    """Input the producer cannot put on Kinesis, e.g. one event larger than a Kinesis record."""


__all__ = [
    "CommitConflictError",
    "ConfigError",
    "ContractError",
    "IncompatibleChangeError",
    "KinesisError",
    "LakeError",
    "ParseError",
    "PipelineError",
    "SchemaMismatchError",
    "StackError",
    "StreamError",
    "TableError",
    "UnpublishableError",
    "UnsupportedFormatError",
    "ValidationError",
    "WeirError",
]
