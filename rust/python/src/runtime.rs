//! The Tokio runtime the module runs DataFusion on, created on first use.

use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// A small multi-threaded runtime: DataFusion may spawn tasks, and Python may call in from
/// several threads at once.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-native")
            .enable_all()
            .build()
            .expect("the Tokio runtime starts")
    })
}
