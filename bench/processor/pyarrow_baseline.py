"""Baseline (c) of the processor benchmark: ``pyarrow_compute``, the work of
``weir.process(data, fmt, "shop_events")`` done with pyarrow's readers and vectorised
``pyarrow.compute`` kernels: ``pyarrow.json.read_json`` / ``pyarrow.csv.read_csv`` with an
explicit schema, then vectorised checks and transformations.

It is a competitor in ``bench/processor/run.py``, not a reference: the reference
implementation and the contract it shares with it are in ``tests/reference/`` (imported as
``tests.reference``, so the repository root must be on ``sys.path``; ``run.py`` and
``self_check.py`` put it there). It returns a ``BaselineResult`` whose ``output`` is a
``pyarrow.Table`` and whose ``violation_details`` is a ``pyarrow.Table`` of
``(record, field, rule, value, message)``; the semantics it shares with the reference where
the contract leaves room are in ``tests/reference/contract.py``.

Self-check against the reference (needs ``orjson`` and ``pyarrow``; not ``weir``)::

    python bench/processor/self_check.py
"""

from __future__ import annotations

import csv
import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from tests.reference.contract import (
    CONTRACT,
    CSV_NUMBER_RX,
    DATETIME_RX,
    EMAIL_LOCAL_LENGTH_RX,
    EMAIL_RX,
    FIELD_KINDS,
    FIELD_NAMES,
    FIELD_SET,
    OUTPUT_SCHEMA,
    PRODUCT_EVENT_FIELDS,
    PRODUCT_EVENT_TYPES,
    UUID_RX,
    BaselineResult,
    Violation,
    compact_json,
    json_type,
    md5_hex,
)

__all__ = ["pyarrow_compute"]

# Where pyarrow cannot do the work per record, and what this baseline does instead:
#
# * pyarrow.json.read_json with an explicit schema fails the *whole* read on the first
#   value of the wrong JSON type (e.g. "quantity": "3"), on a syntax error and on a line
#   that is not an object. Its error names the row ("... in row N"), so the reader is
#   re-run on the rows before it, the offending line is set aside, and reading goes on
#   after it. Lines are read in ranges of 256-8192 lines (smaller after a failure), each
#   as one block so that N counts from the range start; the rows parsed by a failed read
#   are parsed again, which is this baseline's price for per-record errors (on 1% invalid
#   data, roughly 1.6x the reading time of the same data without errors). Only the
#   set-aside lines (a fraction of the invalid ones) are decoded with the json module to
#   find their type violations; all their other checks are vectorised with the rest.
#   The reader also accepts NaN/Infinity; they are caught as type violations. Ranges of
#   one block also mean no multi-threaded parsing, which the one-core benchmark does not
#   use anyway.
# * There is no kernel that turns a struct back into JSON text, so the ``properties``
#   text is cut out of each line with an RE2 pattern (objects nested up to two levels;
#   a deeper one is re-serialised with the json module). The reader infers ISO-looking
#   strings inside ``properties`` as timestamps; a ``referrer`` like that, or a
#   non-scalar one, is not reproduced exactly.
# * For CSV, every column is read as text (an explicit numeric type would fail the whole
#   file on "abc") and numbers are checked with a regex and cast. ``properties`` JSON
#   text is checked by joining the column into an NDJSON buffer and reading that with
#   read_json (same set-aside scheme). pyarrow does not report the position of a CSV
#   row with the wrong number of fields (row.number is None), so such rows are counted
#   as rejected with record index -1 and later record indices shift down by one.
#   The header row is split with the csv module (a header with a quoted newline is not
#   supported).
# * There is no md5 kernel: the ids are dictionary-encoded, the distinct values are
#   hashed with hashlib, and the hashes are taken back by index.

