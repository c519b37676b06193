//! `weir._native.IngestService`: the ingest API's per-request work ([`Ingest`]: grouped
//! validation, jobs, publishing) for asyncio callers, without a Python thread per request
//! and without Rust threads taking the GIL.
//!
//! `submit` starts a request on the module's Tokio runtime and returns a token at once.
//! Finished requests wait in a completion queue; when the queue becomes non-empty a byte is
//! written to a socket whose other end (`fileno()`) the event loop watches
//! (`loop.add_reader`), and the loop thread collects every finished request at once with
//! `completions()`. Used by `weir.api.ingest`.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use weir_planner::stream::{Ingest, IngestMode, IngestOutcome, Refusal, StreamResult, Timings};
use weir_planner::{InputFormat, Violation};

use crate::errors::{to_py_err, violation_list};
use crate::processor::Processor;
use crate::runtime::runtime;
use crate::stream::Producer;

type Finished = (u64, StreamResult<IngestOutcome>);

struct Completions {
    queue: Mutex<Vec<Finished>>,
    /// Written to when the queue becomes non-empty; `reader` is what the event loop watches.
    writer: UnixStream,
    reader: UnixStream,
}

impl Completions {
    fn push(&self, finished: Finished) {
        let was_empty = {
            let mut queue = self.queue.lock().expect("completion queue lock");
            queue.push(finished);
            queue.len() == 1
        };
        if was_empty {
            // A full socket buffer already holds a wake-up: nothing is lost.
            let _ = (&self.writer).write(&[1]);
        }
    }

    fn take(&self) -> Vec<Finished> {
        let mut buffer = [0u8; 256];
        loop {
            match (&self.reader).read(&mut buffer) {
                Ok(n) if n == buffer.len() => continue,
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: drained
            }
        }
        std::mem::take(&mut *self.queue.lock().expect("completion queue lock"))
    }
}

#[pyclass(module = "weir._native", frozen)]
pub struct IngestService {
    inner: Arc<Ingest>,
    completions: Arc<Completions>,
    next_token: AtomicU64,
    max_violations: usize,
}

#[pymethods]
impl IngestService {
    /// The ingest path for these datasets' processors, publishing through `producer` (whose
    /// job ledger, if any, records every job). Responses list at most `max_violations`.
    #[new]
    #[pyo3(signature = (processors, producer, max_violations=1000))]
    fn new(processors: Vec<PyRef<'_, Processor>>, producer: &Producer, max_violations: usize) -> PyResult<Self> {
        let (reader, writer) = UnixStream::pair().map_err(|e| PyValueError::new_err(format!("cannot create the completion socket: {e}")))?;
        for socket in [&reader, &writer] {
            socket.set_nonblocking(true).map_err(|e| PyValueError::new_err(format!("completion socket: {e}")))?;
        }
        let processors = processors.iter().map(|p| p.inner.clone()).collect();
        let inner = {
            let _entered = runtime().enter();
            Arc::new(Ingest::new(processors, producer.inner.clone(), producer.ledger.clone()))
        };
        Ok(Self {
            inner,
            completions: Arc::new(Completions { queue: Mutex::new(Vec::new()), writer, reader }),
            next_token: AtomicU64::new(1),
            max_violations,
        })
    }

    /// The socket the event loop watches: readable when requests finished.
    fn fileno(&self) -> i32 {
        self.completions.reader.as_raw_fd()
    }

    /// Starts checking and publishing `body` (as job `job_id`, default a new UUID v7);
    /// returns the request's token.
    #[pyo3(signature = (dataset, body, format, strict, job_id=None))]
    fn submit(&self, py: Python<'_>, dataset: String, body: Vec<u8>, format: &str, strict: bool, job_id: Option<String>) -> PyResult<u64> {
        let format = InputFormat::parse(format).map_err(|e| to_py_err(py, e))?;
        let mode = if strict { IngestMode::Strict } else { IngestMode::Lenient };
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let job_id = job_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let (inner, completions) = (self.inner.clone(), self.completions.clone());
        runtime().spawn(async move {
            let outcome = inner.ingest(&dataset, body, format, mode, &job_id).await;
            completions.push((token, outcome));
        });
        Ok(token)
    }

    /// Every finished request since the last call: `(token, ok, outcome dict or exception)`.
    fn completions<'py>(&self, py: Python<'py>) -> PyResult<Vec<(u64, bool, Bound<'py, PyAny>)>> {
        let finished = self.completions.take();
        let mut out = Vec::with_capacity(finished.len());
        for (token, outcome) in finished {
            out.push(match outcome {
                Ok(outcome) => (token, true, self.outcome_dict(py, outcome)?.into_any()),
                Err(e) => (token, false, to_py_err(py, e).into_value(py).into_bound(py).into_any()),
            });
        }
        Ok(out)
    }
}

impl IngestService {
    fn outcome_dict<'py>(&self, py: Python<'py>, outcome: IngestOutcome) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let checked = match outcome {
            IngestOutcome::Published { checked, publication, timings } => {
                set_timings(py, &d, &timings)?;
                d.set_item("outcome", "published")?;
                d.set_item("job_id", publication.job_id)?;
                d.set_item("kinesis_records", publication.records.len())?;
                checked
            }
            IngestOutcome::Refused { checked, refusal, timings } => {
                set_timings(py, &d, &timings)?;
                let name = match refusal {
                    Refusal::Empty => "empty",
                    Refusal::Unparseable => "unparseable",
                    Refusal::Violations => "violations",
                };
                d.set_item("outcome", name)?;
                let syntax: Vec<Violation>;
                let listed: &[Violation] = if refusal == Refusal::Unparseable {
                    syntax = checked.violations.iter().filter(|v| v.rule == "syntax").cloned().collect();
                    &syntax
                } else {
                    &checked.violations
                };
                d.set_item("unreadable", checked.unreadable())?;
                d.set_item("violations", violation_list(py, &listed[..listed.len().min(self.max_violations)])?)?;
                d.set_item("violations_total", listed.len())?;
                checked
            }
        };
        d.set_item("received", checked.received)?;
        d.set_item("valid", checked.valid())?;
        d.set_item("rejected", checked.rejected)?;
        Ok(d)
    }
}

/// `timings`: milliseconds per step (`check`, `ledger`, `kinesis`).
fn set_timings(py: Python<'_>, d: &Bound<'_, PyDict>, timings: &Timings) -> PyResult<()> {
    let t = PyDict::new(py);
    t.set_item("check", timings.check.as_secs_f64() * 1000.0)?;
    t.set_item("ledger", timings.ledger.as_secs_f64() * 1000.0)?;
    t.set_item("kinesis", timings.kinesis.as_secs_f64() * 1000.0)?;
    d.set_item("timings", t)
}
