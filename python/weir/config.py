"""Weir's settings: where the lake lives (metastore and warehouse) and how it is written,
which Kinesis-API server carries the records, the ingest API, the dashboard's port, and where
data-quality alerts go.

Read in this order, later sources winning:

1. defaults: a SQLite metastore ``<state>/metastore.db`` and a warehouse folder
   ``<state>/warehouse``, where ``<state>`` is ``$WEIR_STATE_DIR`` or ``<home>/.weir``; the
   local Kinesis server ``weir up`` starts;
2. a TOML file: ``$WEIR_CONFIG``, else ``<home>/weir.toml`` when it exists (tables
   ``[lake]``, ``[lake.s3]``, ``[lake.write]``, ``[lake.maintenance]``, ``[kinesis]``,
   ``[api]``, ``[dashboard]``, ``[alerts]``);
3. ``WEIR_*`` environment variables (an empty one counts as unset, except
   ``WEIR_KINESIS_ENDPOINT``, where empty means AWS), then the ``AWS_*`` ones where they
   apply.

The lake and Kinesis settings have one validator, in Rust (``weir._native.LakeConfig``,
``weir._native.KinesisConfig``; ``rust/planner/src/lake/config.rs`` and
``rust/planner/src/stream/config.rs``), which also holds every default. This module only
collects what the user wrote as ``(key, value, origin)`` sources, the origin being where it
was written (``WEIR_KINESIS_SHARDS``, ``/home/x/weir.toml: kinesis.shards``), hands them over,
and reads the results through getters; a bad value is a :class:`weir.ConfigError` whose
``setting`` is that origin, the same error the Rust entry points raise. The keys, variables
and defaults are listed in ``docs/configuration.md``. Example ``weir.toml``::

    [lake]
    metastore = "postgresql://weir:secret@db.internal:5432/weir"   # or a SQLite file path
    warehouse = "s3://analytics/weir"                               # or a local folder

    [lake.s3]
    region = "eu-west-1"

    [kinesis]
    endpoint = ""            # AWS itself
    region = "eu-west-1"
    stream_prefix = "prod-"  # dataset X is carried by the stream "prod-X"
    shards = 8
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weir import _native, project
from weir.exceptions import ConfigError

#: A configured value: (setting key, value as written, where it was written).
Source = tuple[str, object, str]

# Environment variables and the settings they set (the keys Rust reads).
_LAKE_VARIABLES = {
    "WEIR_METASTORE": "metastore",
    "WEIR_WAREHOUSE": "warehouse",
    "WEIR_S3_ENDPOINT": "s3.endpoint",
    "WEIR_S3_REGION": "s3.region",
    "WEIR_S3_ACCESS_KEY_ID": "s3.access-key-id",
    "WEIR_S3_SECRET_ACCESS_KEY": "s3.secret-access-key",
    "WEIR_S3_SESSION_TOKEN": "s3.session-token",
    "WEIR_S3_PATH_STYLE_ACCESS": "s3.path-style-access",
}
_KINESIS_VARIABLES = {
    "WEIR_KINESIS_ENDPOINT": "kinesis.endpoint",
    "WEIR_KINESIS_REGION": "kinesis.region",
    "WEIR_KINESIS_ACCESS_KEY_ID": "kinesis.access-key-id",
    "WEIR_KINESIS_SECRET_ACCESS_KEY": "kinesis.secret-access-key",
    "WEIR_KINESIS_SESSION_TOKEN": "kinesis.session-token",
    "WEIR_KINESIS_STREAM_PREFIX": "kinesis.stream-prefix",
    "WEIR_KINESIS_SHARDS": "kinesis.shards",
}
# Rust decides whether these apply (S3 warehouses, the AWS Kinesis endpoint).
_AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID": "aws.access-key-id",
    "AWS_SECRET_ACCESS_KEY": "aws.secret-access-key",
    "AWS_SESSION_TOKEN": "aws.session-token",
    "AWS_REGION": "aws.region",
    "AWS_DEFAULT_REGION": "aws.default-region",
}


def _error(setting: str, message: str) -> ConfigError:
    error = ConfigError(f"{setting}: {message}")
    error.setting = setting
    return error


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


def _flatten(value: object, key: str, path: Path) -> Iterator[Source]:
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _flatten(item, f"{key}.{name}", path)
    else:
        yield key, value, f"{path}: {key}"


def _toml_sources(table: str) -> list[Source]:
    """Every value under ``[table]`` of the settings file, keyed as written there."""
    path = config_file()
    if path is None:
        return []
    document = _read_document(path)
    return list(_flatten(document[table], table, path)) if table in document else []


def _variables(env: Mapping[str, str], variables: Mapping[str, str]) -> list[Source]:
    return [
        (key, env[variable], variable) for variable, key in variables.items() if env.get(variable)
    ]


def _keyword_sources(prefix: str, values: Mapping[str, object]) -> list[Source]:
    """Keyword arguments as sources; a mapping value (``s3={...}``) holds one per key."""
    sources: list[Source] = []
    for name, value in values.items():
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for sub, item in items:
            key = f"{prefix}{name}" if sub is None else f"{prefix}{name}.{sub}"
            sources.append((key, item, key))
    return sources


class _Settings:
    """Settings validated by a Rust class; immutable, equal when their properties are."""

    __slots__ = ("_config", "_sources")
    _native_class: Any
    _prefix: str

    _config: Any
    _sources: tuple[Source, ...]

    @classmethod
    def _from_sources(cls, sources: Iterable[Source]) -> Any:
        settings = cls.__new__(cls)
        settings._set(sources)
        return settings

    def _set(self, sources: Iterable[Source]) -> None:
        sources = tuple(sources)
        object.__setattr__(self, "_config", self._native_class(list(sources)))
        object.__setattr__(self, "_sources", sources)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use replace()")

    def replace(self, **changes: object) -> Any:
        """A copy with ``changes`` (keyword names as the constructor takes them) applied on
        top, checked again."""
        return self._from_sources([*self._sources, *_keyword_sources(self._prefix, changes)])

    @property
    def source(self) -> str:
        """Where the values came from: ``defaults < <file> < <variable> ...``."""
        return self._config.source

    def properties(self) -> dict[str, str]:
        """The settings as the string properties the Rust side takes."""
        return self._config.properties()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.properties() == other.properties()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.properties().items())))

    def __repr__(self) -> str:
        fields = repr(self._config).partition("(")[2]  # secrets left out by Rust
        return f"{type(self).__name__}({fields}"


class LakeSettings(_Settings):
    """Where the Iceberg catalog and data live, as Rust validated them.

    ``LakeSettings(metastore, warehouse, s3={...}, write={...}, maintenance={...})`` builds
    one from values
    (keys as ``weir.toml`` spells them, checked like configured ones);
    :func:`lake_settings` reads the configured ones. ``properties()`` is what
    ``weir._native.Lake`` takes.
    """

    __slots__ = ()
    _native_class = _native.LakeConfig
    _prefix = ""

    def __init__(
        self,
        metastore: str,
        warehouse: str,
        s3: Mapping[str, object] | None = None,
        write: Mapping[str, object] | None = None,
        maintenance: Mapping[str, object] | None = None,
    ) -> None:
        values = {
            "metastore": metastore,
            "warehouse": warehouse,
            "s3": s3 or {},
            "write": write or {},
            "maintenance": maintenance or {},
        }
        self._set(_keyword_sources("", values))

    @property
    def metastore(self) -> str:
        """An absolute SQLite file path or a ``postgresql://`` URL."""
        return self._config.metastore

    @property
    def warehouse(self) -> str:
        """An absolute local folder, a ``file://`` URL or ``s3://bucket/prefix``."""
        return self._config.warehouse

    @property
    def s3(self) -> dict[str, Any]:
        """The configured S3 values, keyed as ``[lake.s3]`` spells them."""
        return self._config.s3

    @property
    def write(self) -> dict[str, int]:
        """How data files are written, keyed as ``[lake.write]`` spells them."""
        return self._config.write

    @property
    def maintenance(self) -> dict[str, Any]:
        """The maintenance policy consumers run on their tables, keyed as
        ``[lake.maintenance]`` spells it."""
        return self._config.maintenance

    @property
    def is_s3(self) -> bool:
        return self._config.is_s3

    @property
    def is_postgres(self) -> bool:
        return self._config.is_postgres

    def sqlite_path(self) -> Path | None:
        """The SQLite metastore file, or ``None`` for PostgreSQL."""
        path = self._config.sqlite_path()
        return None if path is None else Path(path)

    def sqlalchemy_url(self) -> str:
        """The metastore as an SQLAlchemy URL (what pyiceberg's SqlCatalog takes)."""
        return self._config.sqlalchemy_url()

    def pyiceberg_properties(self) -> dict[str, str]:
        """Properties for ``pyiceberg.catalog.sql.SqlCatalog(weir.lake.CATALOG_NAME, **props)``."""
        return self._config.pyiceberg_properties()