_READ_TYPES: dict[str, pa.DataType] = {
    spec.name: (pa.float64() if spec.kind in ("number", "integer") else pa.string())
    for spec in CONTRACT
    if spec.kind != "object"
}
_JSON_READ_SCHEMA = pa.schema(list(_READ_TYPES.items()))
_JSON_PARSE = pa_json.ParseOptions(
    explicit_schema=_JSON_READ_SCHEMA, unexpected_field_behavior="infer"
)
_JSON_PARSE_INFER = pa_json.ParseOptions(unexpected_field_behavior="infer")
_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(FIELD_NAMES)}
_ALL_BITS = (1 << len(FIELD_NAMES)) - 1
# Scalars made once: turning a Python value into an Arrow scalar costs ~0.1 ms each time
# (pyarrow tries to import dateutil), which adds up over many small ranges.
_BIT_SCALAR: dict[str, pa.Scalar] = {name: pa.scalar(bit, pa.int32()) for name, bit in _BIT.items()}
_ZERO = pa.scalar(0, pa.int32())
_FALSE = pa.scalar(False)
_TRUE = pa.scalar(True)
_CANONICAL = pa.schema(
    [
        *_READ_TYPES.items(),
        ("_props_present", pa.bool_()),
        ("_referrer", pa.string()),
        ("_props_text", pa.string()),
        ("_typebad", pa.int32()),
        ("_pre_bad", pa.bool_()),
    ]
)
VIOLATION_SCHEMA = pa.schema(
    [
        ("record", pa.int64()),
        ("field", pa.string()),
        ("rule", pa.string()),
        ("value", pa.string()),
        ("message", pa.string()),
    ]
)
_MAX_RANGE_BYTES = 1 << 28  # read_json's block_size is an int32
_MAX_RANGE_LINES = 8192
_MIN_RANGE_LINES = 256
_ERROR_ROW_RE = re.compile(r"in row (\d+)")
_BLANK_RX = r"^[ \t\r]*$"
_OBJ1 = r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}'
_OBJ2 = rf'\{{(?:[^{{}}"]|"(?:[^"\\]|\\.)*"|{_OBJ1})*\}}'
_PROPERTIES_RX = rf'[{{,][ \t]*"properties"[ \t]*:[ \t]*(?P<p>{_OBJ2})'


