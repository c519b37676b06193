"""The lakehouse from Python: Iceberg tables that every part of Weir reads and writes.

    import weir
    info = weir.append("raw.shop_events", arrow_table, {"source": "backfill"})
    weir.connect().sql("select event_date, count(*) from lake.raw.shop_events group by 1").show()
    weir.lake.create_table("marts.daily_sales", schema, partition=["month(day)"], exist_ok=True)
    weir.lake.overwrite("marts.daily_sales", arrow_table, {"dbt_run": run_id})
    weir.lake.snapshots("raw.shop_events")   # pyarrow.Table, one row per snapshot
    weir.lake.files("raw.shop_events")       # live data files with partition and size
    weir.lake.register_snapshot(ctx, "then", "raw.shop_events", as_of=some_datetime)
    weir.lake.maintain()                      # the maintenance policy, once per table
    weir.lake.delete_orphan_files(older_than=timedelta(hours=6))

Settings (metastore, warehouse, S3) come from :mod:`weir.config`. Each dataset's tables,
``raw.<dataset>`` (partitioned as its contract's ``x-weir-partition`` says),
``raw.<dataset>_rejected`` and ``raw.<dataset>_dead_letter``, are created from its contract
and pipeline SQL on first use; any other table (``marts.*``, ``ops.*``) with
:func:`create_table`. Every write is one snapshot with zstd Parquet and one audit log line.
Consumers run the maintenance policy (``[lake.maintenance]``) on their tables in the
background, so continuously written tables keep flat commits and bounded metadata.
pyiceberg (``catalog()``) and DuckDB (``duckdb_connection()``, ``metadata_location()``) read
the same tables.
"""

from __future__ import annotations

import functools
import json
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from weir import _native, project
from weir.config import LakeSettings, lake_settings
from weir.exceptions import IncompatibleChangeError
from weir.processor import ensure_logging, processor
from weir.udfs import register_udfs

#: The catalog name of Weir's tables in the metastore (pyiceberg's SqlCatalog name).
CATALOG_NAME: str = _native.LakeConfig.CATALOG_NAME
#: Property of ``raw.<dataset>`` listing the contract versions it was ensured with.
CONTRACT_HISTORY_PROPERTY: str = _native.CONTRACT_HISTORY_PROPERTY

#: What one append or overwrite committed: ``table``, ``snapshot_id`` (``None`` for an append
#: of no rows), ``data_files``, ``record_count``, ``bytes`` and ``attempts`` (more than 1 when
#: other writers won commit races first). Immutable; defined in Rust.
CommitInfo = _native.CommitInfo


@functools.cache
def _open(properties: tuple[tuple[str, str], ...]) -> _native.Lake:
    ensure_logging()
    return _native.Lake(dict(properties))


def open_lake(settings: LakeSettings | None = None) -> _native.Lake:
    """The native lake for ``settings`` (default: :func:`weir.config.lake_settings`), opened
    once per process and settings."""
    settings = settings or lake_settings()
    return _open(tuple(sorted(settings.properties().items())))


#: What :func:`ensure_dataset` ran for in this process (see :func:`_ensure_key`).
_ensured: set[tuple[Any, ...]] = set()


def _ensure_key(dataset: str, settings: LakeSettings) -> tuple[Any, ...]:
    """The dataset's files as they are now (an edit makes a new key, so the tables are
    ensured again and follow the change) and the lake."""
    files = (project.contract_path(dataset), project.pipeline_sql_path(dataset))
    versions = tuple(path.stat().st_mtime_ns if path else 0 for path in files)
    return (dataset, versions, tuple(sorted(settings.properties().items())))


def ensure_dataset(dataset: str, settings: LakeSettings | None = None) -> list[str]:
    """Creates ``raw.<dataset>``, ``raw.<dataset>_rejected`` and ``raw.<dataset>_dead_letter``
    if missing, and evolves existing ones in one schema change each when the contract or
    pipeline SQL changed them compatibly (a new column, a column made optional, int → long,
    float → double, a wider decimal); returns their names in that order. A breaking change
    raises :class:`weir.IncompatibleChangeError` before any table changes (see
    :func:`contract_changes`)."""
    settings = settings or lake_settings()
    key = _ensure_key(dataset, settings)
    names = open_lake(settings).ensure_dataset(processor(dataset))
    _ensured.add(key)
    return names


