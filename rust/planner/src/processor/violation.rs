//! A broken rule in one record, and the Arrow shapes violations travel in.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringBuilder, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

/// One violation of one rule by one record. `rule` is a JSON Schema keyword (`required`,
/// `pattern`, ...), `syntax` for undecodable input, or the name of a SQL rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// 0-based position of the record in its input (blank NDJSON lines are not records).
    pub record_index: u64,
    pub field: Option<String>,
    pub rule: String,
    /// The offending value as text (JSON text for JSON input), when there is one.
    pub value: Option<String>,
    pub message: String,
}

/// Longest offending value kept in a violation, so one huge field cannot bloat reports.
pub const MAX_VALUE_CHARS: usize = 200;

/// Shortens `value` to [`MAX_VALUE_CHARS`] characters, marking the cut.
pub fn clip_value(value: &str) -> String {
    match value.char_indices().nth(MAX_VALUE_CHARS) {
        None => value.to_string(),
        Some((cut, _)) => format!("{}…", &value[..cut]),
    }
}

/// Fields of the violation struct, shared by the flat and nested shapes.
pub fn violation_fields() -> Fields {
    Fields::from(vec![
        Field::new("field", DataType::Utf8, true),
        Field::new("rule", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, false),
    ])
}

/// Schema of the flat violations table: one row per violation.
pub fn violations_schema() -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new("record_index", DataType::UInt64, false))];
    fields.extend(violation_fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// The flat violations table.
pub fn violations_batch(violations: &[Violation]) -> RecordBatch {
    let mut index = UInt64Builder::with_capacity(violations.len());
    let mut field = StringBuilder::new();
    let mut rule = StringBuilder::new();
    let mut value = StringBuilder::new();
    let mut message = StringBuilder::new();
    for v in violations {
        index.append_value(v.record_index);
        field.append_option(v.field.as_deref());
        rule.append_value(&v.rule);
        value.append_option(v.value.as_deref());
        message.append_value(&v.message);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(index.finish()),
        Arc::new(field.finish()),
        Arc::new(rule.finish()),
        Arc::new(value.finish()),
        Arc::new(message.finish()),
    ];
    RecordBatch::try_new(violations_schema(), columns).expect("violation columns match their schema")
}
