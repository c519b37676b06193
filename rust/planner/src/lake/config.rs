//! Where the lake lives: the metastore database that holds the Iceberg SQL catalog, the
//! warehouse that holds data and metadata files, and how files are written.
//!
//! This module is the one validator of the lake settings and the one place their defaults are
//! written. `weir.config` (Python) only collects what the user wrote (`weir.toml`, `WEIR_*` and
//! `AWS_*` variables, the state folder) as [`SettingSource`]s, each naming where it came from,
//! and hands them to [`LakeConfig::from_sources`]; errors name that origin
//! (`WEIR_METASTORE: ...`, `/home/x/weir.toml: lake.s3.region: ...`). The Rust entry points
//! take string properties ([`LakeConfig::from_properties`], the form
//! [`LakeConfig::to_properties`] writes) and go through the same code. The source types
//! live in [`crate::settings`], shared with the Kinesis settings (`stream/config.rs`). See
//! `docs/configuration.md`.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::path::{Component, Path, PathBuf};

use super::error::{LakeError, LakeResult};
use crate::settings::{SettingSource, SettingSources};

/// The catalog name under which Weir's tables are registered in the metastore. pyiceberg's
/// `SqlCatalog(CATALOG_NAME, uri=..., warehouse=...)` sees the same tables.
pub const CATALOG_NAME: &str = "weir";

/// Credentials and endpoint for an S3-compatible warehouse (`s3://bucket/prefix`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Path-style addressing (`http://host/bucket/key`), which local S3 servers need.
    pub path_style: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LakeConfig {
    /// An absolute SQLite file path (from a path, `sqlite:<path>` or `sqlite://<path>`), or
    /// `postgresql://user:pass@host:port/db`.
    pub metastore: String,
    /// A local folder (absolute path or `file://` URL) or `s3://bucket/prefix`.
    pub warehouse: String,
    pub s3: S3Settings,
    /// Data files roll over at about this size (default 128 MiB).
    pub target_file_size_bytes: usize,
    /// Rows per Parquet row group (default 131,072).
    pub row_group_rows: usize,
    /// zstd level for data files (default 3).
    pub zstd_level: i32,
    /// Partitions one write encodes at once (default: the machine's cores).
    pub write_concurrency: Option<usize>,
    /// Commit attempts before a conflict with other writers is reported (default 100).
    pub commit_attempts: u32,
    /// How continuously written tables are kept small and fast (`[lake.maintenance]`).
    pub maintenance: MaintenancePolicy,
    /// Extra catalog properties passed through (e.g. `pool.max-connections`).
    pub extra: HashMap<String, String>,
    /// `defaults`, then the files and variables that contributed, joined by ` < `.
    pub source: String,
    /// Where each configured setting came from (key to origin), for later errors.
    pub origins: BTreeMap<String, String>,
}

/// The settings `weir.toml` may hold under `[lake]` (keys as properties spell them).
const TOML_KEYS: [&str; 22] = [
    "metastore",
    "warehouse",
    "s3.endpoint",
    "s3.region",
    "s3.access-key-id",
    "s3.secret-access-key",
    "s3.session-token",
    "s3.path-style-access",
    "write.target-file-size-bytes",
    "write.row-group-rows",
    "write.concurrency",
    "write.zstd-level",
    "maintenance.enabled",
    "maintenance.interval-seconds",
    "maintenance.snapshot-window-minutes",
    "maintenance.max-snapshots",
    "maintenance.history-hours",
    "maintenance.merge-manifests-at",
    "maintenance.compact-min-files",
    "maintenance.metadata-versions",
    "maintenance.orphan-age-hours",
    "maintenance.job-retention-days",
];

/// Settings only the callers give: the state folder the default metastore and warehouse are
/// in, the commit retry budget, and the `AWS_*` variables (used for S3 warehouses when no
/// `s3.*` value is configured). `pool.*` keys pass through to the catalog.
const PROPERTY_KEYS: [&str; 7] =
    ["state", "commit.attempts", "aws.access-key-id", "aws.secret-access-key", "aws.session-token", "aws.region", "aws.default-region"];

