//! [`Lake`]: the opened Iceberg SQL catalog plus the metastore connection Weir uses for its
//! own compare-and-swap commits (compaction), and table lookup/creation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use iceberg::spec::ManifestFile;
use iceberg::table::Table;
use iceberg::{Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlCatalog, SqlCatalogBuilder};
use iceberg_storage_opendal::OpenDalStorageFactory;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

use super::config::{LakeConfig, CATALOG_NAME};
use super::error::{IcebergContext, LakeError, LakeResult};
use super::tables::TableDef;

/// Settings of every connection to a SQLite metastore.
///
/// * Pages are read through a memory map, not a `read()` call each.
/// * `synchronous = NORMAL`: with write-ahead logging a commit writes the log without waiting
///   for the disk; the log is flushed to disk at each checkpoint. A killed process loses
///   nothing; an operating-system crash or power cut may roll back the last commits, all
///   together, the catalog pointers and checkpoints with them (so what is stored stays
///   exactly-once: the consumer reads those records again). The warehouse's own files are
///   not flushed on every commit either; PostgreSQL is the metastore for durable production
///   use.
/// * `wal_autocheckpoint = 0`: a commit never copies the log back into the database (that
///   flushes the disk twice and took up to 0.8 s here, inside an API request or a consumer
///   commit); [`start_checkpointer`] does it beside them.
const SQLITE_CONNECTION_PRAGMAS: &[&str] = &["PRAGMA mmap_size = 268435456", "PRAGMA synchronous = NORMAL", "PRAGMA wal_autocheckpoint = 0"];

/// How often a process copies a SQLite metastore's write-ahead log back into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts (once per database and process) the task that checkpoints the SQLite metastore at
/// `url` every [`CHECKPOINT_INTERVAL`] on a connection of its own: `PASSIVE`, so it waits
/// for no reader or writer, and nobody waits for it. With no checkpoint at all the log
/// would grow without bound (SQLite still checkpoints when the last connection closes).
fn start_checkpointer(url: &str) {
    static RUNNING: OnceLock<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>> = OnceLock::new();
    let mut running = RUNNING.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if running.get(url).is_some_and(|task| !task.is_finished()) {
        return; // a runtime that ended took its task along: then start another
    }
    let owned = url.to_string();
    running.insert(url.to_string(), tokio::spawn(checkpoint_now_and_then(owned)));
}

async fn checkpoint_now_and_then(url: String) {
    use sqlx::Connection;
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<sqlx::AnyConnection> = None;
    loop {
        interval.tick().await;
        if connection.is_none() {
            connection = sqlx::AnyConnection::connect(&url).await.ok();
        }
        let Some(open) = connection.as_mut() else { continue };
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut *open).await {
            tracing::warn!(component = "lake", event = "checkpoint_failed", error = %e);
            connection = None; // a new connection next time
        }
    }
}

/// An open lake. Cheap to share (`Arc`); every method may be called concurrently.
#[derive(Debug)]
pub struct Lake {
    config: LakeConfig,
    catalog: Arc<SqlCatalog>,
    pool: AnyPool,
    /// What manifest lists and manifests hold (they never change once written): manifest
    /// paths, or live data file paths. Maintenance reads each one once per process.
    listings: std::sync::Mutex<HashMap<String, Arc<Vec<String>>>>,
    /// The last loaded or committed state of each table: a load whose catalog pointer has
    /// not moved reuses it instead of reading and parsing `metadata.json` again (which at a
    /// thousand snapshots is most of a commit's time).
    tables: std::sync::Mutex<HashMap<String, Table>>,
    /// The manifests of the manifest list each table's last commit from here wrote, so the
    /// next append (which lists them all again) need not read the list back.
    last_lists: std::sync::Mutex<HashMap<String, LastList>>,
}

/// A manifest list's path and the manifests it lists.
type LastList = (String, Arc<Vec<ManifestFile>>);

