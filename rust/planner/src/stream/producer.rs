//! [`Producer`]: puts a job's events on its dataset's Kinesis stream, packed many per record.
//!
//! `publish` cuts the input at event boundaries into chunks that compress to at most one
//! Kinesis record ([`super::record`]), and hands the records to a background flusher. The
//! flusher is a group commit: records of every concurrent `publish` call waiting at that
//! moment go out together in PutRecords calls (at most 500 records / 5 MB each), several
//! calls in flight. Small NDJSON jobs (up to 64 KiB, what single-event API requests are)
//! are not packed alone: the flusher packs every small job waiting into shared records, one
//! segment per job, so a thousand one-event requests cost a few Kinesis records, not a
//! thousand. Records Kinesis refuses (throttling, internal failures) are retried with
//! exponential backoff; `publish` returns only when every record of the job is accepted,
//! with the shard and sequence number of each, or fails saying how many were accepted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, Mutex, Semaphore};

use super::error::{StreamError, StreamResult};
use super::kinesis::{sdk_message, Kinesis};
use super::record::{encode, RecordHeader, Segment, MAX_KINESIS_RECORD_BYTES};
use crate::processor::json_is_line_delimited;
use crate::InputFormat;

/// PutRecords limits.
const MAX_RECORDS_PER_CALL: usize = 500;
const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;

/// How the producer packs and sends.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Largest record payload; Kinesis allows 1 MiB including the partition key.
    pub max_record_bytes: usize,
    pub zstd_level: i32,
    /// Attempts per record before `publish` gives up on it.
    pub max_attempts: u32,
    /// First retry delay, doubled per attempt up to 2 s.
    pub retry_backoff: Duration,
    /// PutRecords calls in flight at once.
    pub max_in_flight: usize,
    /// NDJSON jobs up to this size share records with other small jobs.
    pub max_segment_bytes: usize,
    /// Uncompressed events of one shared record at most (well below the record limit even
    /// if they do not compress).
    pub max_shared_record_bytes: usize,
    /// How long the flusher waits after the first record of a group for others to join it
    /// (the Kinesis Producer Library's `RecordMaxBufferedTime`). Zero sends what is waiting
    /// at once: concurrent calls still share records, sequential ones do not wait.
    pub linger: Duration,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        Self {
            max_record_bytes: MAX_KINESIS_RECORD_BYTES - 256,
            zstd_level: 1,
            max_attempts: 10,
            retry_backoff: Duration::from_millis(50),
            max_in_flight: 2,
            max_segment_bytes: 64 * 1024,
            max_shared_record_bytes: 512 * 1024,
            linger: Duration::ZERO,
        }
    }
}

/// Where Kinesis stored (a part of) a job: one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReceipt {
    pub shard_id: String,
    pub sequence_number: String,
    /// The job's events in the record.
    pub events: u32,
    /// The job's share of the record's bytes (all of them unless it shares the record).
    pub bytes: u64,
}

/// One published job.
#[derive(Debug, Clone)]
pub struct Publication {
    pub job_id: String,
    pub dataset: String,
    pub stream: String,
    pub events: u64,
    /// Bytes of the input, and of its records after packing (its share of shared records).
    pub input_bytes: u64,
    pub record_bytes: u64,
    pub records: Vec<RecordReceipt>,
}

type Reply = oneshot::Sender<Result<RecordReceipt, String>>;

/// What `publish` hands the flusher.
enum Payload {
    /// A packed record: a part of a large job, or a CSV job.
    Record { partition_key: String, data: Vec<u8> },
    /// A small NDJSON job's events, to share a record with other small jobs.
    Segment { job_id: String, events: Vec<u8> },
}

struct Pending {
    stream: String,
    dataset: String,
    payload: Payload,
    events: u32,
    reply: Reply,
}

/// One record of a PutRecords call, and the jobs waiting for it (their events in it).
struct Outgoing {
    partition_key: String,
    data: Vec<u8>,
    replies: Vec<(Reply, u32)>,
}

/// A Kinesis producer; share one per process (it is `Send + Sync`).
pub struct Producer {
    kinesis: Kinesis,
    options: ProducerOptions,
    queue: mpsc::Sender<Pending>,
    ensured: Mutex<HashSet<String>>,
}