/// Files the default metastore and warehouse are, inside the state folder.
const DEFAULT_METASTORE_FILE: &str = "metastore.db";
const DEFAULT_WAREHOUSE_FOLDER: &str = "warehouse";

fn config_error(source: &SettingSource, message: String) -> LakeError {
    LakeError::Config { setting: source.origin.clone(), message }
}

/// The key of `source` as properties spell it (`lake.` dropped, `_` as `-`), or the error
/// naming an unknown key and the known ones.
fn lake_key(source: &SettingSource) -> LakeResult<String> {
    let raw = source.key.trim();
    let (key, in_toml) = match raw.strip_prefix("lake.") {
        Some(rest) => (rest.replace('_', "-"), true),
        None => (raw.replace('_', "-"), false),
    };
    if TOML_KEYS.contains(&key.as_str()) || (!in_toml && (PROPERTY_KEYS.contains(&key.as_str()) || key.starts_with("pool."))) {
        return Ok(key);
    }
    if raw == "lake" {
        return Err(config_error(source, "expected a table ([lake])".into()));
    }
    if key == "s3" || key == "write" || key == "maintenance" {
        return Err(config_error(source, format!("expected a table ([lake.{key}])")));
    }
    let section = match key.split_once('.') {
        Some((section @ ("s3" | "write" | "maintenance"), _)) => Some(section),
        _ => None,
    };
    let mut known: Vec<String> = Vec::new();
    for k in TOML_KEYS {
        let name = match section {
            Some(section) => k.strip_prefix(section).and_then(|k| k.strip_prefix('.')).map(str::to_string),
            None => Some(k.split('.').next().unwrap_or(k).to_string()),
        };
        if let Some(name) = name.map(|n| n.replace('-', "_")) {
            if !known.contains(&name) {
                known.push(name);
            }
        }
    }
    Err(config_error(source, format!("unknown setting (known: {})", known.join(", "))))
}

/// `path` made absolute (`~` expanded, relative to the working folder, `.` and `..` dropped).
fn absolute_path(path: &str) -> Result<PathBuf, String> {
    let expanded = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(rest.trim_start_matches('/')),
            None => PathBuf::from(path),
        },
        _ => PathBuf::from(path),
    };
    let absolute = std::path::absolute(&expanded).map_err(|e| format!("cannot resolve the path {path:?}: {e}"))?;
    let mut clean = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    Ok(clean)
}

fn is_postgres_url(metastore: &str) -> bool {
    metastore.starts_with("postgres://") || metastore.starts_with("postgresql://")
}

/// The SQLite file a metastore names (`None` for PostgreSQL), as written.
fn sqlite_file(metastore: &str) -> Result<Option<&str>, String> {
    let m = metastore.trim();
    if is_postgres_url(m) {
        return Ok(None);
    }
    let path = if let Some(rest) = m.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = m.strip_prefix("sqlite:") {
        rest
    } else if let Some((scheme, _)) = m.split_once("://") {
        return Err(format!(
            "unsupported database {scheme:?}: use a SQLite file path (or sqlite:<path>) or postgresql://user:pass@host:port/db"
        ));
    } else {
        m
    };
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err("a SQLite metastore needs a file path (an in-memory database would vanish)".into());
    }
    Ok(Some(path))
}

/// One form per metastore: PostgreSQL URLs as given, every SQLite form as an absolute path.
fn metastore_form(text: &str) -> Result<String, String> {
    match sqlite_file(text)? {
        None => Ok(text.trim().to_string()),
        Some(path) => Ok(absolute_path(path)?.display().to_string()),
    }
}

/// Local folders as absolute paths; `file://` and `s3://bucket/prefix` URLs as given.
fn warehouse_form(text: &str) -> Result<String, String> {
    let w = text.trim();
    match w.split_once("://") {
        None => Ok(absolute_path(w)?.display().to_string()),
        Some(("file", _)) => Ok(w.to_string()),
        Some(("s3" | "s3a", rest)) if !rest.split('/').next().unwrap_or_default().is_empty() => Ok(w.to_string()),
        Some(("s3" | "s3a", _)) => Err(format!("expected s3://bucket/prefix, got {w:?}")),
        Some((other, _)) => Err(format!("unsupported scheme {other:?}: use a local folder or s3://bucket/prefix")),
    }
}

