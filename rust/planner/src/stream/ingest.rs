//! [`Ingest`]: what the ingest API does with a request body, in one call: validate it
//! against its dataset's contract and SQL rules, decide (strict or lenient), register the
//! job, publish it to Kinesis and mark it published.
//!
//! Validation is group-committed like publishing: each check pays a fixed cost (a
//! DataFusion run of the SQL rules) however few records it holds, so the small bodies of
//! concurrent requests (one JSON object, a few NDJSON lines) waiting at the same moment are
//! checked as one NDJSON input, and each request gets its own results with record indexes
//! renumbered. A body with a syntax error is checked again alone, so its error names a
//! position in that body. Larger bodies, JSON arrays and CSV are checked alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::error::{StreamError, StreamResult};
use super::ledger::JobLedger;
use super::producer::{Producer, Publication};
use crate::{InputFormat, Processor, Violation};

/// Bodies up to this size are checked in groups.
pub const MAX_GROUPED_BODY: usize = 64 * 1024;
/// Records one grouped check takes at most.
const MAX_GROUP_RECORDS: usize = 4096;

/// `Strict`: any invalid record refuses the request. `Lenient`: the body is published and
/// the consumer quarantines the invalid records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestMode {
    Strict,
    Lenient,
}

/// One body's check: its record count, rejected records and every violation (record
/// indexes within the body).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    pub received: usize,
    pub rejected: usize,
    pub violations: Vec<Violation>,
}

impl Checked {
    pub fn valid(&self) -> usize {
        self.received - self.rejected
    }

    /// Records that are not well-formed JSON/CSV.
    pub fn unreadable(&self) -> usize {
        self.violations.iter().filter(|v| v.rule == "syntax").map(|v| v.record_index).collect::<BTreeSet<_>>().len()
    }

    fn of(received: usize, violations: Vec<Violation>) -> Self {
        let rejected = violations.iter().map(|v| v.record_index).collect::<BTreeSet<_>>().len();
        Self { received, rejected, violations }
    }
}

/// Why nothing was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The body holds no records.
    Empty,
    /// Records cannot be parsed (any, in strict mode; all, in lenient mode).
    Unparseable,
    /// Strict mode and some records break the contract.
    Violations,
}

#[derive(Debug)]
pub enum IngestOutcome {
    /// Kinesis accepted every record of the job.
    Published { checked: Checked, publication: Publication, timings: Timings },
    Refused { checked: Checked, refusal: Refusal, timings: Timings },
}

/// Where one request's time went (the API's `Server-Timing` header and access log): the
/// contract check (waiting for a grouped check included), the job ledger's two writes and
/// the wait for Kinesis to accept the job's records (zero when nothing was published).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub check: Duration,
    pub ledger: Duration,
    pub kinesis: Duration,
}

/// A small body waiting for a grouped check: its records as NDJSON lines.
struct Grouped {
    lines: Vec<u8>,
    records: usize,
    reply: oneshot::Sender<StreamResult<Checked>>,
}

struct Dataset {
    processor: Processor,
    group: mpsc::Sender<Grouped>,
}

/// The ingest path of one process: checks, then publishes through the shared producer.
pub struct Ingest {
    datasets: HashMap<String, Dataset>,
    producer: Arc<Producer>,
    ledger: Option<JobLedger>,
}

impl Ingest {
    /// One checker task per dataset; must be called inside the Tokio runtime.
    pub fn new(processors: Vec<Processor>, producer: Arc<Producer>, ledger: Option<JobLedger>) -> Self {
        let datasets = processors
            .into_iter()
            .map(|processor| {
                let (group, queue) = mpsc::channel(16 * 1024);
                tokio::spawn(check_groups(processor.clone(), queue));
                (processor.contract().name.clone(), Dataset { processor, group })
            })
            .collect();
        Self { datasets, producer, ledger }
    }

    pub fn datasets(&self) -> Vec<String> {
        self.datasets.keys().cloned().collect()
    }

    fn dataset(&self, name: &str) -> StreamResult<&Dataset> {
        self.datasets.get(name).ok_or_else(|| StreamError::Input { dataset: name.to_string(), message: "no such dataset".into() })
    }

    /// Checks `body`, then publishes it as job `job_id` unless `mode` refuses it.
    pub async fn ingest(&self, dataset: &str, body: Vec<u8>, format: InputFormat, mode: IngestMode, job_id: &str) -> StreamResult<IngestOutcome> {
        let started = Instant::now();
        let checked = self.check(dataset, &body, format).await?;
        let mut timings = Timings { check: started.elapsed(), ..Timings::default() };
        let unreadable = checked.unreadable();
        let refusal = if checked.received == 0 {
            Some(Refusal::Empty)
        } else if unreadable > 0 && (mode == IngestMode::Strict || unreadable == checked.received) {
            Some(Refusal::Unparseable)
        } else if !checked.violations.is_empty() && mode == IngestMode::Strict {
            Some(Refusal::Violations)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Ok(IngestOutcome::Refused { checked, refusal, timings });
        }
        let publication = publish_job_timed(&self.producer, self.ledger.as_ref(), dataset, job_id, &body, format, &mut timings).await?;
        Ok(IngestOutcome::Published { checked, publication, timings })
    }