impl Producer {
    /// Starts the flusher on the current Tokio runtime.
    pub fn new(kinesis: Kinesis, options: ProducerOptions) -> Self {
        let (queue, pending) = mpsc::channel(64 * 1024);
        tokio::spawn(flush(kinesis.clone(), options.clone(), pending));
        Self { kinesis, options, queue, ensured: Mutex::new(HashSet::new()) }
    }

    pub fn kinesis(&self) -> &Kinesis {
        &self.kinesis
    }

    /// Publishes `data` (events of `dataset` in `format`) as job `job_id` on the dataset's
    /// stream, creating the stream if needed. Returns once Kinesis accepted every record.
    pub async fn publish(&self, dataset: &str, job_id: &str, data: &[u8], format: InputFormat) -> StreamResult<Publication> {
        let stream = self.kinesis.config().stream_name(dataset)?;
        if !self.ensured.lock().await.contains(&stream) {
            self.kinesis.ensure_stream(&stream).await?;
            self.ensured.lock().await.insert(stream.clone());
        }
        let input = split_events(dataset, data, format)?;
        if input.events.is_empty() {
            return Err(StreamError::Input { dataset: dataset.to_string(), message: format!("job {job_id}: the input holds no events") });
        }
        let all = 0..input.events.len();
        let payloads: Vec<(Payload, u32)> = if input.format == InputFormat::Ndjson && input.text_len(all.clone()) <= self.options.max_segment_bytes {
            vec![(Payload::Segment { job_id: job_id.to_string(), events: input.text(all) }, input.events.len() as u32)]
        } else {
            pack_events(dataset, job_id, &input, &self.options)?
                .into_iter()
                .enumerate()
                .map(|(i, (data, events))| (Payload::Record { partition_key: format!("{job_id}/{i}"), data }, events))
                .collect()
        };
        let events: u64 = payloads.iter().map(|p| p.1 as u64).sum();
        let mut replies = Vec::with_capacity(payloads.len());
        for (payload, events) in payloads {
            let (reply, receipt) = oneshot::channel();
            let pending = Pending { stream: stream.clone(), dataset: dataset.to_string(), payload, events, reply };
            self.queue.send(pending).await.map_err(|_| StreamError::Internal("the producer's flusher stopped".into()))?;
            replies.push(receipt);
        }
        let mut records = Vec::with_capacity(replies.len());
        let mut failures = Vec::new();
        for receipt in replies {
            match receipt.await {
                Ok(Ok(r)) => records.push(r),
                Ok(Err(e)) => failures.push(e),
                Err(_) => failures.push("the producer's flusher stopped".into()),
            }
        }
        if let Some(first) = failures.first() {
            return Err(StreamError::Kinesis {
                operation: "PutRecords",
                stream,
                message: format!(
                    "job {job_id}: {} of {} records were not accepted after {} attempts ({} were); first error: {first}",
                    failures.len(),
                    failures.len() + records.len(),
                    self.options.max_attempts,
                    records.len()
                ),
            });
        }
        Ok(Publication {
            job_id: job_id.to_string(),
            dataset: dataset.to_string(),
            stream,
            events,
            input_bytes: data.len() as u64,
            record_bytes: records.iter().map(|r| r.bytes).sum(),
            records,
        })
    }
}

/// The events of an input, one slice per event, in a format that can be cut anywhere between
/// events: NDJSON lines, or CSV records after a header.
struct Events<'a> {
    format: InputFormat,
    /// CSV header line (with its line end); empty for NDJSON.
    header: Vec<u8>,
    events: Vec<std::borrow::Cow<'a, [u8]>>,
}

impl Events<'_> {
    /// Bytes of [`Events::text`] for these events.
    fn text_len(&self, range: std::ops::Range<usize>) -> usize {
        self.header.len() + self.events[range].iter().map(|e| e.len() + 1).sum::<usize>()
    }

    /// The header (CSV) and these events, each ending in a line break: a record's events.
    fn text(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut text = Vec::with_capacity(self.text_len(range.clone()));
        text.extend_from_slice(&self.header);
        for event in &self.events[range] {
            text.extend_from_slice(event);
            if !event.ends_with(b"\n") {
                text.push(b'\n');
            }
        }
        text
    }
}

