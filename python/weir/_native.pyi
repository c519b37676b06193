"""Type stub of the Rust extension module ``weir._native`` (rust/python). Use ``weir``."""

from os import PathLike
from typing import Any

import pyarrow as pa

__version__: str
SUPPORTED_FORMATS: list[str]
EXCEPTION_CLASSES: list[str]
CONTRACT_HISTORY_PROPERTY: str
JOB_STATES: list[str]
FINAL_JOB_STATES: list[str]

def dataset_tables(dataset: str) -> list[str]: ...
def dataset_of(table: str) -> str | None: ...

class CommitInfo:
    table: str
    snapshot_id: int | None
    data_files: list[str]
    record_count: int
    bytes: int
    attempts: int

class RecordReceipt:
    shard_id: str
    sequence_number: str
    events: int
    bytes: int

class Publication:
    job_id: str
    dataset: str
    stream: str
    events: int
    input_bytes: int
    record_bytes: int
    records: list[RecordReceipt]

class Job:
    job_id: str
    dataset: str
    status: str
    received: int
    records: int | None
    valid: int | None
    rejected: int | None
    snapshot_ids: list[int]
    error: str | None
    created_at_ms: int
    updated_at_ms: int
    contract_versions: list[str]
    final: bool

class BatchMetrics:
    batch_id: str
    consumer_id: str
    dataset: str
    status: str
    started_at_ms: int
    shards: list[str]
    source_records: int
    events: int
    valid: int
    rejected: int
    dead_lettered: int
    bytes: int
    attempts: int
    read_ms: float
    process_ms: float
    commit_ms: float
    batch_ms: float
    lag_ms: int
    snapshot_id: int | None
    error: str | None

_Source = tuple[str, str | int | float | bool, str]

class LakeConfig:
    CATALOG_NAME: str
    def __init__(self, sources: list[_Source]) -> None: ...
    @staticmethod
    def from_properties(properties: dict[str, str]) -> LakeConfig: ...
    metastore: str
    warehouse: str
    s3: dict[str, Any]
    write: dict[str, int]
    maintenance: dict[str, Any]
    commit_attempts: int
    source: str
    is_s3: bool
    is_postgres: bool
    def properties(self) -> dict[str, str]: ...
    def sqlite_path(self) -> str | None: ...
    def sqlalchemy_url(self) -> str: ...
    def pyiceberg_properties(self) -> dict[str, str]: ...

class KinesisConfig:
    def __init__(self, sources: list[_Source] = ...) -> None: ...
    @staticmethod
    def from_properties(properties: dict[str, str]) -> KinesisConfig: ...
    endpoint: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    stream_prefix: str
    shards: int
    source: str
    is_aws: bool
    def is_local(self) -> bool: ...
    def local_port(self) -> int: ...
    def properties(self) -> dict[str, str]: ...
    def stream_name(self, dataset: str) -> str: ...

class ArrowTable:
    """Record batches exported through the Arrow PyCapsule interface; wrap with pa.table()."""

    @property
    def num_rows(self) -> int: ...
    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

_Tables3 = tuple[ArrowTable, ArrowTable, ArrowTable]

class Processor:
    def __init__(
        self,
        contract_path: str | PathLike[str],
        sql_path: str | PathLike[str] | None = None,
        sql_text: str | None = None,
        sql_origin: str = "<sql>",
    ) -> None: ...
    @property
    def dataset(self) -> str: ...
    @property
    def contract_version(self) -> str: ...
    @property
    def has_sql(self) -> bool: ...
    def contract_schema(self) -> ArrowTable: ...
    def parse(self, data: bytes, format: str) -> ArrowTable: ...
    def validate_bytes(self, data: bytes, format: str) -> _Tables3: ...
    def validate_table(self, table: pa.Table | Any) -> _Tables3: ...
    def transform(self, table: pa.Table | Any) -> ArrowTable: ...
    def process(
        self, data: bytes, format: str
    ) -> tuple[ArrowTable, ArrowTable, ArrowTable, dict[str, float]]: ...

class ScalarUdf:
    @property
    def name(self) -> str: ...
    def __datafusion_scalar_udf__(self) -> object: ...