    /// Validates `body` (grouped with other small bodies when it is one).
    pub async fn check(&self, dataset: &str, body: &[u8], format: InputFormat) -> StreamResult<Checked> {
        let target = self.dataset(dataset)?;
        let Some((lines, records)) = grouped_lines(body, format) else {
            return check_alone(&target.processor, body.to_vec(), format).await;
        };
        if records == 0 {
            return Ok(Checked::default());
        }
        let (reply, checked) = oneshot::channel();
        let stopped = || StreamError::Internal(format!("the checker of {dataset} stopped"));
        target.group.send(Grouped { lines, records, reply }).await.map_err(|_| stopped())?;
        let checked = checked.await.map_err(|_| stopped())??;
        if checked.unreadable() > 0 {
            // Positions in the joined lines are not positions in this body.
            return check_alone(&target.processor, body.to_vec(), format).await;
        }
        Ok(checked)
    }
}

/// Registers the job, publishes it, marks it published (or failed) in the jobs table.
pub async fn publish_job(
    producer: &Producer,
    ledger: Option<&JobLedger>,
    dataset: &str,
    job_id: &str,
    data: &[u8],
    format: InputFormat,
) -> StreamResult<Publication> {
    publish_job_timed(producer, ledger, dataset, job_id, data, format, &mut Timings::default()).await
}

/// [`publish_job`], adding the ledger's and Kinesis's time to `timings`.
async fn publish_job_timed(
    producer: &Producer,
    ledger: Option<&JobLedger>,
    dataset: &str,
    job_id: &str,
    data: &[u8],
    format: InputFormat,
    timings: &mut Timings,
) -> StreamResult<Publication> {
    let mut started = Instant::now();
    if let Some(ledger) = ledger {
        ledger.accepted(job_id, dataset, 0).await?;
        timings.ledger += started.elapsed();
        started = Instant::now();
    }
    let published = producer.publish(dataset, job_id, data, format).await;
    timings.kinesis += started.elapsed();
    match published {
        Ok(publication) => {
            if let Some(ledger) = ledger {
                let started = Instant::now();
                ledger.published(job_id, publication.records.len() as i64, publication.events as i64).await?;
                timings.ledger += started.elapsed();
            }
            Ok(publication)
        }
        Err(e) => {
            if let Some(ledger) = ledger {
                ledger.failed(job_id, &e.to_string()).await?;
            }
            Err(e)
        }
    }
}

/// A small JSON object or NDJSON body as NDJSON lines (each ending in `\n`) and their count;
/// `None` for anything checked alone.
fn grouped_lines(body: &[u8], format: InputFormat) -> Option<(Vec<u8>, usize)> {
    if body.len() > MAX_GROUPED_BODY {
        return None;
    }
    match format {
        InputFormat::Json => {
            let text = body.trim_ascii();
            if !text.starts_with(b"{") {
                return None;
            }
            // Raw line breaks in JSON text are white space (inside strings they are escaped).
            let mut line: Vec<u8> = text.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect();
            line.push(b'\n');
            Some((line, 1))
        }
        InputFormat::Ndjson => {
            let mut lines = Vec::with_capacity(body.len() + 1);
            let mut records = 0;
            for line in body.split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines.extend_from_slice(line);
                lines.push(b'\n');
                records += 1;
            }
            Some((lines, records))
        }
        InputFormat::Csv => None,
    }
}

async fn check_alone(processor: &Processor, body: Vec<u8>, format: InputFormat) -> StreamResult<Checked> {
    let processor = processor.clone();
    let runtime = tokio::runtime::Handle::current();
    // A large body keeps a thread busy for a while: not one of the runtime's workers.
    let outcome = tokio::task::spawn_blocking(move || runtime.block_on(processor.validate_bytes(&body, format)))
        .await
        .map_err(|e| StreamError::Internal(format!("a validation task failed: {e}")))??;
    Ok(Checked::of(outcome.records, outcome.violations))
}

/// The checker of one dataset: takes every small body waiting, checks them as one input.
async fn check_groups(processor: Processor, mut queue: mpsc::Receiver<Grouped>) {
    while let Some(first) = queue.recv().await {
        let mut records = first.records;
        let mut group = vec![first];
        while records < MAX_GROUP_RECORDS {
            match queue.try_recv() {
                Ok(next) => {
                    records += next.records;
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let mut data = Vec::with_capacity(group.iter().map(|g| g.lines.len()).sum());
        for g in &group {
            data.extend_from_slice(&g.lines);
        }
        match processor.validate_bytes(&data, InputFormat::Ndjson).await {
            Ok(outcome) if outcome.records == records => {
                let mut violations = outcome.violations.into_iter().peekable();
                let mut offset = 0u64;
                for g in group {
                    let end = offset + g.records as u64;
                    let mut own = Vec::new();
                    while let Some(v) = violations.next_if(|v| v.record_index < end) {
                        own.push(Violation { record_index: v.record_index - offset, ..v });
                    }
                    let _ = g.reply.send(Ok(Checked::of(g.records, own)));
                    offset = end;
                }
            }
            // The lines did not come out one record each, or the input as a whole failed:
            // check every body on its own.
            _ => {
                for g in group {
                    let _ = g.reply.send(check_alone(&processor, g.lines, InputFormat::Ndjson).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_and_ndjson_become_lines_the_rest_is_checked_alone() {
        assert_eq!(grouped_lines(b" {\"a\":\n1}\r\n", InputFormat::Json), Some((b"{\"a\": 1}\n".to_vec(), 1)));
        assert_eq!(grouped_lines(b"{\"a\":1}\n\n  \r\n{\"a\":2}", InputFormat::Ndjson), Some((b"{\"a\":1}\n{\"a\":2}\n".to_vec(), 2)));
        assert_eq!(grouped_lines(b"[{\"a\":1}]", InputFormat::Json), None);
        assert_eq!(grouped_lines(b"a\n1\n", InputFormat::Csv), None);
        assert_eq!(grouped_lines(&vec![b' '; MAX_GROUPED_BODY + 1], InputFormat::Ndjson), None);
    }
}