def lake_settings(env: Mapping[str, str] | None = None) -> LakeSettings:
    """The lake settings from defaults, ``weir.toml`` (``[lake]``) and the environment
    (``WEIR_METASTORE``, ``WEIR_WAREHOUSE``, ``WEIR_S3_*``; for S3 warehouses ``AWS_*``
    where no ``WEIR_S3_*`` value is set), later sources winning."""
    env = os.environ if env is None else env
    state = (
        "state",
        str(state_dir()),
        "WEIR_STATE_DIR" if os.environ.get("WEIR_STATE_DIR") else "defaults",
    )
    sources = [state, *_toml_sources("lake"), *_variables(env, _LAKE_VARIABLES)]
    return LakeSettings._from_sources([*sources, *_variables(env, _AWS_VARIABLES)])


class KinesisSettings(_Settings):
    """The Kinesis-API server that carries records, and how Weir names and sizes its streams,
    as Rust validated them.

    ``endpoint`` is the server's URL; ``None`` means AWS itself (the SDK picks the regional
    endpoint). ``KinesisSettings()`` gives the defaults, ``KinesisSettings(shards=4, ...)``
    changes some (``endpoint=None`` for AWS); :func:`kinesis_settings` reads the configured
    ones. ``properties()`` is what the Rust side reads.
    """

    __slots__ = ()
    _native_class = _native.KinesisConfig
    _prefix = "kinesis."

    def __init__(self, **settings: object) -> None:
        self._set(_keyword_sources(self._prefix, settings))

    @property
    def endpoint(self) -> str | None:
        return self._config.endpoint

    @property
    def region(self) -> str:
        return self._config.region

    @property
    def access_key_id(self) -> str | None:
        return self._config.access_key_id

    @property
    def secret_access_key(self) -> str | None:
        return self._config.secret_access_key

    @property
    def session_token(self) -> str | None:
        return self._config.session_token

    @property
    def stream_prefix(self) -> str:
        return self._config.stream_prefix

    @property
    def shards(self) -> int:
        return self._config.shards

    @property
    def is_aws(self) -> bool:
        return self._config.is_aws

    def is_local(self) -> bool:
        """Whether the endpoint is on this machine's loopback (the server ``weir up`` runs)."""
        return self._config.is_local()

    def local_port(self) -> int:
        """The endpoint's port (the scheme's default when the URL has none)."""
        return self._config.local_port()

    def stream_name(self, dataset: str) -> str:
        """The stream that carries ``dataset``: ``<stream_prefix><dataset>``."""
        return self._config.stream_name(dataset)


