//! The Tokio runtime the module runs DataFusion on, created on first use.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// A multi-threaded runtime with a worker per core (at least two): DataFusion and the lake's
/// writers spread work over its workers, and Python may call in from several threads at once.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores.max(2))
            .thread_name("weir-native")
            .enable_all()
            .build()
            .expect("the Tokio runtime starts")
    })
}
