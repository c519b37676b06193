"""The reference implementation of ``weir.process(data, fmt, "shop_events")``: parse, check
every contract rule and the cross-field rule, transform, in plain per-record Python written
from the contract (``tests/reference/contract.py``), independently of weir's Rust code.

Two flavours, for NDJSON and CSV input bytes:

``pure_python``     idiomatic pure Python: ``json.loads`` per line or ``csv.DictReader``,
                    per-record checks with ``re`` and ``datetime.fromisoformat``,
                    ``hashlib.md5``, a list of output dicts;
``orjson_python``   the same, but JSON is parsed (and re-serialised) with orjson; the CSV
                    path is the same.

Each returns a ``BaselineResult`` whose ``output`` is a list of dicts and whose
``violation_details`` lists every violation as ``(record, field, rule, value, message)``.
``tests/test_reference_agreement.py`` holds weir to ``pure_python``; the processor benchmark
(``bench/processor/run.py``) times both as its baselines (a) and (b).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.reference.contract import (
    CONTRACT,
    CSV_NUMBER_RX,
    DATETIME_RX,
    EMAIL_LOCAL_LENGTH_RX,
    EMAIL_RX,
    FIELD_KINDS,
    FIELD_SET,
    PRODUCT_EVENT_FIELDS,
    PRODUCT_EVENT_TYPES,
    UUID_RX,
    BaselineResult,
    Violation,
    compact_json,
    json_type,
    md5_hex,
)

__all__ = ["orjson_python", "pure_python"]

_UUID_RE = re.compile(UUID_RX)
_DATETIME_RE = re.compile(DATETIME_RX)
_EMAIL_RE = re.compile(rf"(?={EMAIL_LOCAL_LENGTH_RX}){EMAIL_RX}")
_CSV_NUMBER_RE = re.compile(CSV_NUMBER_RX)
_PATTERNS: dict[str, re.Pattern[str]] = {
    spec.name: re.compile(spec.pattern) for spec in CONTRACT if spec.pattern is not None
}
_ENUMS: dict[str, frozenset[str]] = {
    spec.name: frozenset(spec.enum) for spec in CONTRACT if spec.enum is not None
}
Dumps = Callable[[Any], str]


def _orjson_dumps(value: Any) -> str:
    return orjson.dumps(value).decode("utf-8")


def _parse_datetime(text: str) -> datetime | None:
    """RFC 3339 date-time -> aware UTC datetime, or None if it is not one."""
    if _DATETIME_RE.fullmatch(text) is None:
        return None
    try:
        # fromisoformat (3.11+) takes 'T'/'Z' but not 't'/'z'; it truncates >6 fraction digits.
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError):  # not a calendar date, or outside years 1-9999 in UTC
        return None


def _has_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if kind == "number":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, dict)


def _validate(
    index: int, record: dict[str, Any], violations: list[Violation], dumps: Dumps
) -> tuple[bool, datetime | None]:
    """Check one record against the contract, appending every violation.

    Returns (valid, event_time in UTC).
    """
    count = len(violations)
    event_time: datetime | None = None
    for spec in CONTRACT:
        name = spec.name
        value = record.get(name)
        if value is None:
            if spec.required:
                violations.append((index, name, "required", None, f"{name} is required"))
            continue
        if not _has_type(value, spec.kind):
            text = value if isinstance(value, str) else dumps(value)
            violations.append(
                (
                    index,
                    name,
                    "type",
                    text,
                    f"{name} must be of type {spec.kind}, not {json_type(value)}",
                )
            )
            continue
        if spec.enum is not None and value not in _ENUMS[name]:
            violations.append(
                (index, name, "enum", value, f"{value!r} is not one of {', '.join(spec.enum)}")
            )
        if spec.pattern is not None and _PATTERNS[name].fullmatch(value) is None:
            violations.append(
                (index, name, "pattern", value, f"{value!r} does not match ^{spec.pattern}$")
            )
        if spec.format == "uuid":
            if _UUID_RE.fullmatch(value) is None:
                violations.append((index, name, "format", value, f"{value!r} is not a valid uuid"))
        elif spec.format == "email":
            if _EMAIL_RE.fullmatch(value) is None:
                violations.append((index, name, "format", value, f"{value!r} is not a valid email"))
        elif spec.format == "date-time":
            event_time = _parse_datetime(value)
            if event_time is None:
                violations.append(
                    (index, name, "format", value, f"{value!r} is not a valid RFC 3339 date-time")
                )
        if spec.max_length is not None and len(value) > spec.max_length:
            violations.append(
                (
                    index,
                    name,
                    "maxLength",
                    value,
                    f"{name} is longer than {spec.max_length} characters",
                )
            )
        if spec.minimum is not None and value < spec.minimum:
            violations.append(
                (
                    index,
                    name,
                    "minimum",
                    dumps(value),
                    f"{name} {value} is less than {spec.minimum}",
                )
            )
        if spec.maximum is not None and value > spec.maximum:
            violations.append(
                (
                    index,
                    name,
                    "maximum",
                    dumps(value),
                    f"{name} {value} is greater than {spec.maximum}",
                )
            )
    for key, value in record.items():
        if key not in FIELD_SET and value is not None:
            text = value if isinstance(value, str) else dumps(value)
            violations.append((index, key, "additionalProperties", text, f"unknown field {key!r}"))
    event_type = record.get("event_type")
    if isinstance(event_type, str) and event_type in PRODUCT_EVENT_TYPES:
        for name in PRODUCT_EVENT_FIELDS:
            if record.get(name) is None:
                violations.append(
                    (index, name, "product_event_fields", None, f"{event_type} events need {name}")
                )
    return len(violations) == count, event_time


def _transform(
    record: dict[str, Any], event_time: datetime, properties_text: str | None, dumps: Dumps
) -> dict[str, Any]:
    user_id: str = record["user_id"]
    email = record.get("user_email")
    country = record.get("user_country")
    product_id = record.get("product_id")
    price = record.get("unit_price")
    quantity = record.get("quantity")
    unit_price = float(price) if price is not None else None
    qty = int(quantity) if quantity is not None else None
    properties = record.get("properties")
    referrer = properties.get("referrer") if properties is not None else None
    if referrer is not None and not isinstance(referrer, str):
        referrer = dumps(referrer)
    return {
        "event_id": record["event_id"],
        "event_type": record["event_type"],
        "event_time": event_time,
        "event_date": event_time.date(),
        "user_id": user_id,
        "user_key": md5_hex(user_id),
        "user_email": email.strip().lower() if email is not None else None,
        "user_country": country.strip().upper() if country is not None else None,
        "user_plan": record.get("user_plan"),
        "session_id": record.get("session_id"),
        "product_id": product_id,
        "product_key": md5_hex(product_id) if product_id is not None else None,
        "product_name": record.get("product_name"),
        "product_category": record.get("product_category"),
        "unit_price": unit_price,
        "quantity": qty,
        "currency": record.get("currency"),
        "amount": unit_price * qty if unit_price is not None and qty is not None else None,
        "properties": properties_text,
        "referrer": referrer,
    }


def _ndjson_records(
    data: bytes, loads: Callable[[bytes], Any]
) -> Iterator[tuple[dict[str, Any] | None, bytes]]:
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = loads(line)
        except ValueError:  # json.JSONDecodeError and orjson.JSONDecodeError are ValueErrors
            yield None, line
            continue
        yield (record if isinstance(record, dict) else None), line


def _python_ndjson(data: bytes, loads: Callable[[bytes], Any], dumps: Dumps) -> BaselineResult:
    output: list[dict[str, Any]] = []
    violations: list[Violation] = []
    rejected = 0
    for index, (record, line) in enumerate(_ndjson_records(data, loads)):
        if record is None:
            text = line.decode("utf-8", "replace")
            violations.append((index, None, "syntax", text, "record is not a JSON object"))
            rejected += 1
            continue
        valid, event_time = _validate(index, record, violations, dumps)
        if not valid or event_time is None:
            rejected += 1
            continue
        properties = record.get("properties")
        output.append(
            _transform(
                record, event_time, dumps(properties) if properties is not None else None, dumps
            )
        )
    return BaselineResult(len(output), rejected, len(violations), output, violations)


def _csv_value(name: str | None, text: str, loads: Callable[[str], Any]) -> Any:
    """CSV text -> the JSON value it stands for.

    Text that does not convert stays a string, which is then a ``type`` violation.
    """
    kind = FIELD_KINDS.get(name) if name is not None else None
    if kind in {"number", "integer"}:
        return float(text) if _CSV_NUMBER_RE.fullmatch(text) else text
    if kind == "object":
        try:
            value = loads(text)
        except ValueError:
            return text
        return value if isinstance(value, dict) else text
    return text


def _python_csv(data: bytes, loads: Callable[[str], Any], dumps: Dumps) -> BaselineResult:
    output: list[dict[str, Any]] = []
    violations: list[Violation] = []
    rejected = 0
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    for index, row in enumerate(reader):
        if None in row or None in row.values():  # too many / too few fields
            text = ",".join(str(v) for v in row.values())
            violations.append((index, None, "syntax", text, "row has the wrong number of fields"))
            rejected += 1
            continue
        record = {name: _csv_value(name, text, loads) for name, text in row.items() if text != ""}
        valid, event_time = _validate(index, record, violations, dumps)
        if not valid or event_time is None:
            rejected += 1
            continue
        output.append(_transform(record, event_time, row.get("properties") or None, dumps))
    return BaselineResult(len(output), rejected, len(violations), output, violations)


def pure_python(data: bytes, fmt: str) -> BaselineResult:
    """(a) Idiomatic pure Python: json.loads / csv.DictReader, re, fromisoformat, hashlib."""
    if fmt == "ndjson":
        return _python_ndjson(data, json.loads, compact_json)
    if fmt == "csv":
        return _python_csv(data, json.loads, compact_json)
    raise ValueError(f"unsupported format {fmt!r} (expected 'ndjson' or 'csv')")


def orjson_python(data: bytes, fmt: str) -> BaselineResult:
    """(b) Like (a), but JSON is parsed and serialised with orjson."""
    if fmt == "ndjson":
        return _python_ndjson(data, orjson.loads, _orjson_dumps)
    if fmt == "csv":
        return _python_csv(data, orjson.loads, _orjson_dumps)
    raise ValueError(f"unsupported format {fmt!r} (expected 'ndjson' or 'csv')")
