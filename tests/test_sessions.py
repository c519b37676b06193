"""``weir.connect()`` as a notebook uses it, each case in a fresh interpreter (the failures
these guard against depended on what the interpreter still held): a chained
``weir.connect().sql(...).to_pylist()``, DataFrames that outlive their session, filters with
Weir's functions after the session is gone, and tables created after the session was opened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PRELUDE = """
import gc, json, datafusion, weir
from weir import samples
import pyarrow as pa
events = samples.generate_shop_events(200, invalid_fraction=0.0, seed=5)
weir.append("raw.shop_events", weir.process(json.dumps(events), "json", strict=True).output)
"""


def run(tmp_path: Path, body: str) -> dict:
    """Runs PRELUDE + ``body`` in a new interpreter on a private lake; ``body`` prints one
    JSON line, returned."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env["WEIR_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + body],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_chained_query_works(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        'n = weir.connect().sql("select count(*) as n from lake.raw.shop_events").to_pylist()\n'
        "print(json.dumps(n))\n",
    )
    assert out == [{"n": 200}]


def test_dataframes_outlive_their_session_with_weir_functions_in_filters(tmp_path: Path) -> None:
    out = run(
        tmp_path,
        "ctx = weir.connect()\n"
        'df = ctx.sql("select user_email from lake.raw.shop_events "\n'
        "             \"where weir_normalize_email(user_email) like '%@%' and quantity >= 1\")\n"
        "del ctx\n"
        "gc.collect()\n"
        "rows = df.to_pylist()\n"
        "again = df.filter(datafusion.col('user_email').is_not_null()).count()\n"
        'print(json.dumps({"rows": len(rows), "again": again}))\n',
    )
    assert out["rows"] == out["again"] > 0


@pytest.mark.parametrize("namespace", ["raw", "marts"])
def test_a_session_sees_tables_created_after_it_opened(tmp_path: Path, namespace: str) -> None:
    """``raw`` existed when the session opened (a new table in a known namespace); ``marts``
    did not (a new namespace too)."""
    out = run(
        tmp_path,
        "ctx = weir.connect()\n"
        f'name = "{namespace}.late"\n'
        "weir.lake.create_table(name, pa.schema([('x', pa.int64())]))\n"
        "weir.append(name, pa.table({'x': [1, 2, 3]}))\n"
        'first = ctx.sql(f"select sum(x) as s from lake.{name}").to_pylist()\n'
        "weir.append(name, pa.table({'x': [4]}))\n"
        'second = ctx.sql(f"select sum(x) as s from lake.{name}").to_pylist()\n'
        'listed = ctx.sql("select table_schema, table_name from information_schema.tables "\n'
        "                 \"where table_catalog = 'lake' and table_name = 'late'\").to_pylist()\n"
        'print(json.dumps({"first": first, "second": second, "listed": listed}))\n',
    )
    assert out["first"] == [{"s": 6}] and out["second"] == [{"s": 10}]
    assert out["listed"] == [{"table_schema": namespace, "table_name": "late"}]
