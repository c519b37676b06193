//! Unpacking a consumer batch: its Kinesis records, decoded as Weir records (see
//! [`super::record`]), become the processor's inputs (every NDJSON event of the batch in one
//! input, each CSV record in its own), with [`EventSpan`]s leading each event back to its
//! record, segment and job. After processing, rejected rows are labelled with their job and
//! index within it, and each segment becomes a [`JobRecord`]. Records that cannot be
//! processed become dead-letter rows.
//!
//! Pure functions: no I/O, no state; the consumer (see [`super::consumer`]) runs the
//! processor and commits.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BinaryArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::UInt64Type;

use super::error::StreamResult;
use super::metastore::JobRecord;
use super::record::{decode, decode_header, WeirRecord};
use super::source::SourceRecord;
use crate::dataset::{dead_letter_schema, rejected_table_schema};
use crate::InputFormat;

/// Where one segment's events are in a processor input.
pub(super) struct EventSpan {
    /// Index of the Kinesis record in the batch, and of the segment in the record.
    pub record: usize,
    pub segment: usize,
    /// Index of its first event in the input, and its event count.
    pub first: usize,
    pub events: usize,
}

/// A batch's records, unpacked.
pub(super) struct Unpacked {
    /// Per record of the batch, its Weir record (`None` if it is in `dead`).
    pub decoded: Vec<Option<WeirRecord>>,
    /// Records that are not Weir records of this dataset: (record index, why).
    pub dead: Vec<(usize, String)>,
    /// The processor's inputs: events, their format, where each segment's events are.
    pub inputs: Vec<(Vec<u8>, InputFormat, Vec<EventSpan>)>,
}

/// Decodes `records` (read from the stream of `dataset`) into processor inputs.
pub(super) fn unpack(records: &[SourceRecord], dataset: &str) -> Unpacked {
    let mut dead: Vec<(usize, String)> = Vec::new();
    let mut ndjson: Vec<u8> = Vec::new();
    let mut ndjson_spans: Vec<EventSpan> = Vec::new();
    let mut csv_records: Vec<usize> = Vec::new();
    let mut decoded: Vec<Option<WeirRecord>> = Vec::with_capacity(records.len());
    let mut ndjson_events = 0;
    for (i, record) in records.iter().enumerate() {
        match decode(&record.data) {
            Ok(weir) if weir.header.dataset != dataset => {
                dead.push((i, format!("a record of dataset {} on the stream of {}", weir.header.dataset, dataset)));
                decoded.push(None);
            }
            Ok(weir) => {
                match weir.header.format {
                    InputFormat::Csv => csv_records.push(i),
                    _ => {
                        for (s, segment) in weir.header.segments.iter().enumerate() {
                            let events = segment.event_count as usize;
                            ndjson_spans.push(EventSpan { record: i, segment: s, first: ndjson_events, events });
                            ndjson_events += events;
                        }
                    }
                }
                decoded.push(Some(weir));
            }
            Err(message) => {
                dead.push((i, message));
                decoded.push(None);
            }
        }
    }

    // One NDJSON input of every NDJSON record, allocated once (it can be tens of MB).
    let is_ndjson = |weir: &&WeirRecord| weir.header.format != InputFormat::Csv;
    let ndjson_records = || decoded.iter().flatten().filter(is_ndjson);
    ndjson.reserve_exact(ndjson_records().map(|weir| weir.events.len()).sum());
    for weir in ndjson_records() {
        ndjson.extend_from_slice(&weir.events);
    }

    let mut inputs: Vec<(Vec<u8>, InputFormat, Vec<EventSpan>)> = Vec::new();
    if !ndjson_spans.is_empty() {
        inputs.push((ndjson, InputFormat::Ndjson, ndjson_spans));
    }
    for i in csv_records {
        let weir = decoded[i].as_ref().expect("decoded");
        let spans = vec![EventSpan { record: i, segment: 0, first: 0, events: weir.header.event_count() as usize }];
        inputs.push((weir.events.clone(), InputFormat::Csv, spans));
    }
    Unpacked { decoded, dead, inputs }
}