fn split_events<'a>(dataset: &str, data: &'a [u8], format: InputFormat) -> StreamResult<Events<'a>> {
    let input_err = |message: String| StreamError::Input { dataset: dataset.to_string(), message };
    let lines = |data: &'a [u8]| -> Vec<std::borrow::Cow<'a, [u8]>> {
        data.split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
            .map(std::borrow::Cow::Borrowed)
            .collect()
    };
    match format {
        InputFormat::Ndjson => Ok(Events { format: InputFormat::Ndjson, header: Vec::new(), events: lines(data) }),
        InputFormat::Json if json_is_line_delimited(data) => {
            Ok(Events { format: InputFormat::Ndjson, header: Vec::new(), events: lines(data) })
        }
        InputFormat::Json => {
            let text = std::str::from_utf8(data).map_err(|e| input_err(format!("the JSON is not UTF-8: {e}")))?;
            let trimmed = text.trim_start();
            let raw: Vec<&RawValue> = if trimmed.starts_with('[') {
                serde_json::from_str(trimmed).map_err(|e| input_err(format!("invalid JSON array: {e}")))?
            } else {
                vec![serde_json::from_str(trimmed).map_err(|e| input_err(format!("invalid JSON: {e}")))?]
            };
            // Raw line breaks in JSON text are whitespace (breaks inside strings are escaped),
            // so replacing them puts each event on one line.
            let events = raw
                .into_iter()
                .map(|v| {
                    let bytes = v.get().as_bytes();
                    if bytes.iter().any(|&b| b == b'\n' || b == b'\r') {
                        std::borrow::Cow::Owned(bytes.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }).collect())
                    } else {
                        std::borrow::Cow::Owned(bytes.to_vec())
                    }
                })
                .collect();
            Ok(Events { format: InputFormat::Ndjson, header: Vec::new(), events })
        }
        InputFormat::Csv => {
            let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
            let mut starts = Vec::new();
            let mut record = csv::ByteRecord::new();
            loop {
                let start = reader.position().byte() as usize;
                match reader.read_byte_record(&mut record) {
                    Ok(true) => starts.push(start),
                    Ok(false) => break,
                    Err(e) => return Err(input_err(format!("invalid CSV: {e}"))),
                }
            }
            let Some((&header_start, rest)) = starts.split_first() else {
                return Ok(Events { format: InputFormat::Csv, header: Vec::new(), events: Vec::new() });
            };
            let with_newline = |slice: &'a [u8]| -> std::borrow::Cow<'a, [u8]> {
                if slice.ends_with(b"\n") {
                    std::borrow::Cow::Borrowed(slice)
                } else {
                    let mut owned = slice.to_vec();
                    owned.push(b'\n');
                    std::borrow::Cow::Owned(owned)
                }
            };
            let mut ends: Vec<usize> = rest.to_vec();
            ends.push(data.len());
            let header = with_newline(&data[header_start..ends[0]]).into_owned();
            let events = ends.windows(2).map(|w| with_newline(&data[w[0]..w[1]])).collect();
            Ok(Events { format: InputFormat::Csv, header, events })
        }
    }
}

/// Cuts the input into records of at most `max_record_bytes` each: `(record bytes, events)`.
#[cfg(test)]
pub(crate) fn pack(
    dataset: &str,
    job_id: &str,
    data: &[u8],
    format: InputFormat,
    options: &ProducerOptions,
) -> StreamResult<Vec<(Vec<u8>, u32)>> {
    pack_events(dataset, job_id, &split_events(dataset, data, format)?, options)
}

/// Cuts a job's events into records of at most `max_record_bytes` each: `(record bytes, events)`.
fn pack_events(dataset: &str, job_id: &str, input: &Events<'_>, options: &ProducerOptions) -> StreamResult<Vec<(Vec<u8>, u32)>> {
    let mut records = Vec::new();
    // Uncompressed bytes per record, adapted to the compression ratio seen so far.
    let mut target = 4 * options.max_record_bytes;
    let mut start = 0;
    while start < input.events.len() {
        let mut end = start;
        let mut size = input.header.len();
        while end < input.events.len() && (end == start || size + input.events[end].len() < target) {
            size += input.events[end].len() + 1;
            end += 1;
        }
        loop {
            let record = encode_chunk(dataset, job_id, input, start, end, options)?;
            if record.len() <= options.max_record_bytes {
                let ratio = record.len() as f64 / size.max(1) as f64;
                target = ((options.max_record_bytes as f64 * 0.85 / ratio.max(0.01)) as usize).max(1024);
                records.push((record, (end - start) as u32));
                break;
            }
            if end - start == 1 {
                return Err(StreamError::Input {
                    dataset: dataset.to_string(),
                    message: format!(
                        "event {start} of job {job_id} is {} bytes compressed, more than a Kinesis record holds ({} bytes)",
                        record.len(),
                        options.max_record_bytes
                    ),
                });
            }
            let half = (end - start) / 2;
            end = start + half;
            size = input.text_len(start..end);
        }
        start = end;
    }
    Ok(records)
}