/// A configured non-blank text value, trimmed.
fn text_setting(settings: &mut SettingSources<'_>, key: &str) -> LakeResult<Option<String>> {
    match settings.take_set(key) {
        None => Ok(None),
        Some(source) => source.text().map(|t| Some(t.trim().to_string())).map_err(|m| config_error(source, m)),
    }
}

fn number_setting(settings: &mut SettingSources<'_>, key: &str, range: RangeInclusive<u64>, expected: &str) -> LakeResult<Option<u64>> {
    match settings.take(key) {
        None => Ok(None),
        Some(source) => source.whole_number(range, expected).map(Some).map_err(|m| config_error(source, m)),
    }
}

/// The metastore or warehouse: configured, else formed from the state folder, else missing.
fn location(
    settings: &mut SettingSources<'_>,
    key: &str,
    default_name: &str,
    form: fn(&str) -> Result<String, String>,
) -> LakeResult<String> {
    if let Some(source) = settings.take_set(key) {
        let text = source.text().map_err(|m| config_error(source, m))?;
        return form(text).map_err(|m| config_error(source, m));
    }
    if let Some(state) = settings.take_set("state") {
        let folder = state.text().map_err(|m| config_error(state, m))?;
        let path = Path::new(folder.trim()).join(default_name);
        return form(&path.display().to_string()).map_err(|m| config_error(state, m));
    }
    Err(LakeError::Config { setting: key.into(), message: "is required".into() })
}

/// How Weir keeps tables that are written continuously (a commit a second) small and fast:
/// what [`Lake::maintain`](super::Lake::maintain) does and how often consumers run it. Keys
/// under `[lake.maintenance]` (`maintenance.*` as properties); defaults in [`Default`].
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenancePolicy {
    /// Consumers run the policy in the background (one consumer per table at a time).
    pub enabled: bool,
    /// Seconds between two runs on a table (default 60).
    pub interval_seconds: u64,
    /// Every snapshot of the last this many minutes stays readable by time travel (default 5:
    /// each kept snapshot costs every commit ~40 µs, so at one commit a second 300 snapshots
    /// keep a commit near 10 ms).
    pub snapshot_window_minutes: u64,
    /// At most this many snapshots are kept from the window, the newest (default 400): at
    /// one commit a second a 5-minute window holds 300; several writers may commit faster.
    pub max_snapshots: usize,
    /// Older than the window, one snapshot per hour is kept for this many hours (default 24).
    pub history_hours: u64,
    /// Manifests of the current snapshot that are merged into one (default 100).
    pub merge_manifests_at: usize,
    /// Small files of a similar size (within 4x) in one partition that are compacted into
    /// one (default 16): files grow in tiers, so no row is rewritten more than a few times.
    pub compact_min_files: usize,
    /// Previous metadata files listed in `metadata.json` (Iceberg's
    /// `write.metadata.previous-versions-max`, default 20); files that fell out of the list
    /// are deleted once older than the window (readers may have pinned one).
    pub metadata_versions: usize,
    /// Files under a table's folder that no snapshot references are deleted once they are
    /// this many hours old (default 6; younger ones may belong to a commit in flight).
    pub orphan_age_hours: u64,
    /// Finished jobs (`weir_jobs`, with their `weir_job_records` rows) and consumer batch
    /// metrics older than this many days are deleted from the metastore (default 30).
    pub job_retention_days: u64,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_seconds: 60,
            snapshot_window_minutes: 5,
            max_snapshots: 400,
            history_hours: 24,
            merge_manifests_at: 100,
            compact_min_files: 16,
            metadata_versions: 20,
            orphan_age_hours: 6,
            job_retention_days: 30,
        }
    }
}