class _Violations:
    """Collects violations: vectorised pieces as tables, the few set-aside ones as tuples."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows: list[Violation] = []

    def add(
        self,
        field: str | None,
        rule: str,
        mask: pa.Array,
        values: pa.Array | None,
        prefix: str,
        suffix: str,
    ) -> None:
        if not mask.true_count:
            return
        records = pc.indices_nonzero(mask).cast(pa.int64())
        count = len(records)
        if values is None:
            value_col: pa.Array = pa.nulls(count, pa.string())
            message: pa.Array = pa.repeat(pa.scalar(prefix + suffix), count)
        else:
            value_col = pc.array_take(values, records)
            message = pc.binary_join_element_wise(
                prefix, pc.fill_null(value_col, "null"), suffix, ""
            )
        self.tables.append(
            pa.table(
                [
                    records,
                    pa.repeat(pa.scalar(field, pa.string()), count),
                    pa.repeat(pa.scalar(rule), count),
                    value_col,
                    message,
                ],
                schema=VIOLATION_SCHEMA,
            )
        )

    def table(self) -> pa.Table:
        rows = pa.Table.from_pylist(
            [dict(zip(VIOLATION_SCHEMA.names, row, strict=True)) for row in self.rows],
            schema=VIOLATION_SCHEMA,
        )
        return pa.concat_tables([*self.tables, rows]).sort_by([("record", "ascending")])


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else compact_json(value)


def _as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _split_lines(buf: pa.Buffer) -> tuple[pa.Array, pa.Array]:
    """Non-blank lines of ``buf`` (large_binary, without the newline) and their byte offsets."""
    whole = pa.Array.from_buffers(
        pa.large_binary(), 1, [None, pa.array([0, buf.size], pa.int64()).buffers()[1], buf]
    )
    lines = pc.split_pattern(whole, "\n").flatten()
    lengths = pc.binary_length(lines).cast(pa.int64())
    starts = pc.subtract(pc.cumulative_sum(pc.add(lengths, 1)), pc.add(lengths, 1))
    blank = pc.match_substring_regex(lines, _BLANK_RX)
    blanks = blank.true_count
    if blanks == 0:
        return lines, starts
    if blanks == 1 and blank[len(blank) - 1].as_py():  # just the end after the final newline
        return lines.slice(0, len(lines) - 1), starts.slice(0, len(starts) - 1)
    keep = pc.invert(blank)
    return lines.filter(keep), starts.filter(keep)


def _read_json_range(
    buf: pa.Buffer, start: int, end: int, options: pa_json.ParseOptions
) -> pa.Table:
    size = end - start
    return pa_json.read_json(
        pa.BufferReader(buf.slice(start, size)),
        read_options=pa_json.ReadOptions(block_size=max(size + 1, 1 << 16)),
        parse_options=options,
    )


def _read_json_lines(
    buf: pa.Buffer, lines: pa.Array, starts: pa.Array, options: pa_json.ParseOptions
) -> tuple[list[tuple[int, pa.Table]], list[int]]:
    """Read the lines with read_json; returns (first record, table) pieces and the set-aside lines.

    Lines are read in ranges of at most ``_MAX_RANGE_LINES`` lines. A failed read only
    says which row failed, and everything it parsed is thrown away, so after a failure
    the ranges shrink (fewer rows parsed twice) and after a success they grow again
    (fewer calls, each of which costs about 0.2 ms).
    """
    n = len(lines)

    def start_of(i: int) -> int:
        return int(starts[i].as_py())

    def end_of(i: int) -> int:  # exclusive byte end of line i
        return start_of(i) + len(lines[i].as_py())

    pieces: list[tuple[int, pa.Table]] = []
    set_aside: list[int] = []
    size = _MAX_RANGE_LINES
    first = 0
    while first < n:
        last = min(n, first + size)
        while last - first > 1 and end_of(last - 1) - start_of(first) > _MAX_RANGE_BYTES:
            last = first + (last - first) // 2
        failed = False
        work = [(first, last)]
        while work:
            lo, hi = work.pop()
            if lo >= hi:
                continue
            try:
                pieces.append((lo, _read_json_range(buf, start_of(lo), end_of(hi - 1), options)))
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                failed = True
                if hi - lo == 1:
                    set_aside.append(lo)
                    continue
                match = _ERROR_ROW_RE.search(str(exc))
                row = int(match.group(1)) if match else -1
            if 0 <= row < hi - lo:
                set_aside.append(lo + row)
                work.extend([(lo + row + 1, hi), (lo, lo + row)])
            else:  # no usable row number: bisect
                mid = (lo + hi) // 2
                work.extend([(mid, hi), (lo, mid)])
        size = max(_MIN_RANGE_LINES, size // 4) if failed else min(_MAX_RANGE_LINES, size * 2)
        first = last
    pieces.sort(key=lambda item: item[0])
    return pieces, sorted(set_aside)


def _referrer_from_struct(props: pa.Array) -> pa.Array:
    if not pa.types.is_struct(props.type) or props.type.get_field_index("referrer") < 0:
        return pa.nulls(len(props), pa.string())
    referrer = pc.struct_field(props, "referrer")
    if pa.types.is_nested(referrer.type):
        return pa.nulls(len(props), pa.string())
    return referrer.cast(pa.string())


def _add_unknown_fields(
    table: pa.Table, first: int, known: frozenset[str], out: _Violations, pre_bad: pa.Array
) -> pa.Array:
    for name in table.column_names:
        if name in known:
            continue
        column = _as_array(table[name])
        present = pc.is_valid(column)
        if not present.true_count:
            continue
        rows = pc.indices_nonzero(present).to_pylist()
        if pa.types.is_nested(column.type):
            values = [_value_text(v) for v in column.take(rows).to_pylist()]
        else:
            values = column.take(rows).cast(pa.string()).to_pylist()
        out.rows.extend(
            (first + i, name, "additionalProperties", v, f"unknown field {name!r}")
            for i, v in zip(rows, values, strict=True)
        )
        pre_bad = pc.or_(pre_bad, present)
    return pre_bad


def _canonical_piece(table: pa.Table, first: int, out: _Violations) -> pa.Table:
    """A table read with the explicit schema -> the canonical column layout."""
    n = table.num_rows
    typebad = pa.repeat(_ZERO, n)
    pre_bad = pa.repeat(_FALSE, n)
    present = pre_bad
    referrer = pa.nulls(n, pa.string())
    if "properties" in table.column_names:
        props = _as_array(table["properties"])
        if pa.types.is_struct(props.type):
            present = pc.is_valid(props)
            referrer = _referrer_from_struct(props)
        elif not pa.types.is_null(
            props.type
        ):  # e.g. every non-null value in this range was a string
            wrong = pc.is_valid(props)
            rows = pc.indices_nonzero(wrong).to_pylist()
            for i, value in zip(rows, props.take(rows).to_pylist(), strict=True):
                out.rows.append(
                    (
                        first + i,
                        "properties",
                        "type",
                        _value_text(value),
                        f"properties must be of type object, not {json_type(value)}",
                    )
                )
            typebad = pc.if_else(wrong, _BIT_SCALAR["properties"], typebad)
            pre_bad = pc.or_(pre_bad, wrong)
    pre_bad = _add_unknown_fields(table, first, FIELD_SET, out, pre_bad)
    columns = [_as_array(table[name]) for name in _READ_TYPES]
    return pa.table(
        [*columns, present, referrer, pa.nulls(n, pa.string()), typebad, pre_bad], schema=_CANONICAL
    )


def _canonical_set_aside(lines: pa.Array, indices: list[int], out: _Violations) -> pa.Table:
    """The lines read_json could not read as part of a range: decoded with json, one by one."""
    rows: list[dict[str, Any]] = []
    for index in indices:
        line = lines[index].as_py()
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        row: dict[str, Any] = {"_typebad": 0, "_pre_bad": False, "_props_present": False}
        if not isinstance(record, dict):
            out.rows.append(
                (
                    index,
                    None,
                    "syntax",
                    line.decode("utf-8", "replace"),
                    "record is not a JSON object",
                )
            )
            row.update(_typebad=_ALL_BITS, _pre_bad=True)
            rows.append(row)
            continue
        for name, value in record.items():
            if value is None:
                continue
            kind = FIELD_KINDS.get(name)
            if kind is None:
                out.rows.append(
                    (
                        index,
                        name,
                        "additionalProperties",
                        _value_text(value),
                        f"unknown field {name!r}",
                    )
                )
                row["_pre_bad"] = True
                continue
            if kind == "string":
                ok = isinstance(value, str)
            elif kind in {"number", "integer"}:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    try:
                        row[name] = float(value)
                    except OverflowError:
                        ok = False
            else:
                ok = isinstance(value, dict)
            if not ok:
                out.rows.append(
                    (
                        index,
                        name,
                        "type",
                        _value_text(value),
                        f"{name} must be of type {kind}, not {json_type(value)}",
                    )
                )
                row["_typebad"] |= _BIT[name]
                row["_pre_bad"] = True
            elif kind == "object":
                row["_props_present"] = True
                referrer = value.get("referrer")
                row["_referrer"] = None if referrer is None else _value_text(referrer)
            elif kind == "string":
                row[name] = value
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=_CANONICAL)


def _assemble(
    pieces: list[tuple[int, pa.Table]], set_aside: list[int], singles: pa.Table
) -> pa.Table:
    """Interleave the range pieces and the set-aside rows in record order."""
    ordered = [
        *((lo, table) for lo, table in pieces),
        *((index, singles.slice(k, 1)) for k, index in enumerate(set_aside)),
    ]
    ordered.sort(key=lambda item: item[0])
    if not ordered:
        return _CANONICAL.empty_table()
    return pa.concat_tables([table for _, table in ordered]).combine_chunks()


def _arrow_read_ndjson(data: bytes, out: _Violations) -> tuple[pa.Table, pa.Array]:
    buf = pa.py_buffer(data)
    lines, starts = _split_lines(buf)
    pieces, set_aside = _read_json_lines(buf, lines, starts, _JSON_PARSE)
    canonical = [(lo, _canonical_piece(table, lo, out)) for lo, table in pieces]
    return _assemble(canonical, set_aside, _canonical_set_aside(lines, set_aside, out)), lines


def _csv_header(data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8-sig")
    return next(csv.reader([first.rstrip("\r")]), [])


def _arrow_csv_properties(text: pa.Array, out: _Violations) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Check that each properties text is a JSON object, with read_json over the column.

    Returns (is_object, referrer, not_object) for every row.
    """
    n = len(text)
    blank = pc.fill_null(pc.match_substring_regex(text, r"^\s*$"), False)
    candidate = pc.and_(pc.is_valid(text), pc.invert(blank))
    rows = pc.indices_nonzero(candidate)
    is_object = pa.repeat(_FALSE, n)
    referrer = pa.nulls(n, pa.string())
    if len(rows):
        # One JSON text per line (a raw newline inside a JSON text becomes a space).
        doc_text = pc.replace_substring_regex(text.take(rows), r"[\r\n]", " ")
        joined = pc.binary_join_element_wise(doc_text, "", "\n")
        offsets = joined.buffers()[1]
        first = pa.Array.from_buffers(
            pa.int32(), 1, [None, offsets], offset=joined.offset
        ).to_pylist()[0]
        last = pa.Array.from_buffers(
            pa.int32(), 1, [None, offsets], offset=joined.offset + len(joined)
        ).to_pylist()[0]
        buf = joined.buffers()[2].slice(first, last - first)
        lines, starts = _split_lines(buf)
        pieces, set_aside = _read_json_lines(buf, lines, starts, _JSON_PARSE_INFER)
        doc_ok_parts: list[tuple[int, pa.Array, pa.Array]] = []
        for lo, table in pieces:
            referrer_piece = pa.nulls(table.num_rows, pa.string())
            if "referrer" in table.column_names:
                column = _as_array(table["referrer"])
                if not pa.types.is_nested(column.type):
                    referrer_piece = column.cast(pa.string())
            doc_ok_parts.append((lo, pa.repeat(_TRUE, table.num_rows), referrer_piece))
        for index in set_aside:
            try:
                value = json.loads(lines[index].as_py())
            except ValueError:
                value = None
            ok = isinstance(value, dict)
            ref = value.get("referrer") if isinstance(value, dict) else None
            doc_ok_parts.append(
                (
                    index,
                    pa.array([ok]),
                    pa.array([None if ref is None else _value_text(ref)], pa.string()),
                )
            )
        doc_ok_parts.sort(key=lambda item: item[0])
        doc_ok = pa.concat_arrays([part[1] for part in doc_ok_parts])
        doc_ref = pa.concat_arrays([part[2] for part in doc_ok_parts])
        is_object = pc.replace_with_mask(is_object, candidate, doc_ok)
        referrer = pc.replace_with_mask(referrer, candidate, doc_ref)
    not_object = pc.and_(pc.is_valid(text), pc.invert(is_object))
    out.add("properties", "type", not_object, text, "properties must be a JSON object, not ", "")
    return is_object, referrer, not_object


