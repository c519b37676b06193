"""Self-check of the processor benchmark's baselines: the reference implementation
(``tests/reference``: (a) ``pure_python``, (b) ``orjson_python``) and (c) ``pyarrow_compute``
(``pyarrow_baseline.py``) must agree on generated events and on hand-made edge records::

    python bench/processor/self_check.py

Needs ``orjson`` and ``pyarrow``, not a built ``weir``. Prints one line of counts per input
and exits non-zero (an AssertionError naming the input) on the first disagreement.
"""

from __future__ import annotations

import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.reference

from pyarrow_baseline import pyarrow_compute  # noqa: E402
from weir_samples import load_samples  # noqa: E402

from tests.reference import orjson_python, pure_python  # noqa: E402

# A few hand-made records for the edges that the generator does not produce.
EDGE_NDJSON = b"""
{"event_id":"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d001","event_type":"purchase","event_time":"2024-03-01T10:00:00.123456789+05:30","user_id":"u_1","product_id":"p_1","unit_price":10,"quantity":2.0,"currency":"EUR","properties":{"referrer":"x","a":{"b":{"c":{"d":1}}}}}
   \t
not json at all
[1,2,3]
{"event_id":"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d002","event_type":"page_view","event_time":"2024-03-01T10:00:00Z","user_id":"u_2","unit_price":NaN}
{"event_id":"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d003","event_type":"refund","event_time":"2024-02-29T23:59:59-00:30","user_id":"u_3","product_id":7,"quantity":true,"properties":[1]}
{"event_id":"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d004","event_type":"page_view","event_time":"2024-03-01T10:00:00Z","user_id":"u_4","extra":{"x":1},"properties":null,"user_plan":null}
{"event_id":"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d005","event_type":"page_view","event_time":"2024-03-01T10:00:00Z","user_id":"u_5","user_email":"a@b.cd","properties":{"referrer":"r","x":"{\\"properties\\":{}}"}}
{"event_id":"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d006","event_type":"page_view","event_time":"2024-03-01T10:00:00Z","user_id":"u_6","user_email":"\xc3\xa9@b.cd","product_name":"\xc3\xa9\xc3\xa9"}
"""

EDGE_CSV = (
    b"event_id,event_type,event_time,user_id,quantity,unit_price,currency,product_id,properties,coupon\r\n"
    b'0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d011,purchase,2024-03-01T10:00:00Z,u_11,3,1e2,USD,p_1,"{""referrer"":""r""}",\r\n'
    b"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d012,purchase,2024-03-01T10:00:00Z,u_12,three,abc,USD,p_1,[1],\r\n"
    b"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d013,page_view,2024-03-01T10:00:00Z,u_13,,,,,"
    b'"""just text""",SAVE10\r\n'
    b"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d014,page_view,2024-03-01T10:00:00Z,u_14,,,,,   ,\r\n"
    b"0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d015,page_view,2024-03-01T10:00:00Z,u_15,,,,,not json,\r\n"
    b'0e5bd1a4-9c4b-4c71-8a7b-25d1b7e0d016,refund,2024-03-01T10:00:00Z,u_16,1.5,+.5,GBP,p_2,"{""a"":\r\n1}",\r\n'
)


def _comparable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, (datetime, date)) else v) for k, v in row.items()}
        for row in rows
    ]


def main() -> None:
    samples = load_samples()
    events = samples.generate_shop_events(2000, invalid_fraction=0.05, seed=7)
    inputs = {
        "ndjson": samples.to_ndjson(events),
        "csv": samples.to_csv(events),
        "ndjson-edges": EDGE_NDJSON,
        "csv-edges": EDGE_CSV,
        "csv-extra-columns": samples.to_csv(events, extra_columns=True),
    }
    for label, data in inputs.items():
        fmt = label.split("-")[0]
        a = pure_python(data, fmt)
        b = orjson_python(data, fmt)
        c = pyarrow_compute(data, fmt)
        print(
            f"{label:>18}: (a) rows={a.output_rows} rejected={a.rejected_records}"
            f" violations={a.violations}"
            f" | (b) {b.output_rows}/{b.rejected_records}/{b.violations}"
            f" | (c) {c.output_rows}/{c.rejected_records}/{c.violations}"
        )
        assert (a.output_rows, a.rejected_records) == (b.output_rows, b.rejected_records), label
        assert (a.output_rows, a.rejected_records) == (c.output_rows, c.rejected_records), label
        assert a.violations == c.violations, label
        a_keys = sorted((r, f or "", rule) for r, f, rule, _, _ in a.violation_details)
        c_keys = sorted(
            (r, f or "", rule)
            for r, f, rule in zip(
                *(c.violation_details[k].to_pylist() for k in ("record", "field", "rule")),
                strict=True,
            )
        )
        assert a_keys == c_keys, (label, sorted(set(a_keys) ^ set(c_keys))[:10])
        if (
            "edges" not in label
        ):  # orjson rejects NaN as a syntax error, so (b) differs on the edges
            assert a.violation_details == b.violation_details, label
            assert a.output == b.output, label
        assert _comparable(a.output) == _comparable(c.output.to_pylist()), label
    print("self-check passed: (a), (b) and (c) agree")


if __name__ == "__main__":
    main()
