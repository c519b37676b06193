"""Expectation suites generated from the contracts: what valid data is, written once.

    from weir.quality import suites
    for check in suites.contract_checks("raw.shop_events", columns):
        print(check.kind, check.column, check.expectation, check.kwargs, check.severity)

For a dataset's table ``raw.<dataset>``, every contract property that is a column of the
table gives checks, each of one *kind* (severities per kind: ``gx/severity.yml``):

=========  ===================================================  ===============================
kind       from the contract                                     Great Expectations expectation
=========  ===================================================  ===============================
not_null   ``required``                                          ExpectColumnValuesToNotBeNull
type       ``type`` / ``format: date-time``                      (Arrow schema, see below)
range      ``minimum`` / ``maximum`` (``exclusive*`` too)         ExpectColumnValuesToBeBetween
enum       ``enum``                                              ExpectColumnValuesToBeInSet
pattern    ``pattern``                                           ExpectColumnValuesToMatchRegex
format     ``format: uuid`` / ``email``; ``type: object`` (JSON)  ExpectColumnValuesToMatchRegex
length     ``minLength`` / ``maxLength``                         ExpectColumnValueLengthsToBeBetween
unique     ``x-weir-unique: true``                               ExpectColumnValuesToBeUnique
=========  ===================================================  ===============================

Checks are plain data (:class:`Check`); :func:`expectation` turns one into a Great
Expectations object, so this module imports Great Expectations only when asked to. The
``type`` kind is the exception: Great Expectations 1.24's pandas type check compares dtype
objects and recognises none of pandas 3's Arrow-backed or string dtypes (checked: every
name fails), so column types are checked on the table's Arrow schema (:func:`type_matches`)
and reported with the others as ``expect_column_type_to_match_contract``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from weir import project

#: Every kind of check, in the order suites list them.
KINDS = (
    "not_null", "type", "range", "enum", "pattern", "format", "length", "unique",
    "foreign_key", "scd2", "bounds", "row_count",
)  # fmt: skip
#: The kinds of the contract's suite (raw tables) and of the marts' suites.
CONTRACT_KINDS = KINDS[:8]
MART_KINDS = ("not_null", "unique", "foreign_key", "scd2", "bounds", "row_count")
SEVERITIES = ("critical", "warning")

#: Arrow types a column may have for each contract type (JSON objects and arrays are stored
#: as their JSON text). Checked on the table's Arrow schema by :func:`type_matches`.
TYPE_CHECK = "expect_column_type_to_match_contract"


def type_matches(arrow_type: Any, expected: str) -> bool:
    """Whether a column of ``arrow_type`` can hold the contract type ``expected``."""
    import pyarrow.types as t

    text = t.is_string(arrow_type) or t.is_large_string(arrow_type) or t.is_string_view(arrow_type)
    return {
        "string": text,
        "object": text,
        "array": text,
        "integer": t.is_integer(arrow_type),
        "number": t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type),
        "boolean": t.is_boolean(arrow_type),
        "date-time": t.is_timestamp(arrow_type),
    }.get(expected, False)


#: Regular expressions for the contract formats checked by value.
FORMATS = {
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
}
#: A stored JSON object starts with a brace.
JSON_OBJECT = r"^\s*\{"


@dataclass(frozen=True)
class Check:
    """One expectation on one column of one table, with its severity."""

    table: str
    kind: str
    column: str | None
    expectation: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = "critical"

    @property
    def name(self) -> str:
        """``<column>.<kind>`` (or ``<kind>`` for a table-wide check): the key in
        ``severity.yml`` and in reports."""
        return f"{self.column}.{self.kind}" if self.column else self.kind


def gx_folder() -> Path:
    """The Great Expectations project in the checkout (``<home>/gx``)."""
    return project.home() / "gx"


@cache
def _severity_config(path: Path, mtime: float) -> dict[str, Any]:
    del mtime  # part of the cache key only: edits are read again
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping with 'kinds' and 'tables'")
    for kind, severity in (config.get("kinds") or {}).items():
        if kind not in KINDS:
            raise ValueError(f"{path}: kinds.{kind}: unknown kind (known: {', '.join(KINDS)})")
        if severity not in SEVERITIES:
            raise ValueError(
                f"{path}: kinds.{kind}: expected critical or warning, got {severity!r}"
            )
    for table, overrides in (config.get("tables") or {}).items():
        for name, severity in (overrides or {}).items():
            if name.rsplit(".", 1)[-1] not in KINDS or severity not in SEVERITIES:
                raise ValueError(
                    f"{path}: tables.{table}.{name}: expected <column>.<kind> or <kind> "
                    f"(kinds: {', '.join(KINDS)}) set to critical or warning, got {severity!r}"
                )
    return config


def severity_config(path: Path | None = None) -> dict[str, Any]:
    """``gx/severity.yml``, checked: unknown kinds and severities are errors naming the key."""
    path = path or gx_folder() / "severity.yml"
    if not path.is_file():
        return {}
    return _severity_config(path, path.stat().st_mtime)


def severity(table: str, column: str | None, kind: str, config: dict[str, Any]) -> str:
    """The severity of a check: the table's override for ``<column>.<kind>`` or ``<kind>``,
    else the kind's default, else ``critical``."""
    overrides = (config.get("tables") or {}).get(table) or {}
    for key in (f"{column}.{kind}" if column else None, kind):
        if key and key in overrides:
            return str(overrides[key])
    return str((config.get("kinds") or {}).get(kind, "critical"))