impl MaintenancePolicy {
    fn read(&mut self, settings: &mut SettingSources<'_>) -> LakeResult<()> {
        if let Some(source) = settings.take("maintenance.enabled") {
            self.enabled = source.flag().map_err(|m| config_error(source, m))?;
        }
        let positive = "a positive whole number";
        let whole = "a whole number (0 or more)";
        if let Some(n) = number_setting(settings, "maintenance.interval-seconds", 1..=86_400, "a whole number from 1 to 86400")? {
            self.interval_seconds = n;
        }
        if let Some(n) = number_setting(settings, "maintenance.snapshot-window-minutes", 0..=u32::MAX as u64, whole)? {
            self.snapshot_window_minutes = n;
        }
        if let Some(n) = number_setting(settings, "maintenance.max-snapshots", 1..=u32::MAX as u64, positive)? {
            self.max_snapshots = n as usize;
        }
        if let Some(n) = number_setting(settings, "maintenance.history-hours", 0..=u32::MAX as u64, whole)? {
            self.history_hours = n;
        }
        if let Some(n) = number_setting(settings, "maintenance.merge-manifests-at", 2..=u32::MAX as u64, "a whole number of at least 2")? {
            self.merge_manifests_at = n as usize;
        }
        if let Some(n) = number_setting(settings, "maintenance.compact-min-files", 2..=u32::MAX as u64, "a whole number of at least 2")? {
            self.compact_min_files = n as usize;
        }
        if let Some(n) = number_setting(settings, "maintenance.metadata-versions", 1..=u32::MAX as u64, positive)? {
            self.metadata_versions = n as usize;
        }
        if let Some(n) = number_setting(settings, "maintenance.orphan-age-hours", 0..=u32::MAX as u64, whole)? {
            self.orphan_age_hours = n;
        }
        if let Some(n) = number_setting(settings, "maintenance.job-retention-days", 1..=36_500, "a whole number of days from 1 to 36500")? {
            self.job_retention_days = n;
        }
        Ok(())
    }

    /// The policy as properties, keyed as [`LakeConfig::from_properties`] reads them.
    pub fn to_properties(&self) -> Vec<(String, String)> {
        self.values().into_iter().map(|(key, value)| (format!("maintenance.{key}"), value)).collect()
    }

    /// `(key, value)` pairs, keys as properties spell them after `maintenance.`.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        vec![
            ("enabled", self.enabled.to_string()),
            ("interval-seconds", self.interval_seconds.to_string()),
            ("snapshot-window-minutes", self.snapshot_window_minutes.to_string()),
            ("max-snapshots", self.max_snapshots.to_string()),
            ("history-hours", self.history_hours.to_string()),
            ("merge-manifests-at", self.merge_manifests_at.to_string()),
            ("compact-min-files", self.compact_min_files.to_string()),
            ("metadata-versions", self.metadata_versions.to_string()),
            ("orphan-age-hours", self.orphan_age_hours.to_string()),
            ("job-retention-days", self.job_retention_days.to_string()),
        ]
    }
}

impl LakeConfig {
    /// A config with every default and no validation (tests and tools that know their paths).
    pub fn new(metastore: impl Into<String>, warehouse: impl Into<String>) -> Self {
        Self {
            metastore: metastore.into(),
            warehouse: warehouse.into(),
            s3: S3Settings::default(),
            target_file_size_bytes: 128 * 1024 * 1024,
            row_group_rows: 128 * 1024,
            zstd_level: 3,
            write_concurrency: None,
            commit_attempts: 100,
            maintenance: MaintenancePolicy::default(),
            extra: HashMap::new(),
            source: "defaults".into(),
            origins: BTreeMap::new(),
        }
    }

