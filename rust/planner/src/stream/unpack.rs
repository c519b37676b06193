//! Unpacking a consumer batch: its Kinesis records, decoded as Weir records (see
//! [`super::record`]) or, when another producer wrote them, as the contract's record format
//! says (see [`super::foreign`]), become the processor's inputs (every NDJSON event of the
//! batch in one input, each CSV record in its own), with [`EventSpan`]s leading each event
//! back to its record, segment and job, and to its Kinesis position ([`event_position`],
//! for the pipeline's `_kinesis_*` columns). After processing, rejected rows are labelled with
//! their job (none for foreign records), index and Kinesis position, and each segment of a
//! Weir record becomes a [`JobRecord`]. Records that cannot be read become dead-letter rows.
//!
//! Pure functions: no I/O, no state; the consumer (see [`super::consumer`]) runs the
//! processor and commits.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::UInt64Type;

use super::error::StreamResult;
use super::foreign::{self, PieceEvents};
use super::metastore::JobRecord;
use super::record::{decode, decode_header, is_weir_record, WeirRecord};
use super::source::SourceRecord;
use crate::dataset::{dead_letter_schema, rejected_table_schema};
use crate::{Contract, InputFormat, KinesisPosition, RecordFormat};

/// Where one segment's events are in a processor input.
pub(super) struct EventSpan {
    /// Index of the Kinesis record in the batch, and of the segment in the record (0 for a
    /// foreign record).
    pub record: usize,
    pub segment: usize,
    /// A foreign record's KPL user record (its sub-sequence number), if it was aggregated.
    pub sub_record: Option<u32>,
    /// Index of its first event in the input, and its event count.
    pub first: usize,
    pub events: usize,
}

/// One processor input of a batch.
pub(super) struct Input {
    pub data: Vec<u8>,
    pub format: InputFormat,
    pub spans: Vec<EventSpan>,
    /// Whether the spans' event counts are known before processing. A foreign CSV record's
    /// are not: it is an input of its own, whose one span takes the processor's count.
    pub counted: bool,
}

/// A batch's records, unpacked.
pub(super) struct Unpacked {
    /// Per record of the batch, its Weir record (`None` if it is foreign or in `dead`).
    pub decoded: Vec<Option<WeirRecord>>,
    /// Records that cannot be read: (record index, why).
    pub dead: Vec<(usize, String)>,
    /// The processor's inputs.
    pub inputs: Vec<Input>,
}

/// A part of the batch's one NDJSON input.
enum NdjsonPart {
    /// The events of the Weir record with this index.
    Weir(usize),
    /// NDJSON lines of a foreign record.
    Foreign(Vec<u8>),
}

/// Decodes `records` (read from the stream of `dataset`, whose contract is `contract`) into
/// processor inputs.
pub(super) fn unpack(records: &[SourceRecord], dataset: &str, contract: &Contract) -> Unpacked {
    let columns: Vec<String> = contract.fields.iter().map(|f| f.name.clone()).collect();
    let mut dead: Vec<(usize, String)> = Vec::new();
    let mut ndjson_parts: Vec<NdjsonPart> = Vec::new();
    let mut ndjson_spans: Vec<EventSpan> = Vec::new();
    let mut other_inputs: Vec<Input> = Vec::new();
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
                    InputFormat::Csv => {
                        let events = weir.header.event_count() as usize;
                        let spans = vec![EventSpan { record: i, segment: 0, sub_record: None, first: 0, events }];
                        other_inputs.push(Input { data: weir.events.clone(), format: InputFormat::Csv, spans, counted: true });
                    }
                    _ => {
                        for (s, segment) in weir.header.segments.iter().enumerate() {
                            let events = segment.event_count as usize;
                            ndjson_spans.push(EventSpan { record: i, segment: s, sub_record: None, first: ndjson_events, events });
                            ndjson_events += events;
                        }
                        ndjson_parts.push(NdjsonPart::Weir(i));
                    }
                }
                decoded.push(Some(weir));
            }
            Err(message) if contract.record_format == RecordFormat::Weir || is_weir_record(&record.data) => {
                dead.push((i, message));
                decoded.push(None);
            }
            Err(_) => {
                decoded.push(None);
                let pieces = match foreign::unwrap(&record.data, contract.record_format, &columns) {
                    Ok(pieces) => pieces,
                    Err(message) => {
                        dead.push((i, format!("a record of another producer that cannot be read: {message}")));
                        continue;
                    }
                };
                for piece in pieces {
                    let sub_record = piece.sub_record;
                    match piece.events {
                        PieceEvents::Lines { count: 0, .. } => {}
                        PieceEvents::Lines { text, count } => {
                            ndjson_spans.push(EventSpan { record: i, segment: 0, sub_record, first: ndjson_events, events: count });
                            ndjson_events += count;
                            ndjson_parts.push(NdjsonPart::Foreign(text));
                        }
                        PieceEvents::Csv(data) => {
                            let spans = vec![EventSpan { record: i, segment: 0, sub_record, first: 0, events: 0 }];
                            other_inputs.push(Input { data, format: InputFormat::Csv, spans, counted: false });
                        }
                    }
                }
            }
        }
    }

    // One NDJSON input of every NDJSON record, allocated once (it can be tens of MB).
    fn part<'a>(p: &'a NdjsonPart, decoded: &'a [Option<WeirRecord>]) -> &'a [u8] {
        match p {
            NdjsonPart::Weir(i) => &decoded[*i].as_ref().expect("decoded").events,
            NdjsonPart::Foreign(text) => text,
        }
    }
    let mut ndjson: Vec<u8> = Vec::with_capacity(ndjson_parts.iter().map(|p| part(p, &decoded).len()).sum());
    for p in &ndjson_parts {
        ndjson.extend_from_slice(part(p, &decoded));
    }

    let mut inputs: Vec<Input> = Vec::new();
    if !ndjson_spans.is_empty() {
        inputs.push(Input { data: ndjson, format: InputFormat::Ndjson, spans: ndjson_spans, counted: true });
    }
    inputs.extend(other_inputs);
    Unpacked { decoded, dead, inputs }
}

