"""The processor's Python API: parse, validate and transform records with the Rust engine.

Each function takes a dataset name (``"shop_events"``) or a contract path; the contract and
the dataset's pipeline SQL are compiled once and cached. Arrow data crosses the boundary
without copies, and the GIL is released while Rust works::

    import weir
    table = weir.parse(b'{"event_id": ...}', "ndjson")            # pyarrow.Table, strict
    result = weir.validate(data, "shop_events", format="ndjson")  # .valid / .rejected / .violations
    output = weir.transform(result.valid)                         # the dataset's pipeline SQL
    events = weir.pipeline_events(result.valid)                   # what that SQL reads as events
    result = weir.process(data, "ndjson")                         # all three, as the consumer does
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from weir import _native, project
from weir.exceptions import ValidationError

Format = Literal["json", "ndjson", "csv"]
ContractRef = str | os.PathLike[str]
SqlRef = str | os.PathLike[str]

DEFAULT_DATASET = "shop_events"


@dataclass(frozen=True)
class ValidationResult:
    """Records that passed every rule, and those that did not.

    ``valid`` has the contract's columns; ``rejected`` has one row per rejected record
    (``record_index``, ``raw`` text, ``violations`` list); ``violations`` has one row per
    broken rule (``record_index``, ``field``, ``rule``, ``value``, ``message``).
    """

    valid: pa.Table
    rejected: pa.Table
    violations: pa.Table

    @property
    def ok(self) -> bool:
        """Whether every record passed."""
        return self.rejected.num_rows == 0

    def violation_list(self) -> list[dict[str, Any]]:
        """The violations as dicts, for printing or JSON responses."""
        return self.violations.to_pylist()


@dataclass(frozen=True)
class ProcessResult:
    """The transformed valid records (``output``), the rejected ones and run statistics."""

    output: pa.Table
    rejected: pa.Table
    violations: pa.Table
    stats: dict[str, float]

    def violation_list(self) -> list[dict[str, Any]]:
        return self.violations.to_pylist()


def init_logging(level: str | None = None) -> bool:
    """Sets up the Rust side's structured logs (JSON lines on stderr) once per process.

    ``level`` is a filter such as ``"warn"`` or ``"weir_planner=debug"``; by default
    ``$WEIR_LOG``, else ``"warn"``. Called automatically by the first processor call and when
    the lake is first opened (so every commit's audit line is written), so call it earlier to
    choose the level. Returns whether this call installed the logger.
    """
    global _logging_ready
    _logging_ready = True
    return _native.init_logging(level)


def ensure_logging() -> None:
    """:func:`init_logging` with the default level, unless logging is set up already."""
    if not _logging_ready:
        init_logging()


_logging_ready = False


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"expected bytes or str, got {type(data).__name__}")


def _mtime(path: Path | None) -> float:
    return path.stat().st_mtime if path else 0.0


@functools.lru_cache(maxsize=64)
def _compiled(
    contract: Path, contract_mtime: float, sql: Path | str | None, sql_mtime: float
) -> _native.Processor:
    del contract_mtime, sql_mtime  # part of the cache key only: edits recompile
    if isinstance(sql, Path):
        return _native.Processor(str(contract), sql_path=str(sql))
    if isinstance(sql, str):
        return _native.Processor(str(contract), sql_text=sql, sql_origin="<sql text>")
    return _native.Processor(str(contract))


def processor(
    contract: ContractRef = DEFAULT_DATASET, sql: SqlRef | None = None, *, with_sql: bool = True
) -> _native.Processor:
    """The compiled processor for a dataset; ``sql`` defaults to the dataset's pipeline file.

    ``sql`` may be a path to a ``.sql`` file or SQL text (named queries, or one bare query
    taken as the transformation). ``with_sql=False`` compiles the contract alone.
    """
    ensure_logging()
    contract_file = project.contract_path(contract)
    sql_source: Path | str | None
    if not with_sql:
        sql_source = None
    elif sql is None:
        sql_source = project.pipeline_sql_path(contract_file.stem)
    elif isinstance(sql, os.PathLike) or (str(sql).endswith(".sql") and Path(sql).is_file()):
        sql_source = Path(sql).resolve()
    else:
        sql_source = str(sql)
    sql_mtime = _mtime(sql_source) if isinstance(sql_source, Path) else 0.0
    return _compiled(contract_file, _mtime(contract_file), sql_source, sql_mtime)


def parse(data: bytes | str, format: Format, contract: ContractRef = DEFAULT_DATASET) -> pa.Table:
    """Decodes JSON, NDJSON or CSV into a table with the contract's columns and types.

    Strict: raises :class:`weir.ParseError` listing every record that is not well-formed or
    has a value of the wrong type. Contract rules are checked by :func:`validate`.
    """
    return pa.table(processor(contract, with_sql=False).parse(_as_bytes(data), format))


def validate(
    data: pa.Table | bytes | str,
    contract: ContractRef = DEFAULT_DATASET,
    *,
    format: Format | None = None,
    rules: bool = True,
) -> ValidationResult:
    """Checks records against the contract (and the dataset's SQL rules when ``rules``).

    ``data`` is input bytes (give ``format``) or any Arrow table (pyarrow, polars, ...).
    Every violation of every record is reported; nothing is raised for bad records.
    """
    compiled = processor(contract) if rules else processor(contract, with_sql=False)
    if hasattr(data, "__arrow_c_stream__"):
        valid, rejected, violations = compiled.validate_table(data)
    else:
        if format is None:
            raise TypeError("validate() needs format= ('json', 'ndjson' or 'csv') for bytes input")
        valid, rejected, violations = compiled.validate_bytes(_as_bytes(data), format)
    return ValidationResult(pa.table(valid), pa.table(rejected), pa.table(violations))


def transform(
    table: pa.Table, sql: SqlRef | None = None, *, contract: ContractRef = DEFAULT_DATASET
) -> pa.Table:
    """Runs the transformation SQL (default: the dataset's pipeline file) over ``table``,
    which the SQL reads as ``events``."""
    compiled = processor(contract, sql)
    return pa.table(compiled.transform(table))


def pipeline_events(table: pa.Table, contract: ContractRef = DEFAULT_DATASET) -> pa.Table:
    """The table pipeline SQL reads as ``events``, made from ``table`` (the contract's
    columns, e.g. ``weir.validate(...).valid``) the way the processor makes it: with
    ``_record_index`` (the row numbers, unless ``table`` has one) and the Kinesis position
    columns ``_kinesis_shard_id``, ``_kinesis_sequence_number``,
    ``_kinesis_sub_sequence_number`` and ``_kinesis_arrival_time``, null here (the consumer
    fills them with where each event was on the stream). For running a pipeline's queries
    by hand, e.g. in a notebook with DataFusion."""
    if "_record_index" not in table.column_names:
        table = table.append_column("_record_index", pa.array(range(table.num_rows), pa.uint64()))
    return transform(table, "SELECT * FROM events", contract=contract)


def process(
    data: bytes | str,
    format: Format,
    contract: ContractRef = DEFAULT_DATASET,
    *,
    sql: SqlRef | None = None,
    strict: bool = False,
) -> ProcessResult:
    """Parse, validate and transform, as the streaming consumer does for each batch.

    Invalid records are quarantined in ``rejected`` and the rest are transformed; with
    ``strict=True`` any invalid record raises :class:`weir.ValidationError` instead.
    """
    compiled = processor(contract, sql)
    output, rejected, violations, stats = compiled.process(_as_bytes(data), format)
    result = ProcessResult(pa.table(output), pa.table(rejected), pa.table(violations), stats)
    if strict and result.rejected.num_rows:
        found = result.violation_list()
        first = found[0]
        error = ValidationError(
            f"{result.rejected.num_rows} of {stats['records']} records break the contract; "
            f"first, record {first['record_index']}: {first['field'] or '(record)'}: "
            f"{first['rule']}: {first['message']}"
        )
        error.violations, error.rejected_records = found, result.rejected.num_rows
        raise error
    return result