fn encode_chunk(
    dataset: &str,
    job_id: &str,
    input: &Events<'_>,
    start: usize,
    end: usize,
    options: &ProducerOptions,
) -> StreamResult<Vec<u8>> {
    let events = input.text(start..end);
    let header = RecordHeader::single(job_id, dataset, input.format, start as u64, (end - start) as u32);
    encode(&header, &events, options.zstd_level)
        .map_err(|e| StreamError::Input { dataset: dataset.to_string(), message: format!("cannot pack job {job_id}: {e}") })
}

/// The flusher: takes every record waiting, sends them in PutRecords calls per stream.
async fn flush(kinesis: Kinesis, options: ProducerOptions, mut queue: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight));
    while let Some(first) = queue.recv().await {
        // Wait for a free call slot first: records that arrive meanwhile join this group.
        let permit = in_flight.clone().acquire_owned().await.expect("the semaphore is never closed");
        let mut by_stream: HashMap<String, Vec<Pending>> = HashMap::new();
        let mut count = 1;
        by_stream.entry(first.stream.clone()).or_default().push(first);
        let deadline = tokio::time::Instant::now() + options.linger;
        while count < MAX_RECORDS_PER_CALL * options.max_in_flight {
            let next = match queue.try_recv() {
                Ok(p) => Some(p),
                Err(_) if options.linger.is_zero() => None,
                Err(_) => tokio::time::timeout_at(deadline, queue.recv()).await.ok().flatten(),
            };
            match next {
                Some(p) => {
                    by_stream.entry(p.stream.clone()).or_default().push(p);
                    count += 1;
                }
                None => break,
            }
        }
        let mut calls: Vec<(String, Vec<Outgoing>)> = Vec::new();
        for (stream, pending) in by_stream {
            let mut call: Vec<Outgoing> = Vec::new();
            let mut bytes = 0;
            for record in outgoing(pending, &options) {
                let size = record.data.len() + record.partition_key.len();
                if !call.is_empty() && (call.len() == MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL) {
                    calls.push((stream.clone(), std::mem::take(&mut call)));
                    bytes = 0;
                }
                bytes += size;
                call.push(record);
            }
            if !call.is_empty() {
                calls.push((stream, call));
            }
        }
        let mut permit = Some(permit);
        for (stream, call) in calls {
            let permit = match permit.take() {
                Some(p) => p,
                None => in_flight.clone().acquire_owned().await.expect("the semaphore is never closed"),
            };
            let kinesis = kinesis.clone();
            let options = options.clone();
            tokio::spawn(async move {
                put_records(&kinesis, &options, &stream, call).await;
                drop(permit);
            });
        }
    }
}

/// The records to send for one stream's waiting payloads: packed records as they are, small
/// jobs packed together into shared records (one segment each).
fn outgoing(pending: Vec<Pending>, options: &ProducerOptions) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let mut shared: Vec<(String, Vec<u8>, u32, Reply)> = Vec::new();
    let mut shared_bytes = 0;
    let mut dataset = String::new();
    for p in pending {
        match p.payload {
            Payload::Record { partition_key, data } => out.push(Outgoing { partition_key, data, replies: vec![(p.reply, p.events)] }),
            Payload::Segment { job_id, events } => {
                if !shared.is_empty() && shared_bytes + events.len() > options.max_shared_record_bytes {
                    out.extend(shared_record(&dataset, std::mem::take(&mut shared), options));
                    shared_bytes = 0;
                }
                dataset = p.dataset;
                shared_bytes += events.len();
                shared.push((job_id, events, p.events, p.reply));
            }
        }
    }
    if !shared.is_empty() {
        out.extend(shared_record(&dataset, shared, options));
    }
    out
}

