//! Where an event travelled: the Kinesis position columns of the pipeline's `events` table.
//!
//! Pipeline SQL reads `events` with four columns after `_record_index`: the shard, sequence
//! number, KPL sub-sequence number and arrival time of the Kinesis record that carried the
//! event. The consumer fills them ([`with_positions`]); where an event has no Kinesis record
//! (`weir.process`, the API's checks, the `violations` query, which judges the event and not
//! its route) they are null, so the same SQL runs everywhere. The shipped pipeline keeps them
//! in `raw.<dataset>` as `kinesis_*`, as the rejected and dead-letter tables keep theirs.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit, UInt64Type};

use crate::processor::decode::RECORD_INDEX_COLUMN;
use crate::processor::error::Result;

/// The position columns, in the order they follow `_record_index`.
pub const POSITION_COLUMNS: [&str; 4] =
    ["_kinesis_shard_id", "_kinesis_sequence_number", "_kinesis_sub_sequence_number", "_kinesis_arrival_time"];

/// The Kinesis record an event came in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KinesisPosition<'a> {
    pub shard_id: &'a str,
    pub sequence_number: &'a str,
    /// The KPL user record's index in an aggregated record, if it was one.
    pub sub_sequence_number: Option<i64>,
    /// `ApproximateArrivalTimestamp`, microseconds since the epoch.
    pub arrival_micros: Option<i64>,
}

/// The position columns' fields: all nullable; the arrival time is a UTC timestamp.
pub fn position_fields() -> Vec<Field> {
    vec![
        Field::new(POSITION_COLUMNS[0], DataType::Utf8, true),
        Field::new(POSITION_COLUMNS[1], DataType::Utf8, true),
        Field::new(POSITION_COLUMNS[2], DataType::Int64, true),
        Field::new(POSITION_COLUMNS[3], DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
    ]
}

/// `events` (contract columns and `_record_index`) with the position columns appended, each
/// row's from `position(record_index)` (null without a `_record_index`); `events` unchanged
/// if it has them already.
pub fn with_positions<'a>(
    events: &RecordBatch,
    position: impl Fn(u64) -> Option<KinesisPosition<'a>>,
) -> Result<RecordBatch> {
    if events.schema().column_with_name(POSITION_COLUMNS[0]).is_some() {
        return Ok(events.clone());
    }
    // A table from Python may come without record indexes: then nothing has a position.
    let index = events.column_by_name(RECORD_INDEX_COLUMN).and_then(|c| c.as_primitive_opt::<UInt64Type>());
    let extra = position_fields();
    let columns: [ArrayRef; 4] = if !index.is_some_and(|index| index.iter().any(|i| i.and_then(&position).is_some())) {
        // weir.process, the API's checks and the `violations` query: no column to fill.
        std::array::from_fn(|i| new_null_array(extra[i].data_type(), events.num_rows()))
    } else {
        let index = index.expect("checked above");
        let positions: Vec<Option<KinesisPosition<'a>>> = index.iter().map(|i| i.and_then(&position)).collect();
        [
        Arc::new(positions.iter().map(|p| p.map(|p| p.shard_id)).collect::<StringArray>()),
        Arc::new(positions.iter().map(|p| p.map(|p| p.sequence_number)).collect::<StringArray>()),
        Arc::new(positions.iter().map(|p| p.and_then(|p| p.sub_sequence_number)).collect::<Int64Array>()),
        Arc::new(
            positions.iter().map(|p| p.and_then(|p| p.arrival_micros)).collect::<TimestampMicrosecondArray>().with_timezone("UTC"),
        ),
        ]
    };
    let schema = events.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(extra);
    let mut all = events.columns().to_vec();
    all.extend(columns);
    Ok(RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())), all)?)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, UInt64Array};

    use super::*;

    fn events(indexes: Vec<u64>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new(RECORD_INDEX_COLUMN, DataType::UInt64, false),
        ]);
        let kinds: StringArray = indexes.iter().map(|i| Some(format!("k{i}"))).collect();
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(kinds), Arc::new(UInt64Array::from(indexes))]).unwrap()
    }

    #[test]
    fn each_row_gets_the_position_of_its_record_index() {
        let at = |i: u64| {
            (i != 4).then_some(KinesisPosition {
                shard_id: if i < 3 { "shardId-000000000000" } else { "shardId-000000000001" },
                sequence_number: if i < 3 { "100" } else { "200" },
                sub_sequence_number: (i == 5).then_some(2),
                arrival_micros: Some(1_700_000_000_000_000 + i as i64),
            })
        };
        let out = with_positions(&events(vec![0, 3, 4, 5]), at).unwrap();
        let schema = out.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[2..], &POSITION_COLUMNS);
        let shards = out.column(2).as_string::<i32>();
        assert_eq!(shards.value(0), "shardId-000000000000");
        assert_eq!(shards.value(1), "shardId-000000000001");
        assert!(shards.is_null(2), "record 4 has no position");
        assert_eq!(out.column(3).as_string::<i32>().value(3), "200");
        let subs = out.column(4).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!((subs.is_null(0), subs.value(3)), (true, 2));
        let arrival = out.column(5).as_primitive::<datafusion::arrow::datatypes::TimestampMicrosecondType>();
        assert_eq!(arrival.value(1), 1_700_000_000_000_003);
        // Applied twice, the columns are not doubled.
        assert_eq!(with_positions(&out, |_| None).unwrap().num_columns(), 6);
    }

    #[test]
    fn no_position_gives_null_columns_of_the_same_types() {
        let out = with_positions(&events(vec![0, 1]), |_| None).unwrap();
        let with = with_positions(&events(vec![0]), |_| {
            Some(KinesisPosition { shard_id: "s", sequence_number: "1", sub_sequence_number: None, arrival_micros: None })
        })
        .unwrap();
        assert_eq!(out.schema(), with.schema());
        assert!((2..6).all(|c| out.column(c).null_count() == 2));
        let without_index = events(vec![0, 1, 2]).project(&[0]).unwrap();
        let out = with_positions(&without_index, |_| unreachable!("no record index")).unwrap();
        assert_eq!((out.num_columns(), out.column(1).null_count()), (5, 3));
    }
}