    /// The settings from `sources`, later ones winning, validated; defaults fill the rest.
    ///
    /// Keys as properties spell them: `metastore`, `warehouse`, `s3.endpoint`, `s3.region`,
    /// `s3.access-key-id`, `s3.secret-access-key`, `s3.session-token`, `s3.path-style-access`,
    /// `write.target-file-size-bytes`, `write.row-group-rows`, `write.zstd-level`; the same
    /// under `lake.` as `weir.toml` spells them (`lake.s3.access_key_id`). Only without
    /// `lake.`: `state` (the folder of the default `metastore.db` and `warehouse`),
    /// `commit.attempts`, `pool.*` (passed to the catalog), and `aws.access-key-id`,
    /// `aws.secret-access-key`, `aws.session-token`, `aws.region`, `aws.default-region` (the
    /// `AWS_*` variables, used for an S3 warehouse when the `s3.*` value is not configured).
    /// Any other key is an error naming its origin and the known keys, so a typo cannot
    /// silently fall back to a default. Blank text counts as unset.
    pub fn from_sources(sources: &[SettingSource]) -> LakeResult<Self> {
        let keys = sources.iter().map(|s| lake_key(s).map(|key| (key, s))).collect::<LakeResult<Vec<_>>>()?;
        let mut settings = SettingSources::new(keys);
        let metastore = location(&mut settings, "metastore", DEFAULT_METASTORE_FILE, metastore_form)?;
        let warehouse = location(&mut settings, "warehouse", DEFAULT_WAREHOUSE_FOLDER, warehouse_form)?;
        let mut config = Self::new(metastore, warehouse);

        let s3 = &mut config.s3;
        if let Some(source) = settings.take_set("s3.endpoint") {
            s3.endpoint = source.endpoint().map_err(|m| config_error(source, m))?;
        }
        s3.region = text_setting(&mut settings, "s3.region")?;
        s3.access_key_id = text_setting(&mut settings, "s3.access-key-id")?;
        s3.secret_access_key = text_setting(&mut settings, "s3.secret-access-key")?;
        s3.session_token = text_setting(&mut settings, "s3.session-token")?;
        if let Some(source) = settings.take("s3.path-style-access") {
            s3.path_style = source.flag().map_err(|m| config_error(source, m))?;
        }
        if config.is_s3() {
            let s3 = &mut config.s3;
            for (value, key) in [
                (&mut s3.access_key_id, "aws.access-key-id"),
                (&mut s3.secret_access_key, "aws.secret-access-key"),
                (&mut s3.session_token, "aws.session-token"),
                (&mut s3.region, "aws.region"),
            ] {
                if value.is_none() {
                    *value = text_setting(&mut settings, key)?;
                }
            }
            if s3.region.is_none() {
                s3.region = text_setting(&mut settings, "aws.default-region")?;
            }
        }

        let positive = "a positive whole number";
        if let Some(n) = number_setting(&mut settings, "write.target-file-size-bytes", 1..=u64::MAX, positive)? {
            config.target_file_size_bytes = n as usize;
        }
        if let Some(n) = number_setting(&mut settings, "write.row-group-rows", 1..=u64::MAX, positive)? {
            config.row_group_rows = n as usize;
        }
        if let Some(n) = number_setting(&mut settings, "write.zstd-level", 1..=22, "a whole number from 1 to 22")? {
            config.zstd_level = n as i32;
        }
        if let Some(n) = number_setting(&mut settings, "write.concurrency", 1..=1024, "a whole number from 1 to 1024")? {
            config.write_concurrency = Some(n as usize);
        }
        if let Some(n) = number_setting(&mut settings, "commit.attempts", 1..=u32::MAX as u64, positive)? {
            config.commit_attempts = n as u32;
        }
        config.maintenance.read(&mut settings)?;
        for key in settings.keys_with_prefix("pool.") {
            if let Some(value) = text_setting(&mut settings, &key)? {
                config.extra.insert(key, value);
            }
        }
        config.source = settings.source();
        config.origins = settings.origins();
        Ok(config)
    }

    /// Reads string properties (the keys of [`LakeConfig::from_sources`]; each names
    /// itself in errors). `metastore` and `warehouse` are required unless `state` is given.
    pub fn from_properties(properties: &HashMap<String, String>) -> LakeResult<Self> {
        Self::from_sources(&SettingSource::properties(properties))
    }