def _contract(dataset: str) -> dict[str, Any]:
    return json.loads(project.contract_path(dataset).read_text())


def contract_checks(
    table: str, columns: list[str], *, contract: dict[str, Any] | None = None
) -> list[Check]:
    """The checks the contract of ``table``'s dataset (``raw.<dataset>``) implies for the
    table's ``columns``. ``contract`` replaces the file (tests)."""
    dataset = table.split(".", 1)[1]
    contract = contract if contract is not None else _contract(dataset)
    config = severity_config()
    required = set(contract.get("required", []))
    checks: list[Check] = []

    def add(kind: str, column: str, expectation: str, **kwargs: Any) -> None:
        level = severity(table, column, kind, config)
        checks.append(Check(table, kind, column, expectation, kwargs, level))

    present = set(columns)
    for column, spec in (contract.get("properties") or {}).items():
        if column not in present:
            continue
        kind_of = spec.get("type")
        if column in required:
            add("not_null", column, "ExpectColumnValuesToNotBeNull")
        type_key = "date-time" if spec.get("format") == "date-time" else kind_of
        if type_key:
            add("type", column, TYPE_CHECK, expected=type_key)
        bounds = {}
        for key, arg, strict in (
            ("minimum", "min_value", None),
            ("exclusiveMinimum", "min_value", "strict_min"),
            ("maximum", "max_value", None),
            ("exclusiveMaximum", "max_value", "strict_max"),
        ):
            if key in spec:
                bounds[arg] = spec[key]
                if strict:
                    bounds[strict] = True
        if bounds:
            add("range", column, "ExpectColumnValuesToBeBetween", **bounds)
        if "enum" in spec:
            add("enum", column, "ExpectColumnValuesToBeInSet", value_set=list(spec["enum"]))
        if "pattern" in spec:
            add("pattern", column, "ExpectColumnValuesToMatchRegex", regex=spec["pattern"])
        if spec.get("format") in FORMATS:
            add("format", column, "ExpectColumnValuesToMatchRegex", regex=FORMATS[spec["format"]])
        elif kind_of == "object":
            add("format", column, "ExpectColumnValuesToMatchRegex", regex=JSON_OBJECT)
        lengths = {
            arg: spec[key]
            for key, arg in (("minLength", "min_value"), ("maxLength", "max_value"))
            if key in spec
        }
        if lengths:
            add("length", column, "ExpectColumnValueLengthsToBeBetween", **lengths)
        if spec.get("x-weir-unique"):
            add("unique", column, "ExpectColumnValuesToBeUnique")
    return checks