def kinesis_settings(env: Mapping[str, str] | None = None) -> KinesisSettings:
    """The Kinesis settings from defaults, ``weir.toml`` (``[kinesis]``) and the environment
    (``WEIR_KINESIS_*``), later sources winning. An empty stream prefix variable names the
    streams exactly like their datasets. An empty endpoint means AWS: then the keys and the
    region not configured for Weir come from ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``) and ``AWS_REGION`` (or
    ``AWS_DEFAULT_REGION``), and no keys at all leaves them to AWS's credential chain."""
    env = os.environ if env is None else env
    variables = _variables(env, _KINESIS_VARIABLES)
    if env.get("WEIR_KINESIS_ENDPOINT") == "":  # an empty endpoint variable means AWS
        variables.insert(0, ("kinesis.endpoint", "", "WEIR_KINESIS_ENDPOINT"))
    if env.get("WEIR_KINESIS_STREAM_PREFIX") == "":  # streams named exactly like datasets
        variables.insert(0, ("kinesis.stream_prefix", "", "WEIR_KINESIS_STREAM_PREFIX"))
    sources = [*_toml_sources("kinesis"), *variables, *_variables(env, _AWS_VARIABLES)]
    return KinesisSettings._from_sources(sources)


_API_KEYS = (
    "key_hashes",
    "max_body_bytes",
    "host",
    "port",
    "workers",
    "rate_events_per_second",
    "rate_requests_per_second",
    "idempotency_window_hours",
)


