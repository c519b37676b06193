"""Weir: a SQL-first streaming data pipeline on Apache DataFusion.

The processor (Rust, through ``weir._native``) parses, validates and transforms records::

    import weir
    result = weir.process(open("events.ndjson", "rb").read(), "ndjson")
    result.output      # pyarrow.Table of transformed valid events
    result.rejected    # one row per rejected record, with every violation

Results land in Iceberg tables (``weir.append``) that ``weir.connect()`` queries with
DataFusion; see :mod:`weir.lake`. See the README for the command line (``weir``) and the
SQL functions.
"""

from weir import (
    _native,
    exceptions,
    lake,
    stream,
)
from weir.exceptions import *  # noqa: F403 - every class weir.exceptions.__all__ lists
from weir.lake import CommitInfo, append, connect, maintain
from weir.processor import (
    ProcessResult,
    ValidationResult,
    init_logging,
    parse,
    pipeline_events,
    process,
    processor,
    transform,
    validate,
)
from weir.stream import publish
from weir.udfs import register_udfs, udf_names

__version__ = _native.__version__
SUPPORTED_FORMATS: tuple[str, ...] = tuple(_native.SUPPORTED_FORMATS)


__all__ = [
    *exceptions.__all__,
    "SUPPORTED_FORMATS",
    "CommitInfo",
    "ProcessResult",
    "ValidationResult",
    "append",
    "connect",
    "init_logging",
    "lake",
    "maintain",
    "parse",
    "pipeline_events",
    "process",
    "processor",
    "publish",
    "register_udfs",
    "stream",
    "transform",
    "udf_names",
    "validate",
]
