//! The DataFusion session every pipeline query runs in: Weir's UDFs registered, rows kept in
//! input order, and a catalog of its own per session, where the batch being processed is the
//! table [`EVENTS_TABLE`].

use std::sync::{Arc, OnceLock};

use datafusion::catalog::{CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};

/// The table name pipeline queries read from.
pub const EVENTS_TABLE: &str = "events";

/// A DataFusion session state with Weir's UDFs and settings that keep rows in input order,
/// and a catalog of its own (tables registered in it are seen by no other session).
pub fn session_state() -> SessionState {
    static BASE: OnceLock<SessionState> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        // One partition: batches are already in memory and output order must follow input order.
        let config = SessionConfig::new().with_target_partitions(1).with_information_schema(true);
        let state = SessionStateBuilder::new().with_config(config).with_default_features().build();
        let ctx = SessionContext::new_with_state(state);
        weir_udfs::register_all(&ctx);
        ctx.state()
    });
    // Building the function registry once and cloning it is much cheaper than rebuilding it;
    // only the catalog must be new, because clones share their catalog list.
    let options = base.config().options();
    let schema = Arc::new(MemorySchemaProvider::new());
    let catalog = Arc::new(MemoryCatalogProvider::new());
    catalog
        .register_schema(&options.catalog.default_schema, schema)
        .expect("a new in-memory catalog accepts a schema");
    let catalogs = Arc::new(MemoryCatalogProviderList::new());
    catalogs.register_catalog(options.catalog.default_catalog.clone(), catalog);
    SessionStateBuilder::new_from_existing(base.clone()).with_catalog_list(catalogs).build()
}
