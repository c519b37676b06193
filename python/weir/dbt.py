"""dbt-duckdb plugin: the lake's tables as DuckDB views for the dbt project in ``dbt/``.

In ``dbt/profiles.yml``::

    plugins:
      - module: weir.dbt

Each dbt connection loads DuckDB's Iceberg extension offline and gets one view per table of
the ``raw`` namespace, at the snapshot current when dbt connects: ``lake_raw.shop_events``
reads ``raw.shop_events`` (declare them as the sources' ``schema: lake_raw``). Nothing is
copied and no metadata path is written down: the metastore says where each table is now.
Lake settings come from :mod:`weir.config` (``weir.toml``, ``WEIR_*``), as everywhere.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin

from weir import lake


class Plugin(BasePlugin):
    """Registers the lake's views on every connection dbt-duckdb opens."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.namespaces = tuple(plugin_config.get("namespaces", ("raw",)))
        self.snapshots: dict[str, int | None] = {}

    def configure_connection(self, conn: Any) -> None:
        lake.configure_duckdb(conn)
        self.snapshots = lake.register_duckdb_views(conn, self.namespaces)