    /// Partitions one write encodes at once: the setting, else the machine's cores.
    pub fn write_concurrency(&self) -> usize {
        self.write_concurrency.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// The settings as the string properties [`LakeConfig::from_properties`] reads back.
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        props.insert("metastore".to_string(), self.metastore.clone());
        props.insert("warehouse".to_string(), self.warehouse.clone());
        for (key, value) in self.s3_values() {
            props.insert(format!("s3.{key}"), value.to_string());
        }
        if self.s3.path_style {
            props.insert("s3.path-style-access".into(), "true".into());
        }
        props.insert("write.target-file-size-bytes".into(), self.target_file_size_bytes.to_string());
        props.insert("write.row-group-rows".into(), self.row_group_rows.to_string());
        props.insert("write.zstd-level".into(), self.zstd_level.to_string());
        if let Some(n) = self.write_concurrency {
            props.insert("write.concurrency".into(), n.to_string());
        }
        props.insert("commit.attempts".into(), self.commit_attempts.to_string());
        props.extend(self.maintenance.to_properties());
        props.extend(self.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        props
    }

    /// The configured S3 text values, keyed as properties spell them after `s3.`.
    pub fn s3_values(&self) -> Vec<(&'static str, &str)> {
        let s3 = &self.s3;
        [
            ("endpoint", &s3.endpoint),
            ("region", &s3.region),
            ("access-key-id", &s3.access_key_id),
            ("secret-access-key", &s3.secret_access_key),
            ("session-token", &s3.session_token),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|v| (key, v)))
        .collect()
    }

    /// Where the setting `key` came from, or the key itself.
    fn origin(&self, key: &str) -> String {
        self.origins.get(key).cloned().unwrap_or_else(|| key.to_string())
    }

