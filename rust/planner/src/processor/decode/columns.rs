//! Column building: the cells of one record, staged until the whole record decoded (JSON and
//! CSV text interpreted for a field's kind), and [`RecordDecoder`], which appends them as rows
//! of Arrow columns and collects violations.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder, UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::value::RawValue;

use super::{Decoded, RECORD_INDEX_COLUMN};
use crate::processor::contract::{Contract, FieldKind};
use crate::processor::error::Result;
use crate::processor::violation::{clip_value, Violation};

/// One value staged for the current record.
pub(super) enum Cell<'a> {
    Absent,
    Str(Cow<'a, str>),
    F64(f64),
    I64(i64),
    Bool(bool),
}

enum ColumnBuilder {
    Utf8(StringBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    /// A builder with room for `rows` values (text bytes: a first guess, see [`Self::resize_for`]).
    fn for_type(data_type: &DataType, rows: usize) -> Self {
        match data_type {
            DataType::Float64 => Self::F64(Float64Builder::with_capacity(rows)),
            DataType::Int64 => Self::I64(Int64Builder::with_capacity(rows)),
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(rows)),
            _ => Self::Utf8(StringBuilder::with_capacity(rows, rows * TEXT_BYTES_GUESS)),
        }
    }

    fn append(&mut self, cell: &Cell<'_>) {
        match (self, cell) {
            (Self::Utf8(b), Cell::Str(s)) => b.append_value(s),
            (Self::F64(b), Cell::F64(v)) => b.append_value(*v),
            (Self::I64(b), Cell::I64(v)) => b.append_value(*v),
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Self::Utf8(b), _) => b.append_null(),
            (Self::F64(b), _) => b.append_null(),
            (Self::I64(b), _) => b.append_null(),
            (Self::Bool(b), _) => b.append_null(),
        }
    }

    /// Re-sizes a text column's byte buffer for `rows` rows from the values so far (`sampled`
    /// rows), so it does not grow by doubling and copying through a large input.
    fn resize_for(&mut self, sampled: usize, rows: usize) {
        let Self::Utf8(builder) = self else { return };
        let bytes = builder.values_slice().len() * rows / sampled.max(1);
        let wanted = bytes + bytes / 8;
        if wanted <= rows * TEXT_BYTES_GUESS {
            return;
        }
        let sample = std::mem::replace(builder, StringBuilder::with_capacity(rows, wanted)).finish();
        builder.extend(sample.iter());
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Utf8(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Why a value cannot be stored in its field.
pub(super) struct TypeMismatch(pub(super) String);

/// Interprets the JSON text of one value for a field of `kind`.
pub(super) fn json_cell(kind: FieldKind, raw: &str) -> std::result::Result<Cell<'_>, TypeMismatch> {
    let first = raw.as_bytes()[0];
    let got = match first {
        b'"' => "string",
        b'{' => "object",
        b'[' => "array",
        b't' | b'f' => "boolean",
        b'n' => return Ok(Cell::Absent),
        _ => "number",
    };
    match (kind, got) {
        (FieldKind::String, "string") => Ok(Cell::Str(json_string(raw))),
        (FieldKind::Number | FieldKind::Integer, "number") => number_cell(kind, raw),
        (FieldKind::Boolean, "boolean") => Ok(Cell::Bool(first == b't')),
        (FieldKind::Object, "object") | (FieldKind::Array, "array") => Ok(Cell::Str(Cow::Borrowed(raw))),
        _ => Err(TypeMismatch(format!("expected {}, got {got}", kind.json_name()))),
    }
}

/// The content of a JSON string literal, borrowed unless it has escapes.
fn json_string(raw: &str) -> Cow<'_, str> {
    let inner = &raw[1..raw.len() - 1];
    if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
        Cow::Borrowed(inner)
    } else {
        Cow::Owned(serde_json::from_str::<String>(raw).expect("serde_json already validated this string"))
    }
}

/// A number (from JSON or CSV text) for a `number` or `integer` field.
fn number_cell(kind: FieldKind, text: &str) -> std::result::Result<Cell<'static>, TypeMismatch> {
    if kind == FieldKind::Integer {
        if let Ok(v) = text.parse::<i64>() {
            return Ok(Cell::I64(v));
        }
    }
    let Ok(v) = text.parse::<f64>() else {
        return Err(TypeMismatch(format!("expected {}, got text that is not a number", kind.json_name())));
    };
    // The only words Rust's float parser accepts are inf, infinity and NaN.
    if !v.is_finite() {
        return Err(TypeMismatch(format!("{text} is not a finite {}", kind.json_name())));
    }
    match kind {
        FieldKind::Number => Ok(Cell::F64(v)),
        _ if v.fract() != 0.0 => Err(TypeMismatch(format!("expected integer, got {text}"))),
        // 2^63 is exactly representable; anything at or beyond it does not fit an i64.
        _ if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) => {
            Err(TypeMismatch(format!("integer {text} does not fit in 64 bits")))
        }
        _ => Ok(Cell::I64(v as i64)),
    }
}

