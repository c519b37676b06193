"""One validator per setting: the same bad lake and Kinesis settings, fed to the Python entry
points (``weir.config.kinesis_settings``, ``lake_settings``, a ``weir.toml`` named by
``WEIR_CONFIG``) and to the Rust ones (``weir._native.Producer`` / ``weir._native.Lake`` with
string properties, ``weir._native.KinesisConfig`` / ``LakeConfig`` with sources), raise the
same :class:`weir.ConfigError`: same message, with ``setting`` naming where the value was
written. A check added on one side only makes these tests fail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import weir
from weir import _native, config

# A Kinesis endpoint nothing listens on: every case fails before connecting.
UNUSED_ENDPOINT = "http://127.0.0.1:9"


def caught(call: Callable[[], object]) -> weir.ConfigError:
    with pytest.raises(weir.ConfigError) as info:
        call()
    return info.value


def detail(error: weir.ConfigError) -> tuple[type, str, str]:
    """The error without its origin: class, what precedes the setting, what follows it."""
    before, found, after = str(error).partition(f"{error.setting}: ")
    assert found, f"the message {error} does not name its setting {error.setting!r}"
    return type(error), before, after


def same(python: weir.ConfigError, rust: weir.ConfigError) -> None:
    assert (type(python), python.setting, str(python)) == (type(rust), rust.setting, str(rust))


@pytest.fixture
def toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Writes ``weir.toml`` and points ``WEIR_CONFIG`` at it; starts empty."""
    path = tmp_path / "weir.toml"

    def write(text: str) -> Path:
        path.write_text(text)
        return path

    write("")
    monkeypatch.setenv("WEIR_CONFIG", str(path))
    return write


# (variables for kinesis_settings, the same values as string properties)
KINESIS_CASES = {
    "shards 0": ({"WEIR_KINESIS_SHARDS": "0"}, {"kinesis.shards": "0"}),
    "shards 1001": ({"WEIR_KINESIS_SHARDS": "1001"}, {"kinesis.shards": "1001"}),
    "shards two": ({"WEIR_KINESIS_SHARDS": "two"}, {"kinesis.shards": "two"}),
    "ftp endpoint": ({"WEIR_KINESIS_ENDPOINT": "ftp://x"}, {"kinesis.endpoint": "ftp://x"}),
    "port out of range": (
        {"WEIR_KINESIS_ENDPOINT": "http://h:99999"},
        {"kinesis.endpoint": "http://h:99999"},
    ),
    "prefix with a space": (
        {"WEIR_KINESIS_STREAM_PREFIX": "a b"},
        {"kinesis.stream-prefix": "a b"},
    ),
    "half a key pair": (
        {"WEIR_KINESIS_ENDPOINT": "", "WEIR_KINESIS_ACCESS_KEY_ID": "a"},
        {"kinesis.endpoint": "", "kinesis.access-key-id": "a"},
    ),
}


@pytest.mark.parametrize("case", KINESIS_CASES)
def test_bad_kinesis_variables_fail_alike_in_python_and_rust(toml, case: str) -> None:
    env, properties = KINESIS_CASES[case]
    python = caught(lambda: config.kinesis_settings(env))
    assert python.setting in env
    # What kinesis_settings hands over, given to Rust directly.
    keys = {"WEIR_KINESIS_" + k.split(".")[1].replace("-", "_").upper(): k for k in properties}
    sources = [(keys[variable], value, variable) for variable, value in env.items()]
    same(python, caught(lambda: _native.KinesisConfig(sources)))
    # The Rust entry point with properties: the same error, named by the property key.
    producer = caught(lambda: _native.Producer({"kinesis.endpoint": UNUSED_ENDPOINT, **properties}))
    assert producer.setting in properties
    assert detail(producer) == detail(python)
    same(producer, caught(lambda: _native.KinesisConfig.from_properties(properties)))