def udfs() -> list[ScalarUdf]: ...
def init_logging(level: str | None = None) -> bool: ...

class LakeCatalog:
    def __datafusion_catalog_provider__(self, session: Any) -> object: ...

class DataFusionTable:
    def __datafusion_table_provider__(self, session: Any) -> object: ...

class Lake:
    def __init__(self, properties: dict[str, str]) -> None: ...
    def ensure_dataset(self, processor: Processor) -> list[str]: ...
    def dataset_changes(
        self, processor: Processor
    ) -> list[tuple[str, list[dict[str, Any]] | None]]: ...
    def table_names(self) -> list[str]: ...
    def write(
        self,
        table: str,
        data: Any,
        mode: str = "append",
        properties: dict[str, str] | None = None,
    ) -> CommitInfo: ...
    def create_table(
        self, table: str, data: Any, partition: list[str] = ..., exist_ok: bool = False
    ) -> list[str]: ...
    def metadata_location(self, table: str) -> str: ...
    def table_properties(self, table: str) -> dict[str, str]: ...
    def partition_spec(self, table: str) -> list[tuple[str, str, str]]: ...
    def snapshots(self, table: str) -> ArrowTable: ...
    def data_files(self, table: str, snapshot_id: int | None = None) -> ArrowTable: ...
    def read(self, table: str, snapshot_id: int | None = None) -> ArrowTable: ...
    def snapshot_as_of(self, table: str, timestamp_ms: int) -> int: ...
    def current_summary(self, table: str) -> dict[str, str]: ...
    def compact(
        self, table: str, small_file_bytes: int | None = None, min_files: int = 2
    ) -> dict[str, Any]: ...
    def expire_snapshots(
        self, table: str, older_than_ms: int, retain_last: int = 1, delete_files: bool = True
    ) -> dict[str, Any]: ...
    def maintain(self, table: str) -> dict[str, Any]: ...
    def delete_orphan_files(self, table: str, min_age_s: float) -> dict[str, Any]: ...
    def catalog_provider(self) -> LakeCatalog: ...
    def snapshot_provider(self, table: str, snapshot_id: int) -> DataFusionTable: ...

def kinesis_table(properties: dict[str, str], stream: str) -> DataFusionTable: ...

class Producer:
    def __init__(
        self,
        properties: dict[str, str],
        lake: Lake | None = None,
        zstd_level: int = 1,
        max_attempts: int = 10,
        linger_ms: int = 0,
    ) -> None: ...
    def publish(
        self, dataset: str, data: bytes, format: str = "ndjson", job_id: str | None = None
    ) -> Publication: ...
    def ensure_stream(self, dataset: str) -> str: ...
    def list_streams(self) -> list[str]: ...

class IngestService:
    def __init__(
        self, processors: list[Processor], producer: Producer, max_violations: int = 1000
    ) -> None: ...
    def fileno(self) -> int: ...
    def submit(
        self, dataset: str, body: bytes, format: str, strict: bool, job_id: str | None = None
    ) -> int: ...
    def completions(self) -> list[tuple[int, bool, Any]]: ...

class Consumer:
    def __init__(
        self,
        lake: Lake,
        properties: dict[str, str],
        processor: Processor,
        options: dict[str, Any] | None = None,
    ) -> None: ...
    @property
    def stream(self) -> str: ...
    def list_shards(self) -> list[str]: ...
    def assign(self, shard_ids: list[str]) -> None: ...
    def balance(self) -> list[str]: ...
    def release(self) -> None: ...
    def shard_ids(self) -> list[str]: ...
    def replay(self, since_ms: int | None = None, dry_run: bool = False) -> dict[str, Any]: ...
    def run_batch(self) -> BatchMetrics | None: ...

class OpsTables:
    def __init__(self, lake: Lake) -> None: ...
    def job(self, job_id: str) -> Job | None: ...
    def jobs(
        self, dataset: str | None = None, since_ms: int = 0, limit: int = 1000
    ) -> list[Job]: ...
    def batches(self, dataset: str | None = None, since_ms: int = 0) -> list[BatchMetrics]: ...
    def prune(self, before_ms: int) -> dict[str, int]: ...