def _arrow_read_csv(data: bytes, out: _Violations) -> tuple[pa.Table, int]:
    header = _csv_header(data)
    bad_rows: list[str] = []

    def on_invalid(row: Any) -> str:
        bad_rows.append(row.text)
        return "skip"

    table = pa_csv.read_csv(
        pa.BufferReader(pa.py_buffer(data)),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    for text in bad_rows:
        out.rows.append((-1, None, "syntax", text, "row has the wrong number of fields"))
    n = table.num_rows
    typebad = pa.repeat(_ZERO, n)
    pre_bad = pa.repeat(_FALSE, n)
    columns: list[pa.Array] = []
    for spec in CONTRACT:
        if spec.kind == "object":
            continue
        text = (
            _as_array(table[spec.name])
            if spec.name in table.column_names
            else pa.nulls(n, pa.string())
        )
        if spec.kind == "string":
            columns.append(text)
            continue
        looks_numeric = pc.match_substring_regex(text, f"^{CSV_NUMBER_RX}$")
        wrong = pc.fill_null(pc.invert(looks_numeric), False)
        out.add(
            spec.name,
            "type",
            wrong,
            text,
            f"{spec.name} must be of type {spec.kind}, not text ",
            "",
        )
        typebad = pc.if_else(wrong, pc.bit_wise_or(typebad, _BIT_SCALAR[spec.name]), typebad)
        pre_bad = pc.or_(pre_bad, wrong)
        columns.append(pc.if_else(wrong, None, text).cast(pa.float64()))
    if "properties" in table.column_names:
        props_text = _as_array(table["properties"])
        present, referrer, not_object = _arrow_csv_properties(props_text, out)
        typebad = pc.if_else(
            not_object, pc.bit_wise_or(typebad, _BIT_SCALAR["properties"]), typebad
        )
        pre_bad = pc.or_(pre_bad, not_object)
    else:
        props_text = pa.nulls(n, pa.string())
        present = pa.repeat(_FALSE, n)
        referrer = pa.nulls(n, pa.string())
    for name in table.column_names:
        if name not in FIELD_SET:
            column = _as_array(table[name])
            unknown = pc.is_valid(column)
            out.add(name, "additionalProperties", unknown, column, f"unknown field {name!r}: ", "")
            pre_bad = pc.or_(pre_bad, unknown)
    canonical = pa.table(
        [*columns, present, referrer, props_text, typebad.cast(pa.int32()), pre_bad],
        schema=_CANONICAL,
    )
    return canonical, len(bad_rows)


def _calendar_ok(text: pa.Array) -> pa.Array:
    """For strings matching DATETIME_RX: is the date a real calendar date in years 0001-9999?"""
    year = pc.utf8_slice_codeunits(text, 0, 4).cast(pa.int32())
    month = pc.utf8_slice_codeunits(text, 5, 7).cast(pa.int32())
    day = pc.utf8_slice_codeunits(text, 8, 10).cast(pa.int32())

    def divisible(by: int) -> pa.Array:
        return pc.equal(pc.multiply(pc.divide(year, by), by), year)

    leap = pc.or_(pc.and_(divisible(4), pc.invert(divisible(100))), divisible(400))
    february_max = pc.if_else(leap, 29, 28)
    short_month = pc.is_in(month, value_set=pa.array([4, 6, 9, 11], pa.int32()))
    month_max = pc.if_else(pc.equal(month, 2), february_max, pc.if_else(short_month, 30, 31))
    return pc.and_(pc.greater_equal(year, 1), pc.less_equal(day, month_max))


def _arrow_validate(table: pa.Table, out: _Violations) -> pa.Array:
    """Vectorised checks of the canonical table; returns the per-record 'has a violation' mask."""
    typebad = _as_array(table["_typebad"])
    bad = _as_array(table["_pre_bad"])

    def column(name: str) -> pa.Array:
        return _as_array(table[name])

    def flag(
        field: str,
        rule: str,
        mask: pa.Array,
        values: pa.Array | None,
        prefix: str,
        suffix: str = "",
    ) -> None:
        nonlocal bad
        mask = pc.fill_null(mask, False)
        out.add(field, rule, mask, values, prefix, suffix)
        bad = pc.or_(bad, mask)

    def not_type_bad(name: str) -> pa.Array:
        return pc.equal(pc.bit_wise_and(typebad, _BIT_SCALAR[name]), _ZERO)

    for spec in CONTRACT:
        if spec.kind == "object":
            continue
        name = spec.name
        values = column(name)
        if spec.required:
            flag(
                name,
                "required",
                pc.and_(pc.is_null(values), not_type_bad(name)),
                None,
                f"{name} is required",
            )
        if spec.kind == "string":
            if spec.enum is not None:
                mask = pc.and_(
                    pc.is_valid(values), pc.invert(pc.is_in(values, value_set=pa.array(spec.enum)))
                )
                flag(name, "enum", mask, values, "'", f"' is not one of {', '.join(spec.enum)}")
            if spec.pattern is not None:
                mask = pc.invert(pc.match_substring_regex(values, f"^{spec.pattern}$"))
                flag(name, "pattern", mask, values, "'", f"' does not match ^{spec.pattern}$")
            if spec.format == "uuid":
                mask = pc.invert(pc.match_substring_regex(values, f"^{UUID_RX}$"))
                flag(name, "format", mask, values, "'", "' is not a valid uuid")
            elif spec.format == "email":
                ok = pc.and_(
                    pc.match_substring_regex(values, f"^{EMAIL_LOCAL_LENGTH_RX}"),
                    pc.match_substring_regex(values, f"^{EMAIL_RX}$"),
                )
                flag(name, "format", pc.invert(ok), values, "'", "' is not a valid email")
            elif spec.format == "date-time":
                shape = pc.match_substring_regex(values, f"^{DATETIME_RX}$")
                calendar = _calendar_ok(pc.if_else(shape, values, None))
                ok = pc.and_(shape, pc.fill_null(calendar, False))
                flag(
                    name,
                    "format",
                    pc.invert(ok),
                    values,
                    "'",
                    "' is not a valid RFC 3339 date-time",
                )
            if spec.max_length is not None:
                mask = pc.greater(pc.utf8_length(values), spec.max_length)
                flag(
                    name,
                    "maxLength",
                    mask,
                    values,
                    f"{name} is longer than {spec.max_length} characters: ",
                )
        else:
            text = values.cast(pa.string())
            ok = pc.is_finite(values)
            if spec.kind == "integer":
                ok = pc.and_(ok, pc.equal(pc.floor(values), values))
            flag(name, "type", pc.invert(ok), text, f"{name} must be of type {spec.kind}, not ")
            if spec.minimum is not None:
                mask = pc.and_(ok, pc.less(values, spec.minimum))
                flag(name, "minimum", mask, text, f"{name} ", f" is less than {spec.minimum}")
            if spec.maximum is not None:
                mask = pc.and_(ok, pc.greater(values, spec.maximum))
                flag(name, "maximum", mask, text, f"{name} ", f" is greater than {spec.maximum}")
    is_product = pc.is_in(column("event_type"), value_set=pa.array(sorted(PRODUCT_EVENT_TYPES)))
    for name in PRODUCT_EVENT_FIELDS:
        mask = pc.and_(is_product, pc.and_(pc.is_null(column(name)), not_type_bad(name)))
        flag(name, "product_event_fields", mask, None, f"product events need {name}")
    return bad


def _md5_column(values: pa.Array) -> pa.Array:
    encoded = pc.dictionary_encode(values)
    hashes = pa.array([md5_hex(v) for v in encoded.dictionary.to_pylist()], pa.string())
    return hashes.take(encoded.indices)


def _arrow_transform(valid: pa.Table, props_text: pa.Array) -> pa.Table:
    def column(name: str) -> pa.Array:
        return _as_array(valid[name])

    event_time = pc.replace_substring_regex(
        pc.utf8_upper(column("event_time")), r"(\.[0-9]{6})[0-9]+", r"\1"
    )
    event_time = event_time.cast(pa.timestamp("us", tz="UTC"))
    unit_price = column("unit_price")
    quantity = column("quantity").cast(pa.int64())
    product_id = column("product_id")
    return pa.table(
        [
            column("event_id"),
            column("event_type"),
            event_time,
            event_time.cast(pa.date32()),
            column("user_id"),
            _md5_column(column("user_id")),
            pc.utf8_lower(pc.utf8_trim_whitespace(column("user_email"))),
            pc.utf8_upper(pc.utf8_trim_whitespace(column("user_country"))),
            column("user_plan"),
            column("session_id"),
            product_id,
            _md5_column(product_id),
            column("product_name"),
            column("product_category"),
            unit_price,
            quantity,
            column("currency"),
            pc.multiply(unit_price, quantity),
            props_text,
            column("_referrer"),
        ],
        schema=OUTPUT_SCHEMA,
    )


def _ndjson_properties_text(valid: pa.Table, valid_lines: pa.Array) -> pa.Array:
    """Cut the properties object's text out of each (valid) line."""
    present = _as_array(valid["_props_present"])
    found = pc.struct_field(
        pc.extract_regex(valid_lines.filter(present), _PROPERTIES_RX), "p"
    ).cast(pa.string())
    text = pc.replace_with_mask(pa.nulls(len(present), pa.string()), present, found)
    missing = pc.and_(present, pc.is_null(text))
    if missing.true_count:  # nested deeper than the pattern handles: decode and re-serialise
        rows = pc.indices_nonzero(missing).to_pylist()
        redone = [compact_json(json.loads(valid_lines[i].as_py())["properties"]) for i in rows]
        text = pc.replace_with_mask(text, missing, pa.array(redone, pa.string()))
    return text


def pyarrow_compute(data: bytes, fmt: str) -> BaselineResult:
    """(c) pyarrow: read_json/read_csv, vectorised pyarrow.compute checks and transformations."""
    out = _Violations()
    if fmt == "ndjson":
        table, lines = _arrow_read_ndjson(data, out)
        extra_rejected = 0
    elif fmt == "csv":
        table, extra_rejected = _arrow_read_csv(data, out)
        lines = None
    else:
        raise ValueError(f"unsupported format {fmt!r} (expected 'ndjson' or 'csv')")
    bad = _arrow_validate(table, out)
    ok = pc.invert(bad)
    valid = table.filter(ok)
    if lines is not None:
        props_text = _ndjson_properties_text(valid, lines.filter(ok))
    else:
        props_text = pc.if_else(
            _as_array(valid["_props_present"]), _as_array(valid["_props_text"]), None
        )
    output = _arrow_transform(valid, props_text)
    details = out.table()
    rejected = bad.true_count + extra_rejected
    return BaselineResult(output.num_rows, rejected, details.num_rows, output, details)
