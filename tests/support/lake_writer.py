"""A separate writer process for the lake tests: appends ``--commits`` small batches of
``--rows`` valid shop events (ids from ``--first``) to raw.shop_events, one commit each.

    python tests/support/lake_writer.py --metastore M --warehouse W --first 0 --commits 50 --rows 5

Prints one JSON line per commit (snapshot id, record count) so the test can check them.
With ``--on-request`` it waits for a line on stdin before each commit (and stops at the end
of stdin), so a test decides when each commit happens.
"""

from __future__ import annotations

import argparse
import json
import sys

import weir
from weir.config import LakeSettings


def shop_events(first: int, n: int) -> list[dict]:
    """``n`` valid events with ids ``first..first+n`` spread over three days."""
    return [
        {
            "event_id": f"00000000-0000-4000-8000-{i:012d}",
            "event_type": "purchase" if i % 4 == 0 else "page_view",
            "event_time": f"2026-11-{25 + i % 3:02d}T{1 + i % 23:02d}:15:00+01:00",
            "user_id": f"u_{i % 97}",
            "user_email": f"User{i}@Example.com",
            "user_country": "DE",
            **(
                {
                    "product_id": f"p_{i % 13}",
                    "unit_price": 1.5 + i % 7,
                    "quantity": 1 + i % 3,
                    "currency": "EUR",
                }
                if i % 4 == 0
                else {}
            ),
            "properties": {"referrer": "ad" if i % 2 else "search"},
        }
        for i in range(first, first + n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--metastore", required=True)
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--commits", type=int, default=50)
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--on-request", action="store_true")
    args = parser.parse_args()
    settings = LakeSettings(args.metastore, args.warehouse)
    for k in range(args.commits):
        if args.on_request and not sys.stdin.readline():
            break
        first = args.first + k * args.rows
        events = "\n".join(json.dumps(e) for e in shop_events(first, args.rows))
        result = weir.process(events, "ndjson", strict=True)
        info = weir.append(
            "raw.shop_events", result.output, {"weir.writer-batch": str(first)}, settings=settings
        )
        print(
            json.dumps({"snapshot_id": info.snapshot_id, "records": info.record_count}), flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
