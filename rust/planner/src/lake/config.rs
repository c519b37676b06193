//! Where the lake lives: the metastore database that holds the Iceberg SQL catalog, the
//! warehouse that holds data and metadata files, and how files are written.
//!
//! Built from string properties (`LakeConfig::from_properties`) so the Python side can pass
//! what it read from `weir.toml` and `WEIR_*` variables; see `docs/configuration.md`.

use std::collections::HashMap;
use std::path::Path;

use super::error::{LakeError, LakeResult};

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
    /// `sqlite:<path>`, a path to a SQLite file, or `postgresql://user:pass@host:port/db`.
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
    /// Commit attempts before a conflict with other writers is reported (default 100).
    pub commit_attempts: u32,
    /// Extra catalog properties passed through (e.g. `pool.max-connections`).
    pub extra: HashMap<String, String>,
}

impl LakeConfig {
    pub fn new(metastore: impl Into<String>, warehouse: impl Into<String>) -> Self {
        Self {
            metastore: metastore.into(),
            warehouse: warehouse.into(),
            s3: S3Settings::default(),
            target_file_size_bytes: 128 * 1024 * 1024,
            row_group_rows: 128 * 1024,
            zstd_level: 3,
            commit_attempts: 100,
            extra: HashMap::new(),
        }
    }

    /// Reads the keys `metastore`, `warehouse`, `s3.endpoint`, `s3.region`,
    /// `s3.access-key-id`, `s3.secret-access-key`, `s3.session-token`,
    /// `s3.path-style-access`, `write.target-file-size-bytes`, `write.row-group-rows`,
    /// `write.zstd-level`, `commit.attempts`; keys starting with `pool.` pass through to the
    /// catalog. Any other key is an error, so a typo cannot silently fall back to a default.
    pub fn from_properties(properties: &HashMap<String, String>) -> LakeResult<Self> {
        let required = |key: &str| {
            properties.get(key).filter(|v| !v.trim().is_empty()).cloned().ok_or_else(|| LakeError::Config {
                setting: key.to_string(),
                message: "is required".into(),
            })
        };
        let mut config = Self::new(required("metastore")?, required("warehouse")?);
        for (key, value) in properties {
            let number = |value: &str| -> LakeResult<u64> {
                value.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| LakeError::Config {
                    setting: key.clone(),
                    message: format!("expected a positive whole number, got {value:?}"),
                })
            };
            let text = || Some(value.clone()).filter(|v| !v.is_empty());
            match key.as_str() {
                "metastore" | "warehouse" => {}
                "s3.endpoint" => config.s3.endpoint = text(),
                "s3.region" => config.s3.region = text(),
                "s3.access-key-id" => config.s3.access_key_id = text(),
                "s3.secret-access-key" => config.s3.secret_access_key = text(),
                "s3.session-token" => config.s3.session_token = text(),
                "s3.path-style-access" => {
                    config.s3.path_style = match value.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" | "" => false,
                        other => {
                            return Err(LakeError::Config {
                                setting: key.clone(),
                                message: format!("expected true or false, got {other:?}"),
                            })
                        }
                    }
                }
                "write.target-file-size-bytes" => config.target_file_size_bytes = number(value)? as usize,
                "write.row-group-rows" => config.row_group_rows = number(value)? as usize,
                "write.zstd-level" => {
                    config.zstd_level = number(value)?.min(22) as i32;
                }
                "commit.attempts" => config.commit_attempts = number(value)? as u32,
                k if k.starts_with("pool.") => {
                    config.extra.insert(key.clone(), value.clone());
                }
                _ => {
                    return Err(LakeError::Config { setting: key.clone(), message: "unknown setting".into() });
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> LakeResult<()> {
        self.metastore_url()?;
        let scheme = self.warehouse.split_once("://").map(|(s, _)| s);
        match scheme {
            None | Some("file") | Some("s3") | Some("s3a") => Ok(()),
            Some(other) => Err(LakeError::Config {
                setting: "warehouse".into(),
                message: format!("unsupported scheme {other:?}: use a local folder or s3://bucket/prefix"),
            }),
        }
    }

    pub fn is_s3(&self) -> bool {
        self.warehouse.starts_with("s3://") || self.warehouse.starts_with("s3a://")
    }

    pub fn is_postgres(&self) -> bool {
        self.metastore.starts_with("postgres://") || self.metastore.starts_with("postgresql://")
    }

    /// The metastore as a sqlx URL: SQLite files are created when missing (`mode=rwc`).
    pub fn metastore_url(&self) -> LakeResult<String> {
        let m = self.metastore.trim();
        if self.is_postgres() {
            return Ok(m.to_string());
        }
        let path = if let Some(rest) = m.strip_prefix("sqlite://") {
            rest
        } else if let Some(rest) = m.strip_prefix("sqlite:") {
            rest
        } else if m.contains("://") {
            return Err(LakeError::Config {
                setting: "metastore".into(),
                message: format!("unsupported database {m:?}: use a SQLite file path or postgresql://..."),
            });
        } else {
            m
        };
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(LakeError::Config {
                setting: "metastore".into(),
                message: "a SQLite metastore needs a file path (an in-memory database would vanish)".into(),
            });
        }
        if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| LakeError::Config {
                    setting: "metastore".into(),
                    message: format!("cannot create folder {}: {e}", parent.display()),
                })?;
            }
        }
        Ok(format!("sqlite:{path}?mode=rwc"))
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
        let s3 = &self.s3;
        for (key, value) in [
            ("s3.endpoint", &s3.endpoint),
            ("s3.region", &s3.region),
            ("s3.access-key-id", &s3.access_key_id),
            ("s3.secret-access-key", &s3.secret_access_key),
            ("s3.session-token", &s3.session_token),
        ] {
            if let Some(value) = value {
                props.insert(key.into(), value.clone());
            }
        }
        if s3.path_style {
            props.insert("s3.path-style-access".into(), "true".into());
        }
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
