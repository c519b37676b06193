"""dbt-duckdb plugin: the lake's tables as DuckDB views for the dbt project in ``dbt/``.

In ``dbt/profiles.yml``::

    plugins:
      - module: weir.dbt

Each dbt run loads DuckDB's Iceberg extension offline and gets two views per table of the
``raw`` namespace, both pinned to the snapshot current when the run first connects:
``lake_raw.shop_events`` reads all of ``raw.shop_events`` (the sources' ``schema:
lake_raw``), and ``lake_raw_new.shop_events`` only the data files added since the snapshot
the project last consumed (the ``weir_source`` macro picks it in incremental runs). Nothing
is copied and no metadata path is written down: the metastore says where each table is now.

Bookkeeping lives in dbt's own DuckDB file, schema ``weir_state``:

- ``lake_reads``: this run's views (table, snapshot, since-snapshot, files read of total);
- ``lake_consumed``: per table, the snapshot whose data the staging models hold (a staging
  model's post-hook, ``weir_mark_consumed``, moves it forward in the model's transaction);
- ``model_watermarks``: per incremental model, the newest ``staged_at`` it has processed.

Lake settings come from :mod:`weir.config` (``weir.toml``, ``WEIR_*``), as everywhere.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from weir import lake

#: The bookkeeping tables, created on first connection.
STATE_TABLES = (
    "create schema if not exists weir_state",
    """create table if not exists weir_state.lake_reads (
        table_name varchar primary key, snapshot_id bigint, since_snapshot_id bigint,
        new_files integer, files integer)""",
    """create table if not exists weir_state.lake_consumed (
        table_name varchar primary key, snapshot_id bigint)""",
    """create table if not exists weir_state.model_watermarks (
        model varchar primary key, staged_at timestamptz)""",
)


def _full_refresh() -> bool:
    """Whether this dbt run was started with ``--full-refresh`` (then every ``_new`` view
    reads the whole table, as the staging models do)."""
    from dbt.flags import get_flags

    return bool(getattr(get_flags(), "FULL_REFRESH", False))


class Plugin(BasePlugin):
    """Registers the lake's views on every connection dbt-duckdb opens, all at the
    snapshots the first one pinned: one dbt run reads one state of the lake."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.namespaces = tuple(plugin_config.get("namespaces", ("raw",)))
        #: Fixed by the run's first connection: the snapshots read, and since which ones.
        self.pinned: dict[str, int | None] | None = None
        self.since: dict[str, int] = {}

    def configure_connection(self, conn: Any) -> None:
        lake.configure_duckdb(conn)
        for statement in STATE_TABLES:
            conn.execute(statement)
        first = self.pinned is None
        if first and not _full_refresh():
            consumed = "select table_name, snapshot_id from weir_state.lake_consumed"
            self.since = dict(conn.execute(consumed).fetchall())
        views = lake.register_duckdb_views(
            conn, self.namespaces, since=self.since, pinned=self.pinned
        )
        if first:
            self.pinned = {table: view.snapshot_id for table, view in views.items()}
            conn.execute("delete from weir_state.lake_reads")
            conn.executemany(
                "insert into weir_state.lake_reads values (?, ?, ?, ?, ?)",
                [
                    (v.table, v.snapshot_id, v.since_snapshot_id, v.new_files, v.files)
                    for v in views.values()
                ],
            )