@dataclass(frozen=True)
class ApiSettings:
    """The ingest API (``weir serve``): who may call it and how it listens.

    ``key_hashes`` are ``sha256:<hex>`` digests of API keys configured here (``[api]
    key_hashes``, ``WEIR_API_KEY_HASHES``); keys themselves are never stored. ``weir api-key
    create`` makes a key, prints it once and stores its digest in ``<state>/api-keys``, which
    the API reads together with these (``weir.api.keys``). ``rate_events_per_second`` and
    ``rate_requests_per_second`` are the default limits of a key that sets none (0: none);
    ``idempotency_window_hours`` how long an ``Idempotency-Key`` holds its job (24).
    """

    key_hashes: tuple[str, ...] = ()
    max_body_bytes: int = 10 * 1024 * 1024
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    rate_events_per_second: float = 0.0
    rate_requests_per_second: float = 0.0
    idempotency_window_hours: float = 24.0
    source: str = "defaults"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def api_keys_file() -> Path:
    """The keys made by ``weir api-key create`` (digests, names, scopes, limits; one JSON
    object per line, see ``weir.api.keys``)."""
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


def _amount(
    origins: Mapping[str, str], values: Mapping[str, Any], key: str, unit: str = "per second"
) -> float:
    """A number of 0 or more (0 when not set)."""
    if key not in values:
        return 0.0
    value = values[key]
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise _error(origins[key], f"expected a number {unit}, got {value!r}") from None
    if not number >= 0:
        raise _error(origins[key], f"expected 0 or more, got {value!r}")
    return number


def api_settings(env: Mapping[str, str] | None = None) -> ApiSettings:
    """The API settings from defaults, ``weir.toml`` (``[api]``), ``WEIR_API_*`` variables
    (``WEIR_API_KEY_HASHES`` comma-separated, ``WEIR_API_MAX_BODY_BYTES``, ``WEIR_API_HOST``,
    ``WEIR_API_PORT``, ``WEIR_API_WORKERS``, ``WEIR_API_RATE_EVENTS_PER_SECOND``,
    ``WEIR_API_RATE_REQUESTS_PER_SECOND``, ``WEIR_API_IDEMPOTENCY_WINDOW_HOURS``)."""
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
        rate_events_per_second=_amount(origins, values, "rate_events_per_second"),
        rate_requests_per_second=_amount(origins, values, "rate_requests_per_second"),
        idempotency_window_hours=_amount(origins, values, "idempotency_window_hours", "of hours")
        if "idempotency_window_hours" in values
        else defaults.idempotency_window_hours,
        source=" < ".join(dict.fromkeys(sources)),
    )


_DASHBOARD_KEYS = ("port",)


