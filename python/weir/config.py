"""Weir's settings: where the lake lives (metastore and warehouse) and how it is written, and
which Kinesis-API server carries the records.

Read in this order, later sources winning:

1. defaults: a SQLite metastore ``<state>/metastore.db`` and a warehouse folder
   ``<state>/warehouse``, where ``<state>`` is ``$WEIR_STATE_DIR`` or ``<home>/.weir``;
2. a TOML file: ``$WEIR_CONFIG``, else ``<home>/weir.toml`` when it exists;
3. ``WEIR_*`` environment variables.

Example ``weir.toml`` (every key optional)::

    [lake]
    metastore = "postgresql://weir:secret@db.internal:5432/weir"   # or a SQLite file path
    warehouse = "s3://analytics/weir"                               # or a local folder

    [lake.s3]
    endpoint = "http://127.0.0.1:9000"   # S3-compatible stores; omit for AWS
    region = "us-east-1"
    access_key_id = "..."
    secret_access_key = "..."
    path_style_access = true

    [lake.write]
    target_file_size_bytes = 134217728
    row_group_rows = 131072
    zstd_level = 3

    [kinesis]
    endpoint = "http://127.0.0.1:4567"   # the local server `weir up` starts; "" for AWS
    region = "us-east-1"
    access_key_id = "weir"               # any value works locally
    secret_access_key = "weir"
    stream_prefix = "weir-"              # dataset X is carried by the stream "weir-X"
    shards = 2                           # shards of the streams Weir creates

Environment variables: ``WEIR_METASTORE``, ``WEIR_WAREHOUSE``, ``WEIR_S3_ENDPOINT``,
``WEIR_S3_REGION``, ``WEIR_S3_ACCESS_KEY_ID``, ``WEIR_S3_SECRET_ACCESS_KEY``,
``WEIR_S3_SESSION_TOKEN``, ``WEIR_S3_PATH_STYLE_ACCESS``; for S3 warehouses the standard
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and ``AWS_REGION``
are used when the ``WEIR_S3_*`` ones are not set. Kinesis: ``WEIR_KINESIS_ENDPOINT``,
``WEIR_KINESIS_REGION``, ``WEIR_KINESIS_ACCESS_KEY_ID``, ``WEIR_KINESIS_SECRET_ACCESS_KEY``,
``WEIR_KINESIS_STREAM_PREFIX``, ``WEIR_KINESIS_SHARDS``; with AWS (empty endpoint) the keys
and region fall back to the ``AWS_*`` variables. See ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from weir import project
from weir.exceptions import ConfigError

_S3_KEYS = (
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "path_style_access",
)
_WRITE_KEYS = ("target_file_size_bytes", "row_group_rows", "zstd_level")
_KINESIS_KEYS = (
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "stream_prefix",
    "shards",
)
_LOCAL_HOSTS = ("127.0.0.1", "localhost")
# Kinesis stream names: 1 to 128 of these characters.
_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
_AWS_FALLBACKS = {
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
    "region": "AWS_REGION",
}


def _error(setting: str, message: str) -> ConfigError:
    error = ConfigError(f"{setting}: {message}")
    error.setting = setting
    return error


@dataclass(frozen=True)
class LakeSettings:
    """Where the Iceberg catalog and data live. ``properties()`` is what the Rust side reads."""

    metastore: str
    warehouse: str
    s3: Mapping[str, str] = field(default_factory=dict)
    write: Mapping[str, int] = field(default_factory=dict)
    source: str = "defaults"

    @property
    def is_s3(self) -> bool:
        return self.warehouse.startswith(("s3://", "s3a://"))

    @property
    def is_postgres(self) -> bool:
        return self.metastore.startswith(("postgres://", "postgresql://"))

    def properties(self) -> dict[str, str]:
        """Settings as the string properties ``weir._native.Lake`` takes."""
        props = {"metastore": self.metastore, "warehouse": self.warehouse}
        for key, value in self.s3.items():
            props[f"s3.{key.replace('_', '-')}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        for key, value in self.write.items():
            props[f"write.{key.replace('_', '-')}"] = str(value)
        return props

    def sqlite_path(self) -> Path | None:
        """The SQLite metastore file, or ``None`` for PostgreSQL."""
        if self.is_postgres:
            return None
        text = self.metastore.removeprefix("sqlite://").removeprefix("sqlite:").split("?")[0]
        return Path(text)

    def sqlalchemy_url(self) -> str:
        """The metastore as an SQLAlchemy URL (what pyiceberg's SqlCatalog takes)."""
        if self.is_postgres:
            rest = self.metastore.split("://", 1)[1]
            return f"postgresql+psycopg2://{rest}"
        return f"sqlite:///{self.sqlite_path()}"

    def pyiceberg_properties(self) -> dict[str, str]:
        """Properties for ``pyiceberg.catalog.sql.SqlCatalog(weir.lake.CATALOG_NAME, **props)``."""
        props = {"uri": self.sqlalchemy_url(), "warehouse": self.warehouse}
        names = {
            "endpoint": "s3.endpoint",
            "region": "s3.region",
            "access_key_id": "s3.access-key-id",
            "secret_access_key": "s3.secret-access-key",
            "session_token": "s3.session-token",
        }
        for key, value in self.s3.items():
            if key in names:
                props[names[key]] = str(value)
        if self.s3.get("path_style_access"):
            props["s3.force-virtual-addressing"] = "false"
        return props


def state_dir() -> Path:
    """Local state (metastore, warehouse, logs): ``$WEIR_STATE_DIR`` or ``<home>/.weir``."""
    configured = os.environ.get("WEIR_STATE_DIR")
    return Path(configured).expanduser().resolve() if configured else project.home() / ".weir"


def config_file() -> Path | None:
    configured = os.environ.get("WEIR_CONFIG")
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise _error("WEIR_CONFIG", f"{path} does not exist")
        return path
    default = project.home() / "weir.toml"
    return default if default.is_file() else None


def _read_document(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _error(str(path), f"not valid TOML: {e}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    lake = _read_document(path).get("lake", {})
    allowed = {"metastore", "warehouse", "s3", "write"}
    for key in lake:
        if key not in allowed:
            raise _error(
                f"{path}: lake.{key}", f"unknown setting (known: {', '.join(sorted(allowed))})"
            )
    for section, keys in (("s3", _S3_KEYS), ("write", _WRITE_KEYS)):
        for key in lake.get(section, {}):
            if key not in keys:
                raise _error(
                    f"{path}: lake.{section}.{key}", f"unknown setting (known: {', '.join(keys)})"
                )
    return lake


def _bool(setting: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise _error(setting, f"expected true or false, got {text!r}")


def lake_settings(env: Mapping[str, str] | None = None) -> LakeSettings:
    """The lake settings from defaults, ``weir.toml`` and the environment (see module doc)."""
    env = os.environ if env is None else env
    state = state_dir()
    metastore = str(state / "metastore.db")
    warehouse = str(state / "warehouse")
    s3: dict[str, Any] = {}
    write: dict[str, int] = {}
    sources = ["defaults"]
    path = config_file()
    if path is not None:
        lake = _read_toml(path)
        metastore = lake.get("metastore", metastore)
        warehouse = lake.get("warehouse", warehouse)
        s3.update(lake.get("s3", {}))
        write.update(lake.get("write", {}))
        sources.append(str(path))
    if env.get("WEIR_METASTORE"):
        metastore, sources = env["WEIR_METASTORE"], [*sources, "WEIR_METASTORE"]
    if env.get("WEIR_WAREHOUSE"):
        warehouse, sources = env["WEIR_WAREHOUSE"], [*sources, "WEIR_WAREHOUSE"]
    for key in _S3_KEYS:
        variable = f"WEIR_S3_{key.upper()}"
        if env.get(variable):
            s3[key] = (
                _bool(variable, env[variable]) if key == "path_style_access" else env[variable]
            )
    if warehouse.startswith(("s3://", "s3a://")):
        for key, variable in _AWS_FALLBACKS.items():
            if key not in s3 and env.get(variable):
                s3[key] = env[variable]
        if "region" not in s3 and env.get("AWS_DEFAULT_REGION"):
            s3["region"] = env["AWS_DEFAULT_REGION"]
    if not warehouse.startswith(("s3://", "s3a://")) and "://" not in warehouse:
        warehouse = str(Path(warehouse).expanduser().resolve())
    if not metastore.startswith(("postgres://", "postgresql://", "sqlite:")):
        metastore = str(Path(metastore).expanduser().resolve())
    return LakeSettings(metastore, warehouse, s3, write, source=" < ".join(sources))


@dataclass(frozen=True)
class KinesisSettings:
    """The Kinesis-API server that carries records, and how Weir names and sizes its streams.

    ``endpoint`` is the server's URL; ``None`` means AWS itself (the SDK picks the regional
    endpoint). ``properties()`` is what the Rust side reads.
    """

    endpoint: str | None = "http://127.0.0.1:4567"
    region: str = "us-east-1"
    access_key_id: str | None = "weir"
    secret_access_key: str | None = field(default="weir", repr=False)
    stream_prefix: str = "weir-"
    shards: int = 2
    source: str = "defaults"

    @property
    def is_aws(self) -> bool:
        return not self.endpoint

    def is_local(self) -> bool:
        """Whether the endpoint is on this machine's loopback (the server ``weir up`` runs)."""
        return bool(self.endpoint) and urlsplit(self.endpoint).hostname in _LOCAL_HOSTS

    def local_port(self) -> int:
        """The endpoint's port (the scheme's default when the URL has none)."""
        if not self.endpoint:
            raise _error("kinesis.endpoint", "AWS (no endpoint) has no local port")
        parts = urlsplit(self.endpoint)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def stream_name(self, dataset: str) -> str:
        """The stream that carries ``dataset``: ``<stream_prefix><dataset>``."""
        name = f"{self.stream_prefix}{dataset}"
        if not _STREAM_NAME.fullmatch(name):
            raise _error(
                "kinesis.stream_prefix",
                f"stream name {name!r} for dataset {dataset!r} is not a Kinesis stream name "
                "(1 to 128 of a-z, A-Z, 0-9, '_', '.', '-')",
            )
        return name

    def properties(self) -> dict[str, str]:
        """Settings as the ``kinesis.*`` string properties the Rust side takes. The endpoint
        is left out for AWS, and the keys when none are configured (AWS's credential chain)."""
        props: dict[str, str] = {}
        if self.endpoint:
            props["kinesis.endpoint"] = self.endpoint
        props["kinesis.region"] = self.region
        if self.access_key_id:
            props["kinesis.access-key-id"] = self.access_key_id
        if self.secret_access_key:
            props["kinesis.secret-access-key"] = self.secret_access_key
        props["kinesis.stream-prefix"] = self.stream_prefix
        props["kinesis.shards"] = str(self.shards)
        return props


def _read_kinesis_toml(path: Path) -> dict[str, Any]:
    kinesis = _read_document(path).get("kinesis", {})
    if not isinstance(kinesis, dict):
        raise _error(f"{path}: kinesis", "expected a table ([kinesis])")
    for key in kinesis:
        if key not in _KINESIS_KEYS:
            raise _error(
                f"{path}: kinesis.{key}", f"unknown setting (known: {', '.join(_KINESIS_KEYS)})"
            )
    return kinesis


def _shards(setting: str, value: object) -> int:
    text = value.strip() if isinstance(value, str) else value
    try:
        if isinstance(text, bool) or not isinstance(text, int | str):
            raise ValueError
        shards = int(text)
    except ValueError:
        raise _error(setting, f"expected a whole number of shards, got {value!r}") from None
    if shards < 1:
        raise _error(setting, f"a stream needs at least 1 shard, got {shards}")
    return shards


def _endpoint(setting: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _error(setting, f"expected a URL or an empty string (AWS), got {value!r}")
    text = value.strip().rstrip("/")
    if not text:
        return None
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise _error(setting, f"bad port in {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _error(
            setting,
            f"expected http://host:port or https://host:port (or '' for AWS), got {value!r}",
        )
    return text


def kinesis_settings(env: Mapping[str, str] | None = None) -> KinesisSettings:
    """The Kinesis settings from defaults, ``weir.toml`` (``[kinesis]``) and the environment
    (``WEIR_KINESIS_*``), later sources winning. An empty endpoint means AWS: then the keys and
    the region not configured for Weir come from ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY`` and ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), and no keys at
    all leaves them to AWS's credential chain."""
    env = os.environ if env is None else env
    defaults = KinesisSettings()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}  # where each configured value came from, for messages
    sources = ["defaults"]
    path = config_file()
    if path is not None:
        table = _read_kinesis_toml(path)
        for key, value in table.items():
            values[key], origins[key] = value, f"{path}: kinesis.{key}"
        if table:
            sources.append(str(path))
    for key in _KINESIS_KEYS:
        variable = f"WEIR_KINESIS_{key.upper()}"
        # An empty endpoint variable is meaningful (AWS); other empty variables are unset.
        if env.get(variable) or (key == "endpoint" and variable in env):
            values[key], origins[key] = env[variable], variable
            sources.append(variable)

    endpoint = defaults.endpoint
    if "endpoint" in values:
        endpoint = _endpoint(origins["endpoint"], values["endpoint"])
    shards = defaults.shards
    if "shards" in values:
        shards = _shards(origins["shards"], values["shards"])
    text: dict[str, str | None] = {}
    for key in ("region", "access_key_id", "secret_access_key", "stream_prefix"):
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise _error(origins[key], f"expected a string, got {value!r}")
        text[key] = value
    if endpoint is None:  # AWS: Weir's local defaults do not apply
        for key, variable in _AWS_FALLBACKS.items():
            if key in text and text[key] is None and env.get(variable):
                text[key] = env[variable]
        if text["region"] is None and env.get("AWS_DEFAULT_REGION"):
            text["region"] = env["AWS_DEFAULT_REGION"]
    else:
        for key in ("access_key_id", "secret_access_key"):
            if text[key] is None:
                text[key] = getattr(defaults, key)
    region = text["region"] or defaults.region
    prefix = defaults.stream_prefix if text["stream_prefix"] is None else text["stream_prefix"]
    if not re.fullmatch(r"[a-zA-Z0-9_.-]{0,120}", prefix):
        raise _error(
            origins["stream_prefix"],
            f"{prefix!r} cannot start a Kinesis stream name (up to 120 of a-z, A-Z, 0-9, "
            "'_', '.', '-')",
        )
    return KinesisSettings(
        endpoint=endpoint,
        region=region,
        access_key_id=text["access_key_id"],
        secret_access_key=text["secret_access_key"],
        stream_prefix=prefix,
        shards=shards,
        source=" < ".join(dict.fromkeys(sources)),
    )


_API_KEYS = ("key_hashes", "max_body_bytes", "host", "port", "workers")


@dataclass(frozen=True)
class ApiSettings:
    """The ingest API (``weir serve``): who may call it and how it listens.

    ``key_hashes`` are ``sha256:<hex>`` digests of the accepted API keys; keys themselves are
    never stored. ``weir api-key create`` makes a key, prints it once and appends its hash to
    ``<state>/api-keys``, which is read together with the configured hashes.
    """

    key_hashes: tuple[str, ...] = ()
    max_body_bytes: int = 10 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    source: str = "defaults"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def api_keys_file() -> Path:
    """Hashes of the keys made by ``weir api-key create``, one per line."""
    return state_dir() / "api-keys"


def _key_hash(setting: str, value: str) -> str:
    text = value.strip().lower()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", text):
        raise _error(setting, f"expected sha256:<64 hex digits>, got {value[:20]!r}...")
    return text


def _positive(setting: str, value: object) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise _error(setting, f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise _error(setting, f"expected at least 1, got {number}")
    return number


def api_settings(env: Mapping[str, str] | None = None) -> ApiSettings:
    """The API settings from defaults, ``weir.toml`` (``[api]``), ``WEIR_API_*`` variables
    (``WEIR_API_KEY_HASHES`` comma-separated, ``WEIR_API_MAX_BODY_BYTES``, ``WEIR_API_HOST``,
    ``WEIR_API_PORT``, ``WEIR_API_WORKERS``) and the key file of ``weir api-key create``."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    sources = ["defaults"]
    path = config_file()
    if path is not None:
        table = _read_document(path).get("api", {})
        if not isinstance(table, dict):
            raise _error(f"{path}: api", "expected a table ([api])")
        for key, value in table.items():
            if key not in _API_KEYS:
                raise _error(
                    f"{path}: api.{key}", f"unknown setting (known: {', '.join(_API_KEYS)})"
                )
            values[key], origins[key] = value, f"{path}: api.{key}"
        if table:
            sources.append(str(path))
    for key in _API_KEYS:
        variable = f"WEIR_API_{key.upper()}"
        if env.get(variable):
            value: Any = env[variable]
            if key == "key_hashes":
                value = [part for part in value.split(",") if part.strip()]
            values[key], origins[key] = value, variable
            sources.append(variable)
    hashes = [
        _key_hash(origins["key_hashes"], h)
        for h in (values.get("key_hashes") or [])
        if isinstance(h, str)
    ]
    keys_file = api_keys_file()
    if keys_file.is_file():
        for number, line in enumerate(keys_file.read_text().splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                hashes.append(_key_hash(f"{keys_file}:{number}", line))
    defaults = ApiSettings()
    return ApiSettings(
        key_hashes=tuple(dict.fromkeys(hashes)),
        max_body_bytes=_positive(origins["max_body_bytes"], values["max_body_bytes"])
        if "max_body_bytes" in values
        else defaults.max_body_bytes,
        host=str(values.get("host", defaults.host)),
        port=_positive(origins["port"], values["port"]) if "port" in values else defaults.port,
        workers=_positive(origins["workers"], values["workers"])
        if "workers" in values
        else defaults.workers,
        source=" < ".join(dict.fromkeys(sources)),
    )