/// One record holding several small jobs (or none, if it cannot be encoded: each job is told).
fn shared_record(dataset: &str, jobs: Vec<(String, Vec<u8>, u32, Reply)>, options: &ProducerOptions) -> Option<Outgoing> {
    let mut events = Vec::with_capacity(jobs.iter().map(|j| j.1.len()).sum());
    let mut segments = Vec::with_capacity(jobs.len());
    for (job_id, job_events, count, _) in &jobs {
        events.extend_from_slice(job_events);
        segments.push(Segment { job_id: job_id.clone(), first_index: 0, event_count: *count });
    }
    let partition_key = format!("{}/0", segments[0].job_id);
    let header = RecordHeader { dataset: dataset.to_string(), format: InputFormat::Ndjson, segments };
    match encode(&header, &events, options.zstd_level) {
        Ok(data) => Some(Outgoing { partition_key, data, replies: jobs.into_iter().map(|(_, _, count, reply)| (reply, count)).collect() }),
        Err(e) => {
            for (job_id, _, _, reply) in jobs {
                let _ = reply.send(Err(format!("cannot pack job {job_id}: {e}")));
            }
            None
        }
    }
}

/// Each job's share of a record's bytes, by events; the shares add up to the record's size.
fn byte_shares(record_bytes: u64, events: &[u32]) -> Vec<u64> {
    let total: u64 = events.iter().map(|&e| e as u64).sum::<u64>().max(1);
    let mut shares: Vec<u64> = events.iter().map(|&e| record_bytes * e as u64 / total).collect();
    shares[0] += record_bytes - shares.iter().sum::<u64>();
    shares
}

