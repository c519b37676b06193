//! Structured logs from Rust: JSON lines on stderr (timestamp, level, component, event and
//! fields), filtered by the `WEIR_LOG` environment variable (default: warnings plus the
//! `weir::audit` commit trail; services set `info`).

use pyo3::prelude::*;
use tracing_subscriber::EnvFilter;

/// Installs the JSON log subscriber once; later calls do nothing. Returns whether it was
/// installed by this call. `level` overrides `WEIR_LOG` (e.g. "warn", "weir_planner=debug").
/// Warnings, the audit trail of lake commits (`weir::audit`, one line per commit), and the
/// streaming layer's events (one line per consumer batch, leases, streams created). OpenDAL's
/// retry warnings carry whole backtraces; Weir reports the failures it gives up on itself.
pub const DEFAULT_FILTER: &str = "warn,weir::audit=info,weir_planner::stream=info,opendal=error";

#[pyfunction]
#[pyo3(signature = (level=None))]
pub fn init_logging(level: Option<&str>) -> bool {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
    };
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .try_init()
        .is_ok()
}