/// The span of the input's event with index `event`. (A foreign CSV input's one span holds
/// every event, even before processing has counted them.)
fn span_of(spans: &[EventSpan], event: usize) -> &EventSpan {
    &spans[spans.partition_point(|s| s.first + s.events <= event).min(spans.len() - 1)]
}

/// Where the input's event with index `event` was on the stream: its Kinesis record, and
/// the KPL user record inside it if it was aggregated.
pub(super) fn event_position<'a>(spans: &[EventSpan], records: &'a [SourceRecord], event: u64) -> KinesisPosition<'a> {
    let span = span_of(spans, event as usize);
    let record = &records[span.record];
    KinesisPosition {
        shard_id: record.shard_id.as_ref(),
        sequence_number: &record.sequence_number,
        sub_sequence_number: span.sub_record.map(i64::from),
        arrival_micros: record.arrival_ms.map(|ms| ms * 1000),
    }
}

/// The processor's rejected rows of one input as rows of the rejected table: each to its
/// Kinesis record and job (none for a foreign record), renumbered within the job (within the
/// record, or KPL user record, for a foreign one), with the record's position; rows of
/// records `stored` says that table has already are left out. Counts the rejected events
/// of Weir records per (record, segment) in `rejected_per_segment`.
pub(super) fn label_rejected(
    rejected: &RecordBatch,
    spans: &[EventSpan],
    records: &[SourceRecord],
    decoded: &[Option<WeirRecord>],
    rejected_per_segment: &mut HashMap<(usize, usize), i64>,
    stored: impl Fn(usize) -> bool,
) -> StreamResult<RecordBatch> {
    let index = rejected.column(0).as_primitive::<UInt64Type>();
    let rows = rejected.num_rows();
    let mut keep = Vec::with_capacity(rows);
    let mut job_index = Vec::with_capacity(rows);
    let mut job_ids: Vec<Option<String>> = Vec::with_capacity(rows);
    let mut sub_records: Vec<Option<i64>> = Vec::with_capacity(rows);
    let mut positions: Vec<&SourceRecord> = Vec::with_capacity(rows);
    for row in 0..rows {
        let event = index.value(row) as usize;
        let span = span_of(spans, event);
        let within = (event - span.first) as u64;
        match &decoded[span.record] {
            Some(weir) => {
                let segment = &weir.header.segments[span.segment];
                *rejected_per_segment.entry((span.record, span.segment)).or_default() += 1;
                job_index.push(segment.first_index + within);
                job_ids.push(Some(segment.job_id.clone()));
            }
            None => {
                job_index.push(within);
                job_ids.push(None);
            }
        }
        sub_records.push(span.sub_record.map(i64::from));
        keep.push(!stored(span.record));
        positions.push(&records[span.record]);
    }
    let mut columns: Vec<ArrayRef> = rejected.columns().to_vec();
    columns[0] = Arc::new(UInt64Array::from(job_index));
    columns.push(Arc::new(StringArray::from(job_ids)));
    columns.push(Arc::new(positions.iter().map(|r| Some(r.shard_id.as_ref())).collect::<StringArray>()));
    columns.push(Arc::new(positions.iter().map(|r| Some(r.sequence_number.as_str())).collect::<StringArray>()));
    columns.push(Arc::new(Int64Array::from(sub_records)));
    columns.push(Arc::new(
        positions.iter().map(|r| r.arrival_ms.map(|ms| ms * 1000)).collect::<TimestampMicrosecondArray>().with_timezone("UTC"),
    ));
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

/// Dead-letter rows for `rows` (record index, error) of `records`; `rejected_stored` says
/// whether a record's rejected events were committed before its batch failed.
pub(super) fn dead_letter_batch(
    stream: &str,
    records: &[SourceRecord],
    rows: &[(usize, String)],
    rejected_stored: impl Fn(usize) -> bool,
) -> StreamResult<RecordBatch> {
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
        Arc::new(rows.iter().map(|(i, _)| Some(rejected_stored(*i))).collect::<BooleanArray>()),
    ];
    Ok(RecordBatch::try_new(Arc::new(dead_letter_schema()), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::record::{encode, RecordHeader};

    fn contract(format: &str) -> Contract {
        let text = format!(
            r#"{{"type":"object","x-weir-record-format":"{format}","properties":{{"id":{{"type":"string"}},"n":{{"type":"integer"}}}}}}"#
        );
        Contract::from_json_str(&text, "t", "t.json").unwrap()
    }

    fn record(sequence: u32, data: &[u8]) -> SourceRecord {
        SourceRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: format!("{sequence:056}"),
            partition_key: "k".into(),
            arrival_ms: Some(1_700_000_000_000),
            data: data.to_vec(),
        }
    }

    #[test]
    fn weir_and_foreign_json_records_share_one_input_in_stream_order() {
        let events = b"{\"id\":\"w1\"}\n{\"id\":\"w2\"}\n";
        let header = RecordHeader::single("job-1", "t", InputFormat::Ndjson, 0, 2);
        let weir = encode(&header, events, 1).unwrap();
        let records =
            [record(1, b"{\"id\":\"f1\"}"), record(2, &weir), record(3, b"[{\"id\":\"f2\"},{\"id\":\"f3\"}]"), record(4, b"f4,4")];
        let Unpacked { decoded, dead, inputs } = unpack(&records, "t", &contract("auto"));
        assert!(dead.is_empty());
        assert_eq!(decoded.iter().map(Option::is_some).collect::<Vec<_>>(), [false, true, false, false]);
        assert_eq!(inputs.len(), 2);
        assert_eq!(
            String::from_utf8(inputs[0].data.clone()).unwrap(),
            "{\"id\":\"f1\"}\n{\"id\":\"w1\"}\n{\"id\":\"w2\"}\n{\"id\":\"f2\"}\n{\"id\":\"f3\"}\n"
        );
        let spans: Vec<(usize, usize, usize)> = inputs[0].spans.iter().map(|s| (s.record, s.first, s.events)).collect();
        assert_eq!(spans, [(0, 0, 1), (1, 1, 2), (2, 3, 2)]);
        assert!(inputs[0].counted);
        assert_eq!((inputs[1].format, inputs[1].counted, inputs[1].data.as_slice()), (InputFormat::Csv, false, &b"id,n\nf4,4"[..]));
    }

    #[test]
    fn foreign_records_are_dead_letters_when_the_contract_reads_weir_records_only() {
        let records = [record(1, b"{\"id\":\"f1\"}"), record(2, b"WEIR\x02broken")];
        let unpacked = unpack(&records, "t", &contract("weir"));
        assert!(unpacked.inputs.is_empty());
        assert_eq!(unpacked.dead.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
        assert!(unpacked.dead[0].1.contains("not a Weir record"), "{}", unpacked.dead[0].1);
        // In auto, a damaged Weir record is still a damaged Weir record, not a CSV line.
        let unpacked = unpack(&records, "t", &contract("auto"));
        assert_eq!(unpacked.dead.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1]);
        assert_eq!(unpacked.inputs.len(), 1);
    }
}