impl Lake {
    /// Opens (and on first use creates) the catalog tables in the metastore and the
    /// warehouse folder. Must run inside a Tokio runtime.
    pub async fn open(config: LakeConfig) -> LakeResult<Self> {
        let properties = config.catalog_properties()?;
        let url = config.metastore_url()?;
        let factory = if config.is_s3() {
            Arc::new(OpenDalStorageFactory::S3 { customized_credential_load: None })
        } else {
            let folder = config.warehouse_location();
            std::fs::create_dir_all(&folder).map_err(|e| LakeError::Config {
                setting: "warehouse".into(),
                message: format!("cannot create {folder}: {e}"),
            })?;
            Arc::new(OpenDalStorageFactory::Fs)
        };
        let catalog = SqlCatalogBuilder::default()
            .with_storage_factory(factory)
            .load(CATALOG_NAME, properties)
            .await
            .map_err(|source| LakeError::Config {
                setting: "metastore".into(),
                message: format!("cannot open the Iceberg catalog in {}: {source}", redact(&config.metastore)),
            })?;
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if sqlite {
                        for pragma in SQLITE_CONNECTION_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *connection).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| LakeError::Config {
            setting: "metastore".into(),
            message: format!("cannot connect to {}: {e}", redact(&config.metastore)),
        })?;
        if sqlite {
            // Write-ahead logging: a commit appends to one file instead of writing a rollback
            // journal, and readers do not block the writers (the API's job ledger, consumers,
            // catalog commits). The mode is kept in the database file.
            if let Err(e) = sqlx::query("PRAGMA journal_mode=WAL").execute(&pool).await {
                tracing::warn!(component = "lake", event = "wal_not_enabled", error = %e);
            }
            start_checkpointer(&url);
        }
        Ok(Self { config, catalog: Arc::new(catalog), pool, listings: Default::default(), tables: Default::default(), last_lists: Default::default() })
    }

    pub fn config(&self) -> &LakeConfig {
        &self.config
    }

    /// What the manifest list or manifest `path` holds, if it was read before.
    pub(crate) fn remembered(&self, path: &str) -> Option<Arc<Vec<String>>> {
        self.listings.lock().unwrap_or_else(|e| e.into_inner()).get(path).cloned()
    }

    pub(crate) fn remember(&self, path: String, files: Vec<String>) {
        self.listings.lock().unwrap_or_else(|e| e.into_inner()).insert(path, Arc::new(files));
    }

    /// The manifests of manifest list `path` if this lake's last commit to `name` wrote it.
    pub(crate) fn last_list(&self, name: &str, path: &str) -> Option<Arc<Vec<ManifestFile>>> {
        let lists = self.last_lists.lock().unwrap_or_else(|e| e.into_inner());
        lists.get(name).filter(|(last, _)| last == path).map(|(_, manifests)| manifests.clone())
    }

    pub(crate) fn remember_last_list(&self, name: &str, path: String, manifests: Vec<ManifestFile>) {
        self.last_lists.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), (path, Arc::new(manifests)));
    }

    /// Drops what is remembered of a deleted file.
    pub(crate) fn forget(&self, path: &str) {
        self.listings.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
    }

    /// The metastore database, where Weir keeps jobs, shard leases and batch metrics beside
    /// the Iceberg catalog's tables.
    pub fn metastore_pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The Iceberg catalog, e.g. for iceberg-datafusion's catalog provider.
    pub fn catalog(&self) -> Arc<dyn Catalog> {
        self.catalog.clone()
    }

    /// `namespace.table` → identifier, with a clear error for anything else.
    pub fn ident(name: &str) -> LakeResult<TableIdent> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.trim().is_empty()) {
            return Err(LakeError::Table {
                table: name.to_string(),
                message: "expected namespace.table, e.g. raw.shop_events".into(),
            });
        }
        TableIdent::from_strs(parts).context(name, "invalid table name")
    }

    pub async fn load_table(&self, name: &str) -> LakeResult<Table> {
        let ident = Self::ident(name)?;
        let cached = self.tables.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned();
        if let Some(cached) = cached {
            if self.metadata_pointer(&ident).await?.as_deref() == cached.metadata_location() {
                return Ok(cached);
            }
        }
        match self.catalog.load_table(&ident).await {
            Ok(table) => {
                self.remember_table(name, table.clone());
                Ok(table)
            }
            Err(e) if matches!(e.kind(), ErrorKind::TableNotFound | ErrorKind::NamespaceNotFound) => {
                Err(LakeError::Table { table: name.to_string(), message: "no such table in the lake".into() })
            }
            Err(e) => Err(e).context(name, "cannot load the table"),
        }
    }

    /// Every table as `namespace.table`, sorted.
    pub async fn table_names(&self) -> LakeResult<Vec<String>> {
        let mut names = Vec::new();
        let namespaces = self.catalog.list_namespaces(None).await.context("*", "cannot list namespaces")?;
        for namespace in namespaces {
            let tables = self.catalog.list_tables(&namespace).await.context(&namespace.join("."), "cannot list tables")?;
            names.extend(tables.iter().map(|t| format!("{}.{}", t.namespace().join("."), t.name())));
        }
        names.sort();
        Ok(names)
    }

    /// Creates the table `def` describes (and its namespace). An existing table is an error
    /// unless `exist_ok`, and then only when its columns or partitioning differ from `def`'s
    /// (changing a table's shape is schema evolution, not creation).
    pub async fn create_table(&self, def: &TableDef, exist_ok: bool) -> LakeResult<Table> {
        let name = def.qualified_name();
        let ident = Self::ident(&name)?;
        if self.catalog.table_exists(&ident).await.context(&name, "cannot read the catalog")? {
            if !exist_ok {
                return Err(LakeError::Table { table: name, message: "already exists".into() });
            }
            let table = self.load_table(&name).await?;
            check_same_shape(&table, def)?;
            return Ok(table);
        }
        let table = self.ensure_table(def).await?;
        check_same_shape(&table, def)?;
        Ok(table)
    }

    /// Creates the table (and its namespace) unless it exists; safe when several processes
    /// race to create it. An existing table is returned as it is.
    pub async fn ensure_table(&self, def: &TableDef) -> LakeResult<Table> {
        let name = def.qualified_name();
        let namespace = NamespaceIdent::new(def.namespace.clone());
        if !self.catalog.namespace_exists(&namespace).await.context(&name, "cannot read the catalog")? {
            match self.catalog.create_namespace(&namespace, HashMap::new()).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => {}
                // The SQL catalog reports a racing creator as a unique-key violation.
                Err(_) if self.catalog.namespace_exists(&namespace).await.unwrap_or(false) => {}
                Err(e) => return Err(e).context(&name, "cannot create the namespace"),
            }
        }
        let ident = TableIdent::new(namespace.clone(), def.name.clone());
        if self.catalog.table_exists(&ident).await.context(&name, "cannot read the catalog")? {
            return self.load_table(&name).await;
        }
        let creation = TableCreation::builder()
            .name(def.name.clone())
            .schema(def.schema.clone())
            .partition_spec(def.partition_spec()?)
            .properties(def.properties.clone())
            .build();
        match self.catalog.create_table(&namespace, creation).await {
            Ok(table) => {
                tracing::info!(target: "weir::audit", component = "lake", event = "table_created", table = %name,
                    metadata = table.metadata_location().unwrap_or_default());
                Ok(table)
            }
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => self.load_table(&name).await,
            Err(_) if self.catalog.table_exists(&ident).await.unwrap_or(false) => self.load_table(&name).await,
            Err(e) => Err(e).context(&name, "cannot create the table"),
        }
    }

    /// Moves the catalog pointer of `table` from `expected` to `new_location` if no other
    /// writer moved it first (the same compare-and-swap iceberg-catalog-sql performs).
    /// Returns false on a lost race.
    /// Keeps `table` as the state of `name` that [`Lake::load_table`] returns while the
    /// catalog still points at its metadata file.
    pub(crate) fn remember_table(&self, name: &str, table: Table) {
        self.tables.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), table);
    }

    /// The metadata file the catalog points at for `table` (one indexed read).
    async fn metadata_pointer(&self, table: &TableIdent) -> LakeResult<Option<String>> {
        use sqlx::Row;
        let sql = if self.config.is_postgres() {
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3"
        } else {
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?"
        };
        let row = sqlx::query(sql)
            .bind(CATALOG_NAME)
            .bind(table.namespace().join("."))
            .bind(table.name())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| LakeError::Iceberg {
                table: table.to_string(),
                context: "cannot read the catalog".into(),
                source: Box::new(iceberg::Error::new(ErrorKind::Unexpected, e.to_string())),
            })?;
        Ok(row.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
    }

    pub(crate) async fn swap_metadata_location(
        &self,
        table: &TableIdent,
        expected: &str,
        new_location: &str,
    ) -> LakeResult<bool> {
        let sql = if self.config.is_postgres() {
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 AND metadata_location = $6"
        } else {
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?"
        };
        let result = sqlx::query(sql)
            .bind(new_location)
            .bind(expected)
            .bind(CATALOG_NAME)
            .bind(table.namespace().join("."))
            .bind(table.name())
            .bind(expected)
            .execute(&self.pool)
            .await
            .map_err(|e| LakeError::Iceberg {
                table: table.to_string(),
                context: "cannot update the catalog".into(),
                source: Box::new(iceberg::Error::new(ErrorKind::Unexpected, e.to_string())),
            })?;
        Ok(result.rows_affected() == 1)
    }
}

