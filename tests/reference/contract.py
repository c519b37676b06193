"""The ``shop_events`` contract and output shape for the reference implementation, spelled out
by hand from ``contracts/shop_events.json`` and ``sql/pipeline/shop_events.sql`` (nothing here
reads those files or calls weir): the fields and their rules, the regular expressions, the
output columns, and the result type every implementation returns.

Shared by the reference implementation (``tests/reference/processor.py``) and by the
benchmark's pyarrow.compute baseline (``bench/processor/pyarrow_baseline.py``). Import it as
``tests.reference.contract`` with the repository root on ``sys.path`` (pytest puts it there;
the benchmarks insert it).

Semantics shared by every implementation (where the contract leaves room):

* NDJSON: blank (whitespace-only) lines are skipped and do not count as
  records; a line that is not a JSON object is one ``syntax`` violation (field
  ``None``). CSV: a row with the wrong number of fields is one ``syntax``
  violation; an empty field (quoted or not) is absent.
* A violation's ``value`` is the offending value as text (JSON text for
  non-strings; ``None`` for ``required``/``product_event_fields``); ``field`` is
  ``None`` for record-level (``syntax``) violations.
* NaN/Infinity (accepted by ``json`` and pyarrow, rejected by orjson as a syntax
  error) are ``type`` violations of a number field. Non-integral quantities are
  ``type`` violations. CSV numbers must look like JSON-ish decimals
  (``[+-]?(digits[.digits]|.digits)([eE][+-]?digits)``).
* ``properties`` output is compact JSON text: the CSV text as given; for NDJSON
  the reference re-serialises the parsed object compactly (identical to the input for
  compact input) and the pyarrow baseline cuts the object's text out of the line.
  ``referrer`` is the string value of ``properties["referrer"]`` (a non-string
  value is given as its JSON text).
* Date-times must lie in years 0001-9999 (Python ``datetime``'s range).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa

#: One violation: (record index, field or None, rule, offending value as text or None, message).
Violation = tuple[int, str | None, str, str | None, str]


class BaselineResult(NamedTuple):
    """What an implementation returns: counts, the output (a list of dicts, or a pyarrow
    Table for the pyarrow baseline) and every violation as ``(record, field, rule, value,
    message)`` (a list of ``Violation`` tuples, or a pyarrow Table)."""

    output_rows: int
    rejected_records: int
    violations: int
    output: Any
    violation_details: Any


# --- the contract --------------------------------------------------------------------------------

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "refund",
)
PRODUCT_EVENT_TYPES: frozenset[str] = frozenset(
    ("add_to_cart", "remove_from_cart", "purchase", "refund")
)
PRODUCT_EVENT_FIELDS: tuple[str, ...] = ("product_id", "unit_price", "quantity", "currency")
PLANS: tuple[str, ...] = ("free", "pro", "enterprise")
CURRENCIES: tuple[str, ...] = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD")

# Regular expressions, written once for Python's ``re`` (used with fullmatch) and
# for RE2 (pyarrow; wrapped in ^...$, and RE2's $ only matches at the very end).
UUID_RX = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
DATETIME_RX = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_EMAIL_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_EMAIL_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL_RX = rf"{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*@(?:{_EMAIL_LABEL}\.)+[A-Za-z]{{2,63}}"
EMAIL_LOCAL_LENGTH_RX = r"[^@]{1,64}@"  # prefix check: local part is at most 64 characters
USER_ID_RX = r"u_[0-9]{1,12}"
PRODUCT_ID_RX = r"p_[0-9]{1,12}"
COUNTRY_RX = r"[A-Z]{2}"
CSV_NUMBER_RX = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # "string" | "number" | "integer" | "object"
    required: bool = False
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    format: str | None = None  # "uuid" | "date-time" | "email"
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None


CONTRACT: tuple[FieldSpec, ...] = (
    FieldSpec("event_id", "string", required=True, format="uuid"),
    FieldSpec("event_type", "string", required=True, enum=EVENT_TYPES),
    FieldSpec("event_time", "string", required=True, format="date-time"),
    FieldSpec("user_id", "string", required=True, pattern=USER_ID_RX),
    FieldSpec("user_email", "string", format="email", max_length=254),
    FieldSpec("user_country", "string", pattern=COUNTRY_RX),
    FieldSpec("user_plan", "string", enum=PLANS),
    FieldSpec("session_id", "string", max_length=64),
    FieldSpec("product_id", "string", pattern=PRODUCT_ID_RX),
    FieldSpec("product_name", "string", max_length=200),
    FieldSpec("product_category", "string", max_length=100),
    FieldSpec("unit_price", "number", minimum=0, maximum=100_000),
    FieldSpec("quantity", "integer", minimum=1, maximum=1000),
    FieldSpec("currency", "string", enum=CURRENCIES),
    FieldSpec("properties", "object"),
)
FIELD_NAMES: tuple[str, ...] = tuple(spec.name for spec in CONTRACT)
FIELD_SET: frozenset[str] = frozenset(FIELD_NAMES)
FIELD_KINDS: dict[str, str] = {spec.name: spec.kind for spec in CONTRACT}

OUTPUT_FIELDS: tuple[str, ...] = (
    "event_id", "event_type", "event_time", "event_date", "user_id", "user_key", "user_email",
    "user_country", "user_plan", "session_id", "product_id", "product_key", "product_name",
    "product_category", "unit_price", "quantity", "currency", "amount", "properties", "referrer",
)  # fmt: skip
#: Where the consumer read each event on Kinesis: the pipeline keeps the ``_kinesis_*``
#: columns after the output fields; a processor run over bytes has no Kinesis record, so they
#: are null there, and the reference leaves them out.
POSITION_FIELDS: tuple[str, ...] = (
    "kinesis_shard_id", "kinesis_sequence_number", "kinesis_sub_sequence_number",
    "kinesis_arrival_time",
)  # fmt: skip
OUTPUT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.date32()),
        ("user_id", pa.string()),
        ("user_key", pa.string()),
        ("user_email", pa.string()),
        ("user_country", pa.string()),
        ("user_plan", pa.string()),
        ("session_id", pa.string()),
        ("product_id", pa.string()),
        ("product_key", pa.string()),
        ("product_name", pa.string()),
        ("product_category", pa.string()),
        ("unit_price", pa.float64()),
        ("quantity", pa.int64()),
        ("currency", pa.string()),
        ("amount", pa.float64()),
        ("properties", pa.string()),
        ("referrer", pa.string()),
    ]
)


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value, as violation messages give it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def compact_json(value: Any) -> str:
    """Compact JSON text (no spaces, non-ASCII kept), as ``properties`` is output."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def md5_hex(text: str) -> str:
    """The surrogate keys (``user_key``, ``product_key``): md5 of the UTF-8 id, in hex."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()
