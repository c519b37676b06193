"""Weir's settings: where the lake lives (metastore and warehouse) and how it is written.

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

Environment variables: ``WEIR_METASTORE``, ``WEIR_WAREHOUSE``, ``WEIR_S3_ENDPOINT``,
``WEIR_S3_REGION``, ``WEIR_S3_ACCESS_KEY_ID``, ``WEIR_S3_SECRET_ACCESS_KEY``,
``WEIR_S3_SESSION_TOKEN``, ``WEIR_S3_PATH_STYLE_ACCESS``; for S3 warehouses the standard
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN`` and ``AWS_REGION``
are used when the ``WEIR_S3_*`` ones are not set. See ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise _error(str(path), f"not valid TOML: {e}") from None
    lake = data.get("lake", {})
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