/// Errors unless `table` has the columns (names and types, in order) and partition fields
/// `def` asks for.
fn check_same_shape(table: &Table, def: &TableDef) -> LakeResult<()> {
    let metadata = table.metadata();
    let columns = |schema: &iceberg::spec::Schema| -> Vec<String> {
        schema.as_struct().fields().iter().map(|f| format!("{} {}", f.name, f.field_type)).collect()
    };
    let (have, want) = (columns(metadata.current_schema()), columns(&def.schema));
    if have != want {
        return Err(LakeError::Schema {
            table: def.qualified_name(),
            message: format!("the table exists with columns [{}], not [{}]", have.join(", "), want.join(", ")),
        });
    }
    let have: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| format!("{}({})", f.transform, metadata.current_schema().name_by_field_id(f.source_id).unwrap_or("?")))
        .collect();
    let want: Vec<String> = def.partition.iter().map(ToString::to_string).collect();
    if have != want {
        return Err(LakeError::Schema {
            table: def.qualified_name(),
            message: format!("the table exists partitioned by [{}], not [{}]", have.join(", "), want.join(", ")),
        });
    }
    Ok(())
}

/// A connection string without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgresql://weir:secret@db:5432/weir"), "postgresql://weir:***@db:5432/weir");
        assert_eq!(redact("/tmp/metastore.db"), "/tmp/metastore.db");
    }

    #[test]
    fn table_names_need_a_namespace() {
        assert!(Lake::ident("raw.shop_events").is_ok());
        for bad in ["shop_events", "raw.", ".x", ""] {
            assert!(Lake::ident(bad).unwrap_err().to_string().contains("namespace.table"), "{bad}");
        }
    }
}