def expectation(check: Check, **extra: Any) -> Any:
    """The Great Expectations expectation for ``check`` (its kind and severity in ``meta``);
    ``extra`` adds arguments known only at run time (a row count). A check on a derived
    column (marts: ``<column>__resolves``, ``scd2_ok``) validates that column."""
    import great_expectations.expectations as gxe

    kwargs = {k: v for k, v in check.kwargs.items() if k not in ("derived", "references")}
    kwargs.update(extra)
    if check.column:
        kwargs["column"] = check.kwargs.get("derived", check.column)
    meta = {"kind": check.kind, "severity": check.severity, "check": check.name}
    return getattr(gxe, check.expectation)(**kwargs, meta=meta)


# --- The marts' suites (gx/marts.yml) --------------------------------------------------


@dataclass(frozen=True)
class MartSuite:
    """The checks of one mart, the SQL (over DuckDB views ``lake_<namespace>.<table>``)
    that gives the rows to validate with the derived columns they need, its key column,
    and how to count the raw rows it must match (``None``: no row-count check)."""

    table: str
    key: str
    sql: str
    checks: list[Check]
    rows_match: tuple[str, str, str | None] | None  # (raw table, column, filter)


def mart_config(path: Path | None = None) -> dict[str, Any]:
    path = path or gx_folder() / "marts.yml"
    if not path.is_file():
        return {}
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected one mapping per mart table")
    return config


def _view(table: str) -> str:
    namespace, name = table.split(".", 1)
    return f'lake_{namespace}."{name}"'


def mart_suite(table: str, spec: dict[str, Any]) -> MartSuite:
    """The suite of mart ``table`` from its entry in ``gx/marts.yml``."""
    config = severity_config()
    key = spec["key"]
    checks: list[Check] = []

    def add(kind: str, column: str | None, expectation: str, **kwargs: Any) -> None:
        level = severity(table, column, kind, config)
        checks.append(Check(table, kind, column, expectation, kwargs, level))

    derived: list[str] = []
    for column in [key, *spec.get("not_null", [])]:
        add("not_null", column, "ExpectColumnValuesToNotBeNull")
    add("unique", key, "ExpectColumnValuesToBeUnique")
    natural = spec.get("scd2")
    if natural:
        derived.append(
            """coalesce(
                t.valid_to is not distinct from lead(t.valid_from) over scd
                and (t.valid_to is null or t.valid_to > t.valid_from)
                and t.is_current = (t.valid_to is null)
                and count(*) filter (where t.is_current) over whole = 1, false) as scd2_ok"""
        )
        checks.append(
            Check(table, "scd2", natural, "ExpectColumnValuesToBeInSet",
                  {"value_set": [True], "derived": "scd2_ok"},
                  severity(table, natural, "scd2", config))
        )  # fmt: skip
    for column, target in (spec.get("foreign_keys") or {}).items():
        target_table, target_column = target.rsplit(".", 1)
        derived.append(
            f"(t.{column} is null or t.{column} in "
            f"(select {target_column} from {_view(target_table)})) as {column}__resolves"
        )
        checks.append(
            Check(table, "foreign_key", column, "ExpectColumnValuesToBeInSet",
                  {"value_set": [True], "derived": f"{column}__resolves", "references": target},
                  severity(table, column, "foreign_key", config))
        )  # fmt: skip
    for column, (low, high) in (spec.get("bounds") or {}).items():
        add("bounds", column, "ExpectColumnValuesToBeBetween", min_value=low, max_value=high)
    rows_match = spec.get("rows_match")
    matched = None
    if rows_match:
        if isinstance(rows_match, str):
            rows_match = {"column": rows_match}
        raw_table, raw_column = rows_match["column"].rsplit(".", 1)
        matched = (raw_table, raw_column, rows_match.get("where"))
        add("row_count", None, "ExpectTableRowCountToEqual")
    window = ""
    if natural:
        window = (
            f" window scd as (partition by t.{natural} order by t.valid_from),"
            f" whole as (partition by t.{natural})"
        )
    select = ", ".join(["t.*", *derived])
    sql = f"select {select} from {_view(table)} as t{window}"
    return MartSuite(table, key, sql, checks, matched)


def mart_suites() -> dict[str, MartSuite]:
    """Every mart suite of ``gx/marts.yml``."""
    return {table: mart_suite(table, spec) for table, spec in mart_config().items()}