/// One PutRecords group, retrying refused records until accepted or out of attempts.
async fn put_records(kinesis: &Kinesis, options: &ProducerOptions, stream: &str, mut pending: Vec<Outgoing>) {
    let mut delay = options.retry_backoff;
    for attempt in 1..=options.max_attempts {
        let entries: Vec<PutRecordsRequestEntry> = pending
            .iter()
            .map(|p| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(p.data.clone()))
                    .partition_key(&p.partition_key)
                    .build()
                    .expect("data and partition key are set")
            })
            .collect();
        let last = attempt == options.max_attempts;
        match kinesis.client().put_records().stream_name(stream).set_records(Some(entries)).send().await {
            Ok(out) => {
                let mut retry = Vec::new();
                for (p, result) in pending.into_iter().zip(out.records()) {
                    match (result.shard_id(), result.sequence_number(), result.error_code()) {
                        (Some(shard), Some(sequence), None) => {
                            let counts: Vec<u32> = p.replies.iter().map(|r| r.1).collect();
                            let shares = byte_shares(p.data.len() as u64, &counts);
                            for ((reply, events), bytes) in p.replies.into_iter().zip(shares) {
                                let receipt = RecordReceipt {
                                    shard_id: shard.to_string(),
                                    sequence_number: sequence.to_string(),
                                    events,
                                    bytes,
                                };
                                let _ = reply.send(Ok(receipt));
                            }
                        }
                        (_, _, code) => {
                            let message = format!("{}: {}", code.unwrap_or("no result"), result.error_message().unwrap_or(""));
                            if last {
                                for (reply, _) in p.replies {
                                    let _ = reply.send(Err(message.clone()));
                                }
                            } else {
                                retry.push(p);
                            }
                        }
                    }
                }
                if retry.is_empty() {
                    return;
                }
                tracing::warn!(component = "producer", event = "records_retried", stream, records = retry.len(), attempt);
                pending = retry;
            }
            Err(e) => {
                let message = sdk_message(&e);
                tracing::warn!(component = "producer", event = "put_records_failed", stream, attempt, error = %message);
                if last {
                    for (reply, _) in pending.into_iter().flat_map(|p| p.replies) {
                        let _ = reply.send(Err(message.clone()));
                    }
                    return;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::record::{decode, WeirRecord};

    fn options(max: usize) -> ProducerOptions {
        ProducerOptions { max_record_bytes: max, ..ProducerOptions::default() }
    }

    fn unpack(records: &[(Vec<u8>, u32)]) -> (Vec<String>, Vec<u64>) {
        let mut lines = Vec::new();
        let mut firsts = Vec::new();
        for (bytes, events) in records {
            let record = decode(bytes).unwrap();
            assert_eq!(record.header.event_count(), *events as u64);
            firsts.push(record.header.segments[0].first_index);
            let text = String::from_utf8(record.events).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
        (lines, firsts)
    }

    #[test]
    fn ndjson_is_cut_at_event_boundaries_within_the_record_limit() {
        // Incompressible-ish events so several records are needed.
        let data: String = (0..3000).map(|i| format!("{{\"id\":{i},\"v\":\"{:x}\"}}\n", (i as u64).wrapping_mul(0x9e3779b97f4a7c15))).collect();
        let records = pack("d", "job", data.as_bytes(), InputFormat::Ndjson, &options(8 * 1024)).unwrap();
        assert!(records.len() > 2, "{}", records.len());
        assert!(records.iter().all(|(r, _)| r.len() <= 8 * 1024));
        let (lines, firsts) = unpack(&records);
        assert_eq!(lines, data.lines().collect::<Vec<_>>());
        assert_eq!(firsts[0], 0);
        assert_eq!(firsts[1], records[0].1 as u64);
    }

    #[test]
    fn json_arrays_become_lines_and_csv_keeps_its_header() {
        let records = pack("d", "job", b"[{\"a\": 1},\n {\"a\":\n 2}]", InputFormat::Json, &options(1 << 20)).unwrap();
        assert_eq!(unpack(&records).0, vec!["{\"a\": 1}", "{\"a\":  2}"]);
        let csv = b"a,b\n1,\"x\ny\"\n2,z";
        let records = pack("d", "job", csv, InputFormat::Csv, &options(1 << 20)).unwrap();
        let record = decode(&records[0].0).unwrap();
        assert_eq!(record.events, b"a,b\n1,\"x\ny\"\n2,z\n");
        assert_eq!(record.header.event_count(), 2);
    }

    #[test]
    fn an_event_larger_than_a_record_is_named() {
        let big: String = (0..20000).map(|i| format!("{:x}", (i as u64).wrapping_mul(0x9e3779b97f4a7c15))).collect();
        let data = format!("{{\"a\":1}}\n{{\"big\":\"{big}\"}}\n");
        let err = pack("d", "job", data.as_bytes(), InputFormat::Ndjson, &options(4096)).unwrap_err().to_string();
        assert!(err.contains("event 1 of job job"), "{err}");
    }

    #[test]
    fn small_jobs_share_records_and_each_gets_its_events_back() {
        let options = ProducerOptions { max_shared_record_bytes: 39, ..ProducerOptions::default() };
        let mut answers = Vec::new();
        let mut pending = Vec::new();
        for (job, events) in [("j1", "{\"a\":1}\n"), ("j2", "{\"a\":2}\n{\"a\":3}\n"), ("j3", "{\"a\":4}\n"), ("j4", "{\"a\":5}\n")] {
            let (reply, answer) = oneshot::channel();
            answers.push(answer);
            let count = events.lines().count() as u32;
            let payload = Payload::Segment { job_id: job.into(), events: events.as_bytes().to_vec() };
            pending.push(Pending { stream: "s".into(), dataset: "d".into(), payload, events: count, reply });
        }
        let (reply, _answer) = oneshot::channel();
        let payload = Payload::Record { partition_key: "big/0".into(), data: b"packed".to_vec() };
        pending.insert(1, Pending { stream: "s".into(), dataset: "d".into(), payload, events: 9, reply });
        let out = outgoing(pending, &options);
        // The packed record as it is; the 4 small jobs (8 + 16 + 8 + 8 bytes) in two records.
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].data, b"packed");
        let shared: Vec<WeirRecord> = out[1..].iter().map(|o| decode(&o.data).unwrap()).collect();
        let jobs: Vec<Vec<(String, u32)>> =
            shared.iter().map(|r| r.header.segments.iter().map(|s| (s.job_id.clone(), s.event_count)).collect()).collect();
        assert_eq!(jobs, vec![vec![("j1".into(), 1), ("j2".into(), 2), ("j3".into(), 1)], vec![("j4".into(), 1)]]);
        assert_eq!(shared[0].events, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n");
        assert_eq!(out[1].partition_key, "j1/0");
        assert_eq!(out[1].replies.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 2, 1]);
        assert_eq!(byte_shares(101, &[1, 2, 1]), vec![26, 50, 25]);
    }
}