/// The processor's rejected rows of one input as rows of the rejected table: each to its
/// Kinesis record and job, renumbered within the job, labelled with the job; rows of records
/// `stored` says that table has already are left out. Counts the rejected events per
/// (record, segment) in `rejected_per_segment`.
pub(super) fn label_rejected(
    rejected: &RecordBatch,
    spans: &[EventSpan],
    decoded: &[Option<WeirRecord>],
    rejected_per_segment: &mut HashMap<(usize, usize), i64>,
    stored: impl Fn(usize) -> bool,
) -> StreamResult<RecordBatch> {
    let index = rejected.column(0).as_primitive::<UInt64Type>();
    let mut keep = Vec::with_capacity(rejected.num_rows());
    let mut job_index = Vec::with_capacity(rejected.num_rows());
    let mut job_ids = Vec::with_capacity(rejected.num_rows());
    for row in 0..rejected.num_rows() {
        let event = index.value(row) as usize;
        let span = &spans[spans.partition_point(|s| s.first + s.events <= event)];
        let segment = &decoded[span.record].as_ref().expect("decoded").header.segments[span.segment];
        *rejected_per_segment.entry((span.record, span.segment)).or_default() += 1;
        keep.push(!stored(span.record));
        job_index.push(segment.first_index + (event - span.first) as u64);
        job_ids.push(segment.job_id.clone());
    }
    let mut columns: Vec<ArrayRef> = rejected.columns().to_vec();
    columns[0] = Arc::new(UInt64Array::from(job_index));
    columns.push(Arc::new(StringArray::from(job_ids)));
    let labelled = RecordBatch::try_new(Arc::new(rejected_table_schema()), columns)?;
    Ok(filter_record_batch(&labelled, &keep.into())?)
}

/// One job record per segment of the decoded records, with its rejected events from
/// `rejected_per_segment` (see [`label_rejected`]).
pub(super) fn job_records(
    records: &[SourceRecord],
    decoded: &[Option<WeirRecord>],
    rejected_per_segment: &HashMap<(usize, usize), i64>,
) -> Vec<JobRecord> {
    let mut job_records = Vec::new();
    for (i, weir) in decoded.iter().enumerate() {
        let Some(weir) = weir else { continue };
        for (s, segment) in weir.header.segments.iter().enumerate() {
            let count = segment.event_count as i64;
            let rejected = rejected_per_segment.get(&(i, s)).copied().unwrap_or(0);
            job_records.push(JobRecord {
                job_id: segment.job_id.clone(),
                shard_id: records[i].shard_id.to_string(),
                sequence_number: records[i].sequence_number.clone(),
                events: count,
                valid: count - rejected,
                rejected,
            });
        }
    }
    job_records
}

/// One job record per segment of the records whose header is readable, with no event
/// stored (a batch that failed every attempt).
pub(super) fn failed_job_records(records: &[SourceRecord]) -> Vec<JobRecord> {
    records
        .iter()
        .filter_map(|r| Some((r, decode_header(&r.data).ok()?)))
        .flat_map(|(r, header)| {
            header.segments.into_iter().map(move |segment| JobRecord {
                job_id: segment.job_id,
                shard_id: r.shard_id.to_string(),
                sequence_number: r.sequence_number.clone(),
                events: segment.event_count as i64,
                valid: 0,
                rejected: 0,
            })
        })
        .collect()
}

/// Dead-letter rows for `rows` (record index, error) of `records`.
pub(super) fn dead_letter_batch(stream: &str, records: &[SourceRecord], rows: &[(usize, String)]) -> StreamResult<RecordBatch> {
    let pick = |f: &dyn Fn(&SourceRecord) -> String| -> ArrayRef {
        Arc::new(rows.iter().map(|(i, _)| Some(f(&records[*i]))).collect::<StringArray>())
    };
    let job_ids: StringArray = rows.iter().map(|(i, _)| decode_header(&records[*i].data).ok().map(|h| h.job_ids())).collect();
    let arrival: TimestampMicrosecondArray =
        rows.iter().map(|(i, _)| records[*i].arrival_ms.map(|ms| ms * 1000)).collect::<TimestampMicrosecondArray>().with_timezone("UTC");
    let data: BinaryArray = rows.iter().map(|(i, _)| Some(records[*i].data.as_slice())).collect();
    let columns: Vec<ArrayRef> = vec![
        pick(&|_| stream.to_string()),
        pick(&|r| r.shard_id.to_string()),
        pick(&|r| r.sequence_number.clone()),
        pick(&|r| r.partition_key.clone()),
        Arc::new(job_ids),
        Arc::new(arrival),
        Arc::new(data),
        Arc::new(rows.iter().map(|(_, e)| Some(e.as_str())).collect::<StringArray>()),
    ];
    Ok(RecordBatch::try_new(Arc::new(dead_letter_schema()), columns)?)
}