    pub fn is_s3(&self) -> bool {
        self.warehouse.starts_with("s3://") || self.warehouse.starts_with("s3a://")
    }

    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.metastore)
    }

    /// The SQLite metastore file, or `None` for PostgreSQL.
    pub fn sqlite_path(&self) -> LakeResult<Option<PathBuf>> {
        let file = sqlite_file(&self.metastore)
            .map_err(|message| LakeError::Config { setting: self.origin("metastore"), message })?;
        Ok(file.map(PathBuf::from))
    }

    /// The metastore as a sqlx URL: SQLite files are created when missing (`mode=rwc`).
    pub fn metastore_url(&self) -> LakeResult<String> {
        let Some(path) = self.sqlite_path()? else {
            return Ok(self.metastore.trim().to_string());
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| LakeError::Config {
                    setting: self.origin("metastore"),
                    message: format!("cannot create folder {}: {e}", parent.display()),
                })?;
            }
        }
        Ok(format!("sqlite:{}?mode=rwc", path.display()))
    }

    /// The metastore as an SQLAlchemy URL (what pyiceberg's `SqlCatalog` takes).
    pub fn sqlalchemy_url(&self) -> LakeResult<String> {
        match self.sqlite_path()? {
            Some(path) => Ok(format!("sqlite:///{}", path.display())),
            None => {
                let rest = self.metastore.trim().split_once("://").map_or("", |(_, rest)| rest);
                Ok(format!("postgresql+psycopg2://{rest}"))
            }
        }
    }

    /// Properties for `pyiceberg.catalog.sql.SqlCatalog(CATALOG_NAME, **properties)`.
    pub fn pyiceberg_properties(&self) -> LakeResult<BTreeMap<String, String>> {
        let mut props = BTreeMap::new();
        props.insert("uri".to_string(), self.sqlalchemy_url()?);
        props.insert("warehouse".to_string(), self.warehouse.clone());
        for (key, value) in self.s3_values() {
            props.insert(format!("s3.{key}"), value.to_string());
        }
        if self.s3.path_style {
            props.insert("s3.force-virtual-addressing".into(), "false".into());
        }
        Ok(props)
    }

    /// The warehouse location as Iceberg writes it: absolute local paths without a scheme.
    pub fn warehouse_location(&self) -> String {
        let w = self.warehouse.trim_end_matches('/');
        w.strip_prefix("file://").unwrap_or(w).to_string()
    }

    /// Properties for the iceberg SQL catalog and its FileIO.
    pub fn catalog_properties(&self) -> LakeResult<HashMap<String, String>> {
        let mut props = self.extra.clone();
        props.insert("uri".into(), self.metastore_url()?);
        props.insert("warehouse".into(), self.warehouse_location());
        let bind = if self.is_postgres() { "DollarNumeric" } else { "QMark" };
        props.insert("sql_bind_style".into(), bind.into());
        for (key, value) in self.s3_values() {
            props.insert(format!("s3.{key}"), value.to_string());
        }
        if self.s3.path_style {
            props.insert("s3.path-style-access".into(), "true".into());
        }
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Endpoint, SettingValue};

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn sqlite_forms_become_one_url() {
        let dir = std::env::temp_dir();
        let file = dir.join("weir-config-test.db");
        for form in [file.display().to_string(), format!("sqlite:{}", file.display()), format!("sqlite://{}", file.display())] {
            let config = LakeConfig::from_properties(&props(&[("metastore", &form), ("warehouse", "/tmp/wh")])).unwrap();
            assert_eq!(config.metastore_url().unwrap(), format!("sqlite:{}?mode=rwc", file.display()));
        }
    }

    #[test]
    fn unknown_and_malformed_settings_are_named() {
        let base = [("metastore", "/tmp/m.db"), ("warehouse", "/tmp/wh")];
        let mut p = props(&base);
        p.insert("write.target-file-size".into(), "1".into());
        let err = LakeConfig::from_properties(&p).unwrap_err().to_string();
        assert!(err.contains("write.target-file-size") && err.contains("unknown"), "{err}");

        let mut p = props(&base);
        p.insert("write.row-group-rows".into(), "many".into());
        let err = LakeConfig::from_properties(&p).unwrap_err().to_string();
        assert!(err.contains("write.row-group-rows") && err.contains("many"), "{err}");

        let err = LakeConfig::from_properties(&props(&[("metastore", "mysql://x"), ("warehouse", "/w")])).unwrap_err();
        assert!(err.to_string().contains("metastore"), "{err}");
        let err = LakeConfig::from_properties(&props(&[("metastore", "/tmp/m.db"), ("warehouse", "gs://b")])).unwrap_err();
        assert!(err.to_string().contains("gs"), "{err}");
        let err = LakeConfig::from_properties(&props(&[("warehouse", "/w")])).unwrap_err();
        assert!(err.to_string().contains("metastore: is required"), "{err}");
    }

    #[test]
    fn s3_settings_reach_the_catalog() {
        let config = LakeConfig::from_properties(&props(&[
            ("metastore", "postgresql://weir@localhost:5432/weir"),
            ("warehouse", "s3://bucket/lake"),
            ("s3.endpoint", "http://127.0.0.1:9000"),
            ("s3.access-key-id", "key"),
            ("s3.path-style-access", "true"),
        ]))
        .unwrap();
        assert!(config.is_s3() && config.is_postgres());
        let p = config.catalog_properties().unwrap();
        assert_eq!(p["sql_bind_style"], "DollarNumeric");
        assert_eq!(p["s3.endpoint"], "http://127.0.0.1:9000");
        assert_eq!(p["s3.path-style-access"], "true");
        assert_eq!(p["warehouse"], "s3://bucket/lake");
    }

    fn text(key: &str, value: &str, origin: &str) -> SettingSource {
        SettingSource::new(key, SettingValue::Text(value.into()), origin)
    }

    #[test]
    fn sources_fill_defaults_from_the_state_folder_and_name_their_origin() {
        let config = LakeConfig::from_sources(&[text("state", "/srv/weir/./state", "WEIR_STATE_DIR")]).unwrap();
        assert_eq!((config.metastore.as_str(), config.warehouse.as_str()), ("/srv/weir/state/metastore.db", "/srv/weir/state/warehouse"));
        assert_eq!(config.source, "defaults < WEIR_STATE_DIR");
        assert_eq!(config.sqlalchemy_url().unwrap(), "sqlite:////srv/weir/state/metastore.db");
        assert_eq!(LakeConfig::from_properties(&config.to_properties().into_iter().collect()).unwrap().to_properties(), config.to_properties());

        let file = "/home/x/weir.toml";
        let config = LakeConfig::from_sources(&[
            text("state", "/s", "defaults"),
            text("lake.warehouse", "s3://bucket/lake", &format!("{file}: lake.warehouse")),
            SettingSource::new("lake.s3.path_style_access", SettingValue::Bool(true), format!("{file}: lake.s3.path_style_access")),
            text("metastore", "sqlite:relative/m.db?mode=ro", "WEIR_METASTORE"),
            text("aws.access-key-id", "AKIA", "AWS_ACCESS_KEY_ID"),
            text("aws.default-region", "eu-west-1", "AWS_DEFAULT_REGION"),
        ])
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.metastore, cwd.join("relative/m.db").display().to_string());
        assert!(config.is_s3() && !config.is_postgres() && config.s3.path_style);
        assert_eq!((config.s3.access_key_id.as_deref(), config.s3.region.as_deref()), (Some("AKIA"), Some("eu-west-1")));
        assert_eq!(config.source, format!("defaults < {file} < WEIR_METASTORE < AWS_ACCESS_KEY_ID < AWS_DEFAULT_REGION"));
        assert_eq!(config.pyiceberg_properties().unwrap()["s3.force-virtual-addressing"], "false");

        for (sources, expected) in [
            (vec![text("metastore", "mysql://u:secret@h/db", "WEIR_METASTORE"), text("state", "/s", "defaults")], "WEIR_METASTORE: unsupported database \"mysql\""),
            (vec![text("lake.bogus", "1", &format!("{file}: lake.bogus"))], "lake.bogus: unknown setting (known: metastore, warehouse, s3, write, maintenance)"),
            (vec![text("lake.s3.bogus", "1", "f: lake.s3.bogus")], "f: lake.s3.bogus: unknown setting (known: endpoint, region, access_key_id, secret_access_key, session_token, path_style_access)"),
            (vec![text("lake.state", "/x", "f: lake.state")], "f: lake.state: unknown setting"),
            (vec![text("lake.s3", "x", "f: lake.s3")], "expected a table ([lake.s3])"),
            (vec![text("state", "/s", "defaults"), text("s3.endpoint", "ftp://x", "WEIR_S3_ENDPOINT")], "WEIR_S3_ENDPOINT: expected http://host:port"),
            (vec![text("state", "/s", "defaults"), text("s3.path-style-access", "maybe", "WEIR_S3_PATH_STYLE_ACCESS")], "WEIR_S3_PATH_STYLE_ACCESS: expected true or false, got \"maybe\""),
            (vec![text("state", "/s", "defaults"), SettingSource::new("lake.write.zstd_level", SettingValue::Integer(30), "f: lake.write.zstd_level")], "f: lake.write.zstd_level: expected a whole number from 1 to 22, got 30"),
            (vec![text("state", "/s", "defaults"), SettingSource::new("lake.maintenance.interval_seconds", SettingValue::Integer(0), "f: lake.maintenance.interval_seconds")], "f: lake.maintenance.interval_seconds: expected a whole number from 1 to 86400, got 0"),
            (vec![text("state", "/s", "defaults"), text("lake.maintenance.window", "5", "f: lake.maintenance.window")], "unknown setting (known: enabled, interval_seconds, snapshot_window_minutes"),
        ] {
            let err = LakeConfig::from_sources(&sources).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("u:secret"), "{err}");
        }
    }

    #[test]
    fn endpoints_are_http_urls() {
        let parsed = Endpoint::parse(" https://Example.com/ ").unwrap().unwrap();
        assert_eq!((parsed.url.as_str(), parsed.host.as_str(), parsed.port_or_default()), ("https://Example.com", "example.com", 443));
        assert!(Endpoint::parse("http://localhost:4567").unwrap().unwrap().is_local());
        assert_eq!(Endpoint::parse("http://[::1]:9000").unwrap().unwrap().port, Some(9000));
        assert_eq!(Endpoint::parse("").unwrap(), None);
        for bad in ["ftp://x", "localhost:4567", "http://:4567", "http://x:port", "http://h:99999", "http://h:0"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