@dataclass(frozen=True)
class DashboardSettings:
    """The Streamlit dashboard (``weir dashboard``, and the local stack's ``dashboard``
    service): the port it listens on, on 127.0.0.1 unless ``weir dashboard --host`` says
    otherwise."""

    port: int = 8501
    source: str = "defaults"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def dashboard_settings(env: Mapping[str, str] | None = None) -> DashboardSettings:
    """The dashboard settings from defaults, ``weir.toml`` (``[dashboard]``) and
    ``WEIR_DASHBOARD_PORT``, later sources winning."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    sources = ["defaults"]
    path = config_file()
    if path is not None:
        table = _read_document(path).get("dashboard", {})
        if not isinstance(table, dict):
            raise _error(f"{path}: dashboard", "expected a table ([dashboard])")
        for key, value in table.items():
            if key not in _DASHBOARD_KEYS:
                raise _error(
                    f"{path}: dashboard.{key}",
                    f"unknown setting (known: {', '.join(_DASHBOARD_KEYS)})",
                )
            values[key], origins[key] = value, f"{path}: dashboard.{key}"
        if table:
            sources.append(str(path))
    for key in _DASHBOARD_KEYS:
        variable = f"WEIR_DASHBOARD_{key.upper()}"
        if env.get(variable):
            values[key], origins[key] = env[variable], variable
            sources.append(variable)
    return DashboardSettings(
        port=_port(origins["port"], values["port"])
        if "port" in values
        else DashboardSettings().port,
        source=" < ".join(dict.fromkeys(sources)),
    )


_ALERT_KEYS = (
    "webhook_url",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "smtp_starttls",
    "email_from",
    "email_to",
    "retries",
    "timeout_seconds",
    "retry_backoff_seconds",
)
# Any of these asks for email alerts, which then need a server, a sender and a recipient.
_EMAIL_KEYS = tuple(key for key in _ALERT_KEYS if key.startswith(("smtp_", "email_")))
_EMAIL_REQUIRED = ("smtp_host", "email_from", "email_to")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_ADDRESS = re.compile(r"[^@\s<>,]+@[^@\s<>,]+")


@dataclass(frozen=True)
class AlertSettings:
    """Where data-quality alerts go (:mod:`weir.alerts`): a Slack-compatible incoming webhook
    and/or email over SMTP, and how hard each is tried.

    ``retries`` is the number of attempts per channel and notification (so 3 means at most
    two retries), waiting ``retry_backoff_seconds`` after the first failure and twice as long
    after each further one. The SMTP password and the webhook URL's path (Slack's secret) are
    left out of ``repr`` and of every error message.
    """

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    retries: int = 3
    timeout_seconds: float = 5.0
    retry_backoff_seconds: float = 0.5
    source: str = "defaults"

    @property
    def channels(self) -> tuple[str, ...]:
        """The configured channels, of ``("webhook", "email")``."""
        configured = {"webhook": self.webhook_url is not None, "email": self.smtp_host is not None}
        return tuple(channel for channel, on in configured.items() if on)

    def __repr__(self) -> str:
        shown = {
            "webhook_url": _webhook_origin(self.webhook_url),
            "smtp_password": None if self.smtp_password is None else "***",
        }
        fields = ", ".join(
            f"{name}={shown.get(name, getattr(self, name))!r}" for name in self.__dataclass_fields__
        )
        return f"AlertSettings({fields})"


def _webhook_origin(url: str | None) -> str | None:
    """The URL without its path: incoming-webhook URLs carry their secret there."""
    if url is None:
        return None
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.partition('/')[0]}/..."


def _webhook_url(setting: str, value: object) -> str:
    if not isinstance(value, str):
        raise _error(setting, f"expected an http(s) URL, got {type(value).__name__}")
    scheme, found, rest = value.strip().partition("://")
    host = rest.partition("/")[0].partition("?")[0]
    if not found or scheme.lower() not in ("http", "https"):
        raise _error(setting, "expected an http:// or https:// URL")
    if not host or any(c.isspace() for c in value.strip()):
        raise _error(setting, f"expected an http(s) URL with a host, got {scheme}://{host}/...")
    return value.strip()


def _text(setting: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(setting, "expected a non-empty string")
    return value.strip()


def _address(setting: str, value: object) -> str:
    text = _text(setting, value)
    if not _ADDRESS.fullmatch(text):
        raise _error(setting, f"expected an email address (name@domain), got {text!r}")
    return text


def _addresses(setting: str, value: object) -> tuple[str, ...]:
    """A list of addresses, or one string of comma-separated ones."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise _error(setting, "expected a list of email addresses or a comma-separated string")
    return tuple(
        _address(setting, item) for item in value if not isinstance(item, str) or item.strip()
    )