def contract_changes(dataset: str, settings: LakeSettings | None = None) -> list[dict[str, Any]]:
    """What the dataset's contract and pipeline SQL (as they are now) would change in its
    tables, without changing anything. One dict per table, in the order
    ``raw.<dataset>_dead_letter``, ``raw.<dataset>_rejected``, ``raw.<dataset>``: ``table``,
    ``exists``, and ``changes``, a list of dicts with ``kind`` (``add``, ``optional``,
    ``promote``: compatible, applied by :func:`ensure_dataset` and therefore by ``weir
    consume``; ``drop``, ``type``, ``partition``: breaking, refused), ``column``,
    ``compatible`` and ``change`` (a sentence).
    """
    settings = settings or lake_settings()
    return [
        {"table": table, "exists": changes is not None, "changes": changes or []}
        for table, changes in open_lake(settings).dataset_changes(processor(dataset))
    ]


def contract_history(dataset: str, settings: LakeSettings | None = None) -> list[dict[str, Any]]:
    """The contract versions ``raw.<dataset>`` was ensured with (by a consumer starting, or
    :func:`ensure_dataset`), oldest first: ``version`` (``sha256:...``, what each snapshot
    summary records as ``weir.contract-version``), ``since`` (UTC datetime), ``schema_id``
    (the table schema then), ``after_snapshot_id`` (the snapshot current then; the
    version's rows come after it), and ``first_snapshot_id`` / ``snapshots``: the first kept
    snapshot committed under the version and how many are kept (``None`` / 0 once expired).
    """
    settings = settings or lake_settings()
    lake = open_lake(settings)
    table = _native.dataset_tables(dataset)[0]
    if table not in lake.table_names():
        return []  # no consumer has started yet
    history = json.loads(lake.table_properties(table).get(CONTRACT_HISTORY_PROPERTY, "[]"))
    kept = pa.table(lake.snapshots(table))
    by_version: dict[str, list[int]] = {}
    for snapshot_id, version in zip(
        kept.column("snapshot_id").to_pylist(),
        kept.column("contract_version").to_pylist(),
        strict=True,
    ):
        if version:
            by_version.setdefault(version, []).append(snapshot_id)
    return [
        {
            "version": entry["version"],
            "since": datetime.fromtimestamp(entry["since_ms"] / 1000, UTC),
            "schema_id": entry["schema_id"],
            "after_snapshot_id": entry.get("after_snapshot_id"),
            "first_snapshot_id": (by_version.get(entry["version"]) or [None])[0],
            "snapshots": len(by_version.get(entry["version"], [])),
        }
        for entry in history
    ]


def dataset_tables(dataset: str) -> list[str]:
    """The names of a dataset's tables: valid rows, rejected records, dead letters
    (``raw.<dataset>``, ``raw.<dataset>_rejected``, ``raw.<dataset>_dead_letter``)."""
    return _native.dataset_tables(dataset)


def _ensure_for(table: str, settings: LakeSettings) -> None:
    dataset = _native.dataset_of(table)
    dataset = dataset if dataset in project.datasets() else None
    if dataset and _ensure_key(dataset, settings) not in _ensured:
        ensure_dataset(dataset, settings)


def _arrow(data: Any) -> Any:
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, list):
        return pa.Table.from_pylist(data)
    try:
        return pa.table(data)
    except (TypeError, ValueError, pa.ArrowInvalid) as e:
        raise TypeError(
            f"cannot append {type(data).__name__}: "
            "pass Arrow data (a pyarrow Table) or a list of dicts"
        ) from e