/// Interprets CSV text for a field of `kind`; empty text is absent.
pub(super) fn csv_cell(kind: FieldKind, text: &str) -> std::result::Result<Cell<'_>, TypeMismatch> {
    if text.is_empty() {
        return Ok(Cell::Absent);
    }
    match kind {
        FieldKind::String => Ok(Cell::Str(Cow::Borrowed(text))),
        FieldKind::Number | FieldKind::Integer => number_cell(kind, text),
        FieldKind::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Ok(Cell::Bool(true)),
            "false" => Ok(Cell::Bool(false)),
            _ => Err(TypeMismatch("expected boolean (true or false)".into())),
        },
        FieldKind::Object | FieldKind::Array => {
            let opener = if kind == FieldKind::Object { b'{' } else { b'[' };
            match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) if raw.get().as_bytes()[0] == opener => Ok(Cell::Str(Cow::Borrowed(text))),
                _ => Err(TypeMismatch(format!("expected {} as JSON text", kind.json_name()))),
            }
        }
    }
}

/// Bytes per value a text column starts with.
const TEXT_BYTES_GUESS: usize = 16;

/// Rows decoded before text columns are sized from their values (see [`ColumnBuilder::resize_for`]).
const SIZING_SAMPLE_ROWS: usize = 512;

/// Builds the columns of one input, record by record.
pub(super) struct RecordDecoder<'c> {
    pub(super) contract: &'c Contract,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    expected_rows: usize,
    record_index: UInt64Builder,
    rows: usize,
    pub(super) violations: Vec<Violation>,
    type_errors: Vec<(usize, usize)>,
    spans: Vec<Range<usize>>,
}

impl<'c> RecordDecoder<'c> {
    /// A decoder expecting about `rows` records (sizes the builders up front).
    pub(super) fn new(contract: &'c Contract, rows: usize) -> Self {
        let contract_schema = contract.arrow_schema();
        let builders = contract_schema
            .fields()
            .iter()
            .map(|f| ColumnBuilder::for_type(f.data_type(), rows))
            .collect();
        let mut fields: Vec<Field> = contract_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(RECORD_INDEX_COLUMN, DataType::UInt64, false));
        Self {
            contract,
            schema: Arc::new(Schema::new(fields)),
            builders,
            expected_rows: rows,
            record_index: UInt64Builder::with_capacity(rows),
            rows: 0,
            violations: Vec::new(),
            type_errors: Vec::new(),
            spans: Vec::new(),
        }
    }

    pub(super) fn finish(mut self) -> Result<Decoded> {
        let mut columns: Vec<ArrayRef> = self.builders.into_iter().map(ColumnBuilder::finish).collect();
        columns.push(Arc::new(self.record_index.finish()));
        let batch = RecordBatch::try_new(self.schema, columns)?;
        self.violations.sort_by_key(|v| v.record_index);
        Ok(Decoded { batch, violations: self.violations, type_errors: self.type_errors, spans: self.spans })
    }

    pub(super) fn next_record(&mut self, span: Range<usize>) -> u64 {
        self.spans.push(span);
        (self.spans.len() - 1) as u64
    }

    pub(super) fn syntax(&mut self, record_index: u64, message: String) {
        self.violations.push(Violation {
            record_index,
            field: None,
            rule: "syntax".into(),
            value: None,
            message,
        });
    }

    /// Appends a fully decoded record's cells as one row.
    pub(super) fn commit(&mut self, record_index: u64, cells: &[Cell<'_>], mismatched: &[usize]) {
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            builder.append(cell);
        }
        self.type_errors.extend(mismatched.iter().map(|&field| (self.rows, field)));
        self.record_index.append_value(record_index);
        self.rows += 1;
        if self.rows == SIZING_SAMPLE_ROWS && self.expected_rows > 2 * SIZING_SAMPLE_ROWS {
            for builder in &mut self.builders {
                builder.resize_for(self.rows, self.expected_rows);
            }
        }
    }
}

pub(super) fn type_violation(record_index: u64, field: &str, value: &str, message: String) -> Violation {
    Violation {
        record_index,
        field: Some(field.to_string()),
        rule: "type".into(),
        value: Some(clip_value(value)),
        message,
    }
}

pub(super) fn unknown_field_violation(record_index: u64, field: &str, value: &str) -> Violation {
    Violation {
        record_index,
        field: Some(field.to_string()),
        rule: "additionalProperties".into(),
        value: Some(clip_value(value)),
        message: format!("unknown field {field:?}: the contract does not allow additional properties"),
    }
}