def _switch(setting: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (*_TRUE, *_FALSE):
        return value.strip().lower() in _TRUE
    raise _error(setting, f"expected true or false, got {value!r}")


def _seconds(setting: str, value: object, minimum: float, inclusive: bool) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _error(setting, f"expected a number of seconds, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _error(setting, f"expected a finite number of seconds, got {value!r}")
    if number < minimum or (number == minimum and not inclusive):
        bound = "at least" if inclusive else "more than"
        raise _error(setting, f"expected {bound} {minimum:g}, got {number:g}")
    return number


def _port(setting: str, value: object) -> int:
    number = _positive(setting, value)
    if number > 65535:
        raise _error(setting, f"expected a port from 1 to 65535, got {number}")
    return number


_ALERT_CHECKS: dict[str, Any] = {
    "webhook_url": _webhook_url,
    "smtp_host": _text,
    "smtp_port": _port,
    "smtp_username": _text,
    "smtp_password": lambda setting, value: _text(setting, value) if value != "" else value,
    "smtp_starttls": _switch,
    "email_from": _address,
    "email_to": _addresses,
    "retries": _positive,
    "timeout_seconds": lambda setting, value: _seconds(setting, value, 0, inclusive=False),
    "retry_backoff_seconds": lambda setting, value: _seconds(setting, value, 0, inclusive=True),
}


def alert_settings(env: Mapping[str, str] | None = None) -> AlertSettings:
    """The alert settings from defaults, ``weir.toml`` (``[alerts]``) and ``WEIR_ALERT_*``
    variables (``WEIR_ALERT_WEBHOOK_URL``, ``WEIR_ALERT_SMTP_HOST``, ..., one per key;
    ``WEIR_ALERT_EMAIL_TO`` comma-separated), later sources winning.

    Unlike the other ``WEIR_*`` readers, an unknown ``WEIR_ALERT_*`` variable is an error: a
    misspelt channel would otherwise silence alerts without anyone noticing."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    sources = ["defaults"]
    path = config_file()
    if path is not None:
        table = _read_document(path).get("alerts", {})
        if not isinstance(table, dict):
            raise _error(f"{path}: alerts", "expected a table ([alerts])")
        for key, value in table.items():
            if key not in _ALERT_KEYS:
                raise _error(
                    f"{path}: alerts.{key}", f"unknown setting (known: {', '.join(_ALERT_KEYS)})"
                )
            values[key], origins[key] = value, f"{path}: alerts.{key}"
        if table:
            sources.append(str(path))
    variables = {f"WEIR_ALERT_{key.upper()}": key for key in _ALERT_KEYS}
    for variable in sorted(name for name in env if name.startswith("WEIR_ALERT_")):
        if variable not in variables:
            raise _error(variable, f"unknown setting (known: {', '.join(variables)})")
    for variable, key in variables.items():
        if env.get(variable):
            values[key], origins[key] = env[variable], variable
            sources.append(variable)
    checked = {key: _ALERT_CHECKS[key](origins[key], value) for key, value in values.items()}
    checked = {key: value for key, value in checked.items() if value not in ("", ())}

    email = [key for key in _EMAIL_KEYS if key in checked]
    missing = [key for key in _EMAIL_REQUIRED if key not in checked]
    if email and missing:
        raise _error(
            origins[email[0]],
            f"email alerts also need {', '.join(missing)} (alerts.{missing[0]} in weir.toml "
            f"or WEIR_ALERT_{missing[0].upper()})",
        )
    if ("smtp_username" in checked) != ("smtp_password" in checked):
        given, absent = (
            ("smtp_username", "smtp_password")
            if "smtp_username" in checked
            else ("smtp_password", "smtp_username")
        )
        raise _error(origins[given], f"{absent} is needed too: give both or neither")
    return AlertSettings(**checked, source=" < ".join(dict.fromkeys(sources)))