# (the [kinesis] table, the key and value Rust receives)
KINESIS_TOML_CASES = {
    "shards 0": ("shards = 0", "kinesis.shards", 0),
    "shards 1001": ("shards = 1001", "kinesis.shards", 1001),
    "shards two": ("shards = 'two'", "kinesis.shards", "two"),
    "shards 2.5": ("shards = 2.5", "kinesis.shards", 2.5),
    "ftp endpoint": ("endpoint = 'ftp://x'", "kinesis.endpoint", "ftp://x"),
    "port out of range": ("endpoint = 'http://h:99999'", "kinesis.endpoint", "http://h:99999"),
    "prefix with a space": ("stream_prefix = 'a b'", "kinesis.stream_prefix", "a b"),
    "unknown key": ("shard = 2", "kinesis.shard", 2),
    "region not text": ("region = 5", "kinesis.region", 5),
}


@pytest.mark.parametrize("case", KINESIS_TOML_CASES)
def test_bad_kinesis_toml_fails_alike_in_python_and_rust(toml, case: str) -> None:
    table, key, value = KINESIS_TOML_CASES[case]
    path = toml(f"[kinesis]\n{table}\n")
    python = caught(lambda: config.kinesis_settings({}))
    assert python.setting == f"{path}: {key}"
    same(python, caught(lambda: _native.KinesisConfig([(key, value, python.setting)])))
    if isinstance(value, str) or case == "unknown key":  # properties are text: same message
        properties = {key.replace("_", "-"): str(value)}
        endpoint = {"kinesis.endpoint": UNUSED_ENDPOINT}
        producer = caught(lambda: _native.Producer({**endpoint, **properties}))
        assert detail(producer) == detail(python)


def test_a_half_key_pair_in_toml_names_the_half_given(toml) -> None:
    path = toml("[kinesis]\nendpoint = ''\nsecret_access_key = 's'\n")
    python = caught(lambda: config.kinesis_settings({}))
    assert python.setting == f"{path}: kinesis.secret_access_key"
    producer = caught(
        lambda: _native.Producer({"kinesis.endpoint": "", "kinesis.secret-access-key": "s"})
    )
    assert detail(producer) == detail(python)


def test_bad_lake_settings_fail_alike_in_python_and_rust(toml, tmp_path: Path) -> None:
    warehouse = str(tmp_path / "warehouse")
    python = caught(lambda: config.lake_settings({"WEIR_METASTORE": "mysql://nope"}))
    assert python.setting == "WEIR_METASTORE" and "unsupported database" in str(python)
    same(
        python,
        caught(lambda: _native.LakeConfig([("metastore", "mysql://nope", "WEIR_METASTORE")])),
    )
    lake = caught(lambda: _native.Lake({"metastore": "mysql://nope", "warehouse": warehouse}))
    assert lake.setting == "metastore" and detail(lake) == detail(python)
    keyword = caught(lambda: config.LakeSettings("mysql://nope", warehouse))
    assert detail(keyword) == detail(python)

    path = toml("[lake]\nbogus = 1\n")
    python = caught(lambda: config.lake_settings({}))
    assert python.setting == f"{path}: lake.bogus"
    assert "unknown setting (known: metastore, warehouse, s3, write, maintenance)" in str(python)
    lake = caught(lambda: _native.Lake({"metastore": "/m.db", "warehouse": "/w", "bogus": "1"}))
    assert detail(lake) == detail(python)

    path = toml("[lake.s3]\naccess_key = 'x'\n")
    python = caught(lambda: config.lake_settings({}))
    assert python.setting == f"{path}: lake.s3.access_key"
    assert "(known: endpoint, region, access_key_id, " in str(python)
    lake = caught(
        lambda: _native.Lake({"metastore": "/m.db", "warehouse": "/w", "s3.access-key": "x"})
    )
    assert detail(lake) == detail(python)

    path = toml("[lake.write]\nzstd_level = 30\n")
    python = caught(lambda: config.lake_settings({}))
    assert python.setting == f"{path}: lake.write.zstd_level"
    state = ("state", str(config.state_dir()), "WEIR_STATE_DIR")
    sources = [state, ("lake.write.zstd_level", 30, python.setting)]
    same(python, caught(lambda: _native.LakeConfig(sources)))

    path = toml("[lake.maintenance]\ninterval_seconds = 0\n")
    python = caught(lambda: config.lake_settings({}))
    assert python.setting == f"{path}: lake.maintenance.interval_seconds"
    assert "from 1 to 86400" in str(python)
    path = toml("[lake.maintenance]\nwindow_minutes = 5\n")
    python = caught(lambda: config.lake_settings({}))
    assert "(known: enabled, interval_seconds, snapshot_window_minutes, " in str(python)

    toml("")
    python = caught(lambda: config.lake_settings({"WEIR_S3_PATH_STYLE_ACCESS": "maybe"}))
    lake = caught(
        lambda: _native.Lake(
            {"metastore": "/m.db", "warehouse": "/w", "s3.path-style-access": "maybe"}
        )
    )
    assert python.setting == "WEIR_S3_PATH_STYLE_ACCESS" and detail(lake) == detail(python)