def append(
    table: str,
    data: Any,
    properties: dict[str, str] | None = None,
    *,
    settings: LakeSettings | None = None,
) -> CommitInfo:
    """Appends ``data`` (a pyarrow Table, anything with ``__arrow_c_stream__``, or a list of
    dicts) to ``table`` in one snapshot. Columns match by name; missing optional columns are
    null and a missing ``ingested_at`` is the commit time. ``properties`` go into the snapshot
    summary. Raises :class:`weir.SchemaMismatchError` if a column does not fit."""
    settings = settings or lake_settings()
    _ensure_for(table, settings)
    return open_lake(settings).write(table, _arrow(data), "append", _properties(properties))


def _properties(properties: dict[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (properties or {}).items()}


def _schema_table(schema: Any) -> pa.Table:
    """An empty table with ``schema`` (a pyarrow Schema, or anything with Arrow data)."""
    if isinstance(schema, pa.Schema):
        return schema.empty_table()
    if hasattr(schema, "__arrow_c_schema__") and not hasattr(schema, "__arrow_c_stream__"):
        return pa.schema(schema).empty_table()
    return pa.table(_arrow(schema)).schema.empty_table()


def create_table(
    table: str,
    schema: Any,
    *,
    partition: list[str] | tuple[str, ...] = (),
    exist_ok: bool = False,
    settings: LakeSettings | None = None,
) -> list[str]:
    """Creates ``table`` (``namespace.table``, e.g. ``marts.fct_orders``; the namespace is
    created too) with the columns of ``schema`` (a ``pyarrow.Schema``, or Arrow data whose
    schema is taken), every column optional, zstd Parquet. ``partition`` lists partition
    fields: ``day(col)``, ``month(col)``, ``year(col)``, ``hour(col)``, ``bucket[N](col)``,
    ``truncate[N](col)`` or a bare column name. With ``exist_ok`` an existing table of the
    same columns and partitioning is kept; a different one raises
    :class:`weir.SchemaMismatchError`. Returns the partition fields as created."""
    settings = settings or lake_settings()
    if isinstance(partition, str):
        partition = [partition]
    return open_lake(settings).create_table(
        table, _schema_table(schema), [str(p) for p in partition], exist_ok
    )


def overwrite(
    table: str,
    data: Any,
    properties: dict[str, str] | None = None,
    *,
    settings: LakeSettings | None = None,
) -> CommitInfo:
    """Replaces the contents of ``table`` with ``data`` in one snapshot (operation
    ``overwrite``): readers see the old rows or the new, never a mix or nothing. Columns match
    by name as in :func:`append`; empty data empties the table. A commit that races other
    writers is retried on their result, so an append that lands first is replaced too and
    one that lands after is kept. ``properties`` go into the snapshot summary."""
    settings = settings or lake_settings()
    _ensure_for(table, settings)
    return open_lake(settings).write(table, _arrow(data), "overwrite", _properties(properties))


def connect(
    settings: LakeSettings | None = None, *, read_only: bool = False, partitions: int | None = None
) -> Any:
    """A ``datafusion.SessionContext`` with the lake registered as catalog ``lake`` and all
    of Weir's UDFs: ``weir.connect().sql("select ... from lake.raw.shop_events")``. Each
    query reads the newest snapshot, tables created after ``connect()`` included; DataFrames
    stay usable after the context is gone. Each dataset's raw tables are created first if
    missing, unless ``read_only`` (what a reader such as the dashboard passes: it sees only
    the tables that exist).

    Scans run on ``partitions`` cores (default: all of them): the files Iceberg keeps for a
    query (partitions and column statistics pruned by its filters) are dealt out by size,
    large ones split by row group; ``EXPLAIN`` shows the ``LakeScanExec`` with the files
    read and pruned."""
    import datafusion

    if partitions is not None and partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")

    settings = settings or lake_settings()
    for dataset in [] if read_only else project.datasets():
        if _ensure_key(dataset, settings) not in _ensured:
            try:
                ensure_dataset(dataset, settings)
            except IncompatibleChangeError as e:
                # Reading stays possible (e.g. to backfill a new dataset from the old tables).
                warnings.warn(f"{e}; its tables are read as they are", stacklevel=2)
    # As datafusion.SessionContext() without a config: information_schema on.
    config = datafusion.SessionConfig().with_information_schema(True)
    if partitions is not None:
        config = config.with_target_partitions(partitions)
    ctx = datafusion.SessionContext(config)
    ctx.register_catalog_provider("lake", open_lake(settings).catalog_provider())
    register_udfs(ctx)
    return ctx


def _millis(moment: datetime | float | int) -> int:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError(
                "as_of needs a timezone-aware datetime (e.g. datetime.now(timezone.utc))"
            )
        return int(moment.timestamp() * 1000)
    return int(moment * 1000)


def snapshot_as_of(
    table: str, moment: datetime | float, *, settings: LakeSettings | None = None
) -> int:
    """The id of the snapshot of ``table`` that was current at ``moment`` (a timezone-aware
    datetime or seconds since the epoch)."""
    return open_lake(settings).snapshot_as_of(table, _millis(moment))


def register_snapshot(
    ctx: Any,
    name: str,
    table: str,
    *,
    snapshot_id: int | None = None,
    as_of: datetime | float | None = None,
    settings: LakeSettings | None = None,
) -> int:
    """Time travel: registers ``table`` as it was at ``snapshot_id`` (or at time ``as_of``)
    under ``name`` in ``ctx``. Returns the snapshot id used."""
    if (snapshot_id is None) == (as_of is None):
        raise ValueError("pass exactly one of snapshot_id or as_of")
    lake = open_lake(settings)
    if snapshot_id is None:
        snapshot_id = lake.snapshot_as_of(table, _millis(as_of))
    ctx.register_table(name, lake.snapshot_provider(table, snapshot_id))
    return snapshot_id


def read(
    table: str, *, snapshot_id: int | None = None, settings: LakeSettings | None = None
) -> pa.Table:
    """The rows of ``table`` (at ``snapshot_id``), read from its Parquet files by Rust;
    e.g. ``weir.transform(weir.lake.read("raw.shop_events"), sql=...)`` re-runs SQL over
    stored data."""
    return pa.table(open_lake(settings).read(table, snapshot_id))


def snapshots(table: str, *, settings: LakeSettings | None = None) -> pa.Table:
    """One row per snapshot: id, parent, commit time, operation, record and file counts,
    the consumer batch's counts (``batch_events``, ``batch_valid``, ``batch_rejected``,
    ``batch_dead_lettered``) and ``contract_version`` where a consumer committed it, and
    the summary (with Weir's own keys, such as checkpoints) as JSON."""
    return pa.table(open_lake(settings).snapshots(table))


def files(
    table: str, *, snapshot_id: int | None = None, settings: LakeSettings | None = None
) -> pa.Table:
    """The live data files of ``table``: path, partition (JSON), record count, size."""
    return pa.table(open_lake(settings).data_files(table, snapshot_id))


def metadata_location(table: str, *, settings: LakeSettings | None = None) -> str:
    """The current metadata file of ``table`` (what DuckDB's ``iceberg_scan`` reads)."""
    return open_lake(settings).metadata_location(table)


def partition_spec(
    table: str, *, settings: LakeSettings | None = None
) -> list[tuple[str, str, str]]:
    """``(partition field, transform, source column)`` of each partition field."""
    return [tuple(f) for f in open_lake(settings).partition_spec(table)]


def tables(*, settings: LakeSettings | None = None) -> list[str]:
    return open_lake(settings).table_names()


def catalog(settings: LakeSettings | None = None) -> Any:
    """pyiceberg's ``SqlCatalog`` over the same metastore and warehouse."""
    from pyiceberg.catalog.sql import SqlCatalog

    settings = settings or lake_settings()
    return SqlCatalog(CATALOG_NAME, **settings.pyiceberg_properties())


def duckdb_connection(settings: LakeSettings | None = None) -> Any:
    """A DuckDB connection with the Iceberg extension loaded offline (from the
    duckdb-ext-iceberg wheel) and S3 credentials set for S3 warehouses:
    ``con.sql(f"select * from iceberg_scan('{weir.lake.metadata_location(t)}')")``."""
    import duckdb

    con = duckdb.connect()
    configure_duckdb(con, settings)
    return con


def configure_duckdb(con: Any, settings: LakeSettings | None = None) -> None:
    """Loads DuckDB's Iceberg extension into ``con`` offline (from the duckdb-ext-* wheels)
    and sets the S3 credentials of an S3 warehouse, so ``iceberg_scan`` reads the lake."""
    import duckdb_ext

    settings = settings or lake_settings()
    folder = str(duckdb_ext.__path__[0]) + "/extensions"
    con.execute(f"SET extension_directory = '{folder}'")
    con.execute("SET autoinstall_known_extensions = false")
    for extension in ("avro", "iceberg", "httpfs") if settings.is_s3 else ("avro", "iceberg"):
        con.execute(f"LOAD {extension}")
    if settings.is_s3:
        s3 = settings.s3
        endpoint = str(s3.get("endpoint", ""))
        options = {
            "TYPE": "s3",
            "KEY_ID": s3.get("access_key_id", ""),
            "SECRET": s3.get("secret_access_key", ""),
            "REGION": s3.get("region", "us-east-1"),
        }
        if endpoint:
            options["ENDPOINT"] = endpoint.split("://", 1)[-1]
            options["USE_SSL"] = "true" if endpoint.startswith("https") else "false"
            options["URL_STYLE"] = "path" if s3.get("path_style_access") else "vhost"
        body = ", ".join(
            f"{k} {v}" if k in ("TYPE", "USE_SSL") else f"{k} '{v}'" for k, v in options.items()
        )
        con.execute(f"CREATE OR REPLACE SECRET weir_s3 ({body})")


@dataclass(frozen=True)
class DuckdbView:
    """What :func:`register_duckdb_views` registered for one table: the snapshot both of its
    views read, and how many data files the ``_new`` view reads of the snapshot's total."""

    table: str
    snapshot_id: int | None
    since_snapshot_id: int | None
    new_files: int
    files: int


def added_files(
    table: str,
    since_snapshot_id: int,
    *,
    snapshot_id: int | None = None,
    settings: LakeSettings | None = None,
) -> list[str] | None:
    """The data files live at ``snapshot_id`` (default: the current snapshot) that were not
    live at ``since_snapshot_id``: what commits since then added (a compaction's rewritten
    files count as added). ``None`` when ``since_snapshot_id`` is no longer in the table's
    history (expired), so a caller falls back to reading everything."""
    lake = open_lake(settings)
    if since_snapshot_id not in pa.table(lake.snapshots(table)).column("snapshot_id").to_pylist():
        return None
    before = set(
        pa.table(lake.data_files(table, since_snapshot_id)).column("file_path").to_pylist()
    )
    now = pa.table(lake.data_files(table, snapshot_id)).column("file_path").to_pylist()
    return [path for path in now if path not in before]


def register_duckdb_views(
    con: Any,
    namespaces: tuple[str, ...] = ("raw",),
    *,
    prefix: str = "lake_",
    since: dict[str, int] | None = None,
    pinned: dict[str, int | None] | None = None,
    settings: LakeSettings | None = None,
) -> dict[str, DuckdbView]:
    """Creates, in DuckDB connection ``con`` (configured with :func:`configure_duckdb`), two
    views per lake table of ``namespaces``, both at the table's current snapshot (or the one
    ``pinned`` names): ``lake_raw.shop_events`` reads all of ``raw.shop_events`` through
    ``iceberg_scan``, and ``lake_raw_new.shop_events`` only the data files added since the
    snapshot ``since`` gives for the table (all of them without one, or when it expired).
    Returns what each view reads."""
    settings = settings or lake_settings()
    lake = open_lake(settings)
    since = since or {}
    registered: dict[str, DuckdbView] = {}
    for table in lake.table_names():
        namespace, _, name = table.partition(".")
        if namespace not in namespaces:
            continue
        # The snapshot first, then the metadata file (which holds it and maybe newer ones):
        # both views read exactly that snapshot, whatever commits land meanwhile.
        if pinned is not None and table in pinned:
            snapshot = pinned[table]
        else:
            ids = pa.table(lake.snapshots(table)).column("snapshot_id").to_pylist()
            snapshot = ids[-1] if ids else None
        location = lake.metadata_location(table).replace("'", "''")
        scan = f"iceberg_scan('{location}'" + (
            f", snapshot_from_id = {snapshot})" if snapshot is not None else ")"
        )
        files = (
            pa.table(lake.data_files(table, snapshot)).column("file_path").to_pylist()
            if snapshot is not None
            else []
        )
        added = None
        if snapshot is not None and table in since:
            added = added_files(table, since[table], snapshot_id=snapshot, settings=settings)
        new = files if added is None else added
        if new and len(new) < len(files):
            # By name against the table's own (empty) scan: files written before a column
            # was added read it as null, and a promoted column reads with its wider type.
            listed = ", ".join("'" + path.replace("'", "''") + "'" for path in new)
            new_scan = (
                f"SELECT * FROM {scan} WHERE false UNION ALL BY NAME "
                f"SELECT * FROM read_parquet([{listed}], union_by_name = true)"
            )
        elif new:
            new_scan = f"SELECT * FROM {scan}"
        else:
            new_scan = f"SELECT * FROM {scan} WHERE false"
        for schema, body in (
            (f"{prefix}{namespace}", f"SELECT * FROM {scan}"),
            (f"{prefix}{namespace}_new", new_scan),
        ):
            con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS {body}')
        registered[table] = DuckdbView(
            table, snapshot, since.get(table) if added is not None else None, len(new), len(files)
        )
    return registered


def maintain(
    tables: list[str] | None = None,
    *,
    compact: bool = True,
    expire: bool = True,
    retain_last: int | None = None,
    max_snapshot_age: timedelta | None = None,
    settings: LakeSettings | None = None,
) -> list[dict[str, Any]]:
    """Keeps tables small and fast. Default tables: every table in the lake.

    By default this runs the maintenance policy (``[lake.maintenance]``, the one consumers
    run in the background every ``interval_seconds``) once per table: size-tiered compaction
    of small files, manifest merging, snapshot expiry that keeps the time-travel window (and
    one snapshot an hour for ``history_hours``) and the consumer checkpoints, and deletion of
    orphan files older than ``orphan_age_hours``; one report per table (``"step":
    "policy"``).

    Given ``retain_last`` or ``max_snapshot_age``, or with ``compact`` or ``expire`` off, it
    runs the explicit steps instead: compaction of all small files per partition, then
    expiry of snapshots older than ``max_snapshot_age`` (default 7 days) beyond the newest
    ``retain_last`` (default 10), deleting files only they used; one report per table and
    step."""
    lake = open_lake(settings)
    reports: list[dict[str, Any]] = []
    explicit = retain_last is not None or max_snapshot_age is not None
    for table in tables or lake.table_names():
        if compact and expire and not explicit:
            reports.append({"step": "policy", **lake.maintain(table)})
            continue
        if compact:
            started = time.perf_counter()
            report = lake.compact(table)
            reports.append(
                {"step": "compact", "seconds": round(time.perf_counter() - started, 3), **report}
            )
        if expire:
            age = timedelta(days=7) if max_snapshot_age is None else max_snapshot_age
            cutoff = datetime.now(UTC) - age
            started = time.perf_counter()
            report = lake.expire_snapshots(
                table, _millis(cutoff), 10 if retain_last is None else retain_last, True
            )
            reports.append(
                {"step": "expire", "seconds": round(time.perf_counter() - started, 3), **report}
            )
    return reports


def delete_orphan_files(
    tables: list[str] | None = None,
    *,
    older_than: timedelta = timedelta(hours=6),
    settings: LakeSettings | None = None,
) -> list[dict[str, Any]]:
    """Deletes files under each table's ``data/`` and ``metadata/`` folders that no snapshot
    or metadata file references and that are older than ``older_than`` (younger ones may
    belong to a commit still in flight). Default tables: every table in the lake."""
    lake = open_lake(settings)
    seconds = older_than.total_seconds()
    return [lake.delete_orphan_files(table, seconds) for table in tables or lake.table_names()]