def test_defaults_come_from_rust(toml) -> None:
    assert config.kinesis_settings({}).properties() == _native.KinesisConfig([]).properties()
    assert config.KinesisSettings() == config.kinesis_settings({})
    state = config.state_dir()
    lake = config.lake_settings({})
    assert lake.metastore == str(state / "metastore.db")
    assert lake.warehouse == str(state / "warehouse")
    assert lake.source == "defaults < WEIR_STATE_DIR"
    assert lake.properties() == _native.LakeConfig([("state", str(state), "x")]).properties()
    # No default is written in the Python module (each lives in rust/planner/src/*/config.rs).
    text = Path(config.__file__).read_text()
    kinesis = _native.KinesisConfig([])
    write = lake.write
    for value in (
        f'"{kinesis.endpoint}"',
        f'"{kinesis.region}"',
        f'"{kinesis.stream_prefix}"',
        '"metastore.db"',
        str(write["target_file_size_bytes"]),
        str(write["row_group_rows"]),
    ):
        assert value not in text, value


def test_settings_read_back_through_getters(toml, tmp_path: Path) -> None:
    path = toml(
        '[lake]\nwarehouse = "s3://bucket/lake"\nmetastore = "sqlite:relative/m.db"\n'
        "[lake.s3]\nendpoint = 'http://127.0.0.1:9000/'\npath_style_access = true\n"
        "[lake.maintenance]\nsnapshot_window_minutes = 60\nmax_snapshots = 3600\n"
    )
    env = {
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    lake = config.lake_settings(env)
    assert lake.is_s3 and not lake.is_postgres
    assert lake.metastore == str(Path.cwd() / "relative" / "m.db")
    assert lake.sqlite_path() == Path.cwd() / "relative" / "m.db"
    assert lake.sqlalchemy_url() == f"sqlite:///{Path.cwd()}/relative/m.db"
    assert lake.s3 == {
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "access_key_id": "AKIA",
        "secret_access_key": "s3cr3t",
        "path_style_access": True,
    }
    assert lake.pyiceberg_properties()["s3.force-virtual-addressing"] == "false"
    assert lake.source == (
        f"defaults < {path} < AWS_ACCESS_KEY_ID < AWS_SECRET_ACCESS_KEY < AWS_DEFAULT_REGION"
    )
    assert "s3cr3t" not in repr(lake)
    maintenance = lake.maintenance
    assert (maintenance["snapshot_window_minutes"], maintenance["max_snapshots"]) == (60, 3600)
    assert maintenance["enabled"] is True and maintenance["interval_seconds"] == 60
    # Round trip through the properties the Rust lake takes.
    again = _native.LakeConfig.from_properties(lake.properties())
    assert again.properties() == lake.properties()

    postgres = config.LakeSettings("postgresql://weir:pw@db:5432/weir", str(tmp_path))
    assert postgres.is_postgres and postgres.sqlite_path() is None
    assert postgres.sqlalchemy_url() == "postgresql+psycopg2://weir:pw@db:5432/weir"
    assert "pw" not in repr(postgres)
    assert postgres.replace(warehouse="/elsewhere").warehouse == "/elsewhere"
    with pytest.raises(AttributeError):
        postgres.warehouse = "/x"  # type: ignore[misc]

    kinesis = config.KinesisSettings(endpoint=None, region="eu-west-1")
    assert kinesis.is_aws and kinesis.access_key_id is None
    assert kinesis.replace(endpoint="http://localhost:4999").access_key_id is not None
    assert config.kinesis_settings({"AWS_REGION": "ap-south-1"}).region != "ap-south-1"
