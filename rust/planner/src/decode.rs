//! Decoding input bytes (JSON, NDJSON, CSV) into Arrow record batches typed by a contract.
//!
//! Decoding never stops at the first bad record: a record that is not valid JSON (or a CSV row
//! with the wrong number of fields) becomes one `syntax` violation with its position and is
//! left out of the batch; a value of the wrong type becomes a `type` violation and a NULL cell;
//! an unknown field becomes an `additionalProperties` violation. Everything else is checked
//! later, column by column, by [`crate::validate`].
//!
//! Each record is decoded in one pass: field values are staged per record (borrowing from the
//! input where no unescaping is needed) and appended to the column builders only when the
//! whole record parsed, so a syntax error half-way through a record cannot misalign columns.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    UInt64Array, UInt64Builder,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use weir_udfs::JsonKey;

use crate::contract::{Contract, FieldKind};
use crate::error::{ProcessorError, Result};
use crate::violation::{clip_value, Violation};

/// Name of the column that carries each record's position in its input through the pipeline.
pub const RECORD_INDEX_COLUMN: &str = "_record_index";

/// The input formats the processor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One object, an array of objects, or newline-delimited objects.
    Json,
    /// Newline-delimited JSON: one object per line.
    Ndjson,
    /// RFC 4180 CSV with a header row.
    Csv,
}

/// Names accepted for [`InputFormat::parse`], as listed in errors.
pub const SUPPORTED_INPUT_FORMATS: &[&str] = &["json", "ndjson", "csv"];

impl InputFormat {
    /// Parses a format name (`json`, `ndjson`/`jsonl`, `csv`; any case).
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "ndjson" | "jsonl" | "json-lines" => Ok(Self::Ndjson),
            "csv" => Ok(Self::Csv),
            _ => Err(unsupported(name, "the processor has no decoder for it".into())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }
}

fn unsupported(format: &str, detail: String) -> ProcessorError {
    ProcessorError::UnsupportedFormat {
        format: format.to_string(),
        detail,
        supported: SUPPORTED_INPUT_FORMATS.iter().map(|s| s.to_string()).collect(),
    }
}

/// Recognises bytes of formats the processor does not read, by their magic numbers, so that
/// Parquet labelled as JSON is reported as Parquet rather than as a JSON syntax error.
fn sniff_foreign_format(data: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"PAR1", "parquet"),
        (b"ARROW1", "arrow"),
        (b"ORC", "orc"),
        (b"Obj\x01", "avro"),
        (b"\x1f\x8b", "gzip"),
        (b"PK\x03\x04", "zip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"BZh", "bzip2"),
    ];
    if let Some((_, name)) = MAGICS.iter().find(|(magic, _)| data.starts_with(magic)) {
        return Some(name);
    }
    let first = data.iter().position(|b| !b.is_ascii_whitespace()).map(|i| data[i]);
    (first == Some(b'<')).then_some("xml")
}

/// The decoded records of one input.
#[derive(Debug)]
pub struct Decoded {
    /// Contract columns plus [`RECORD_INDEX_COLUMN`], one row per record that could be decoded.
    pub batch: RecordBatch,
    /// `syntax`, `type` and `additionalProperties` violations, in record order.
    pub violations: Vec<Violation>,
    /// `(row in batch, field index)` of every cell nulled by a `type` violation, so later rules
    /// do not report the same cell again.
    pub type_errors: Vec<(usize, usize)>,
    /// Byte range of every record in the input, by record index (for quarantining raw text).
    pub spans: Vec<Range<usize>>,
}

impl Decoded {
    /// Number of records in the input, decodable or not.
    pub fn record_count(&self) -> usize {
        self.spans.len()
    }
}

/// Decodes `data` as `format` against `contract`.
pub fn decode(contract: &Contract, data: &[u8], format: InputFormat) -> Result<Decoded> {
    if let Some(foreign) = sniff_foreign_format(data) {
        return Err(unsupported(
            foreign,
            format!("the input looks like {foreign} but was labelled {}", format.name()),
        ));
    }
    let line_delimited = match format {
        InputFormat::Ndjson => true,
        InputFormat::Json => json_is_line_delimited(data),
        InputFormat::Csv => false,
    };
    if line_delimited {
        return decode_lines_in_parallel(contract, data);
    }
    let mut decoder = RecordDecoder::new(contract, estimate_rows(data));
    match format {
        InputFormat::Csv => decoder.decode_csv(data)?,
        _ => decoder.decode_json_document(data),
    }
    decoder.finish()
}

/// One record per line is the common case; counting lines is cheap next to decoding.
fn estimate_rows(data: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', data).count() + 1
}

/// Whether `json` input holds one object per line, rather than an array or one document
/// (a pretty-printed object spans several lines, so its first line alone is not complete).
pub(crate) fn json_is_line_delimited(data: &[u8]) -> bool {
    let Some(start) = data.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if data[start] == b'[' {
        return false;
    }
    let first_line_end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
    std::str::from_utf8(&data[start..first_line_end])
        .is_ok_and(|line| serde_json::from_str::<&RawValue>(line).is_ok())
}

/// Inputs smaller than this are decoded on one thread (threads cost more than they save).
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Decodes line-delimited records on every core: the input is cut at line ends into one
/// chunk per core, each decoded on its own, and the parts are joined with record indexes,
/// rows and line numbers renumbered as if one decoder had read the whole input.
fn decode_lines_in_parallel(contract: &Contract, data: &[u8]) -> Result<Decoded> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if workers < 2 || data.len() < PARALLEL_MIN_BYTES {
        let mut decoder = RecordDecoder::new(contract, estimate_rows(data));
        decoder.decode_lines(data, 0..data.len(), 0);
        return decoder.finish();
    }
    let mut bounds = vec![0];
    for i in 1..workers {
        let target = data.len() * i / workers;
        let cut = memchr::memchr(b'\n', &data[target..]).map_or(data.len(), |p| target + p + 1);
        if cut > *bounds.last().expect("starts with 0") && cut < data.len() {
            bounds.push(cut);
        }
    }
    bounds.push(data.len());
    let parts: Vec<Result<Decoded>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let chunk = w[0]..w[1];
                scope.spawn(move || {
                    let lines_before = memchr::memchr_iter(b'\n', &data[..chunk.start]).count();
                    let mut decoder = RecordDecoder::new(contract, estimate_rows(&data[chunk.clone()]));
                    decoder.decode_lines(data, chunk, lines_before);
                    decoder.finish()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a decoder thread panicked")).collect()
    });
    join_parts(parts)
}

/// Joins decoded chunks of one input, in order.
fn join_parts(parts: Vec<Result<Decoded>>) -> Result<Decoded> {
    let mut batches = Vec::with_capacity(parts.len());
    let (mut violations, mut type_errors, mut spans) = (Vec::new(), Vec::new(), Vec::new());
    let (mut records_before, mut rows_before) = (0u64, 0usize);
    for part in parts {
        let part = part?;
        let mut columns = part.batch.columns().to_vec();
        let index = columns.pop().expect("the record index is the last column");
        let shifted: UInt64Array =
            index.as_primitive::<UInt64Type>().values().iter().map(|&i| i + records_before).collect();
        columns.push(Arc::new(shifted));
        batches.push(RecordBatch::try_new(part.batch.schema(), columns)?);
        violations.extend(part.violations.into_iter().map(|v| Violation { record_index: v.record_index + records_before, ..v }));
        type_errors.extend(part.type_errors.iter().map(|&(row, field)| (row + rows_before, field)));
        rows_before += part.batch.num_rows();
        records_before += part.spans.len() as u64;
        spans.extend(part.spans);
    }
    let schema = batches[0].schema();
    let batch = concat_batches(&schema, &batches)?;
    Ok(Decoded { batch, violations, type_errors, spans })
}

/// One value staged for the current record.
enum Cell<'a> {
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
    /// A builder with room for `rows` values (string bytes grow as needed).
    fn for_type(data_type: &DataType, rows: usize) -> Self {
        match data_type {
            DataType::Float64 => Self::F64(Float64Builder::with_capacity(rows)),
            DataType::Int64 => Self::I64(Int64Builder::with_capacity(rows)),
            DataType::Boolean => Self::Bool(BooleanBuilder::with_capacity(rows)),
            _ => Self::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
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
struct TypeMismatch(String);

/// Interprets the JSON text of one value for a field of `kind`.
fn json_cell(kind: FieldKind, raw: &str) -> std::result::Result<Cell<'_>, TypeMismatch> {
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
fn csv_cell(kind: FieldKind, text: &str) -> std::result::Result<Cell<'_>, TypeMismatch> {
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

/// Builds the columns of one input, record by record.
struct RecordDecoder<'c> {
    contract: &'c Contract,
    schema: SchemaRef,
    builders: Vec<ColumnBuilder>,
    record_index: UInt64Builder,
    rows: usize,
    violations: Vec<Violation>,
    type_errors: Vec<(usize, usize)>,
    spans: Vec<Range<usize>>,
}

impl<'c> RecordDecoder<'c> {
    /// A decoder expecting about `rows` records (sizes the builders up front).
    fn new(contract: &'c Contract, rows: usize) -> Self {
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
            record_index: UInt64Builder::with_capacity(rows),
            rows: 0,
            violations: Vec::new(),
            type_errors: Vec::new(),
            spans: Vec::new(),
        }
    }

    fn finish(mut self) -> Result<Decoded> {
        let mut columns: Vec<ArrayRef> = self.builders.into_iter().map(ColumnBuilder::finish).collect();
        columns.push(Arc::new(self.record_index.finish()));
        let batch = RecordBatch::try_new(self.schema, columns)?;
        self.violations.sort_by_key(|v| v.record_index);
        Ok(Decoded { batch, violations: self.violations, type_errors: self.type_errors, spans: self.spans })
    }

    fn next_record(&mut self, span: Range<usize>) -> u64 {
        self.spans.push(span);
        (self.spans.len() - 1) as u64
    }

    fn syntax(&mut self, record_index: u64, message: String) {
        self.violations.push(Violation {
            record_index,
            field: None,
            rule: "syntax".into(),
            value: None,
            message,
        });
    }

    /// Appends a fully decoded record's cells as one row.
    fn commit(&mut self, record_index: u64, cells: &[Cell<'_>], mismatched: &[usize]) {
        for (builder, cell) in self.builders.iter_mut().zip(cells) {
            builder.append(cell);
        }
        self.type_errors.extend(mismatched.iter().map(|&field| (self.rows, field)));
        self.record_index.append_value(record_index);
        self.rows += 1;
    }

    /// `json` input: an array of objects, one object, or newline-delimited objects.
    /// `json` input that is not line-delimited ([`decode`] sends that to the line decoder):
    /// an array of objects, or one document (a pretty-printed object spans several lines).
    fn decode_json_document(&mut self, data: &[u8]) {
        match data.iter().find(|b| !b.is_ascii_whitespace()) {
            None => {}
            Some(b'[') => self.decode_array(data),
            Some(_) => self.decode_document(data),
        }
    }

    /// A whole input that must be a single JSON value (one record).
    fn decode_document(&mut self, data: &[u8]) {
        let record_index = self.next_record(0..data.len());
        match std::str::from_utf8(data) {
            Ok(text) => self.decode_json_record(&mut RecordState::new(self.contract), record_index, text, None),
            Err(e) => self.syntax(record_index, format!("invalid UTF-8 at byte {}", e.valid_up_to())),
        }
    }

    fn decode_array(&mut self, data: &[u8]) {
        let text = match std::str::from_utf8(data) {
            Ok(text) => text,
            Err(e) => {
                let record_index = self.next_record(0..data.len());
                return self.syntax(record_index, format!("invalid UTF-8 at byte {}", e.valid_up_to()));
            }
        };
        match serde_json::from_str::<Vec<&RawValue>>(text) {
            Ok(elements) => {
                let mut state = RecordState::new(self.contract);
                for element in elements {
                    let raw = element.get();
                    let offset = raw.as_ptr() as usize - text.as_ptr() as usize;
                    let record_index = self.next_record(offset..offset + raw.len());
                    self.decode_json_record(&mut state, record_index, raw, None);
                }
            }
            Err(e) => {
                // A broken array cannot be split into records reliably: quarantine it whole.
                let record_index = self.next_record(0..data.len());
                self.syntax(record_index, format!("invalid JSON array: {}", describe_json_error(&e, None)));
            }
        }
    }

    /// Newline-delimited records in `data[range]` (which starts at a line start, after
    /// `lines_before` lines); blank lines are skipped, a bad line is one violation.
    fn decode_lines(&mut self, data: &[u8], range: Range<usize>, lines_before: usize) {
        let mut state = RecordState::new(self.contract);
        let mut line_start = range.start;
        let mut line_number = lines_before;
        let ends = memchr::memchr_iter(b'\n', &data[range.clone()])
            .map(|i| range.start + i)
            .chain(std::iter::once(range.end));
        for line_end in ends {
            if line_start > range.end {
                break;
            }
            line_number += 1;
            let mut line = &data[line_start..line_end];
            let span = line_start..line_end;
            line_start = line_end + 1;
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let record_index = self.next_record(span);
            match std::str::from_utf8(line) {
                Ok(text) => self.decode_json_record(&mut state, record_index, text, Some(line_number)),
                Err(e) => self.syntax(
                    record_index,
                    format!("line {line_number}: invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                ),
            }
        }
    }

    /// Decodes one record's JSON text; `line` (1-based) positions syntax errors in NDJSON.
    fn decode_json_record<'a>(
        &mut self,
        state: &mut RecordState<'c, 'a>,
        record_index: u64,
        text: &'a str,
        line: Option<usize>,
    ) {
        state.reset(record_index);
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = de::Deserializer::deserialize_any(&mut deserializer, RecordVisitor { state: &mut *state })
            .and_then(|()| deserializer.end());
        match parsed {
            Ok(()) => {
                self.violations.append(&mut state.violations);
                self.commit(record_index, &state.cells, &state.mismatched);
            }
            Err(e) => {
                self.syntax(record_index, format!("invalid JSON: {}", describe_json_error(&e, line)));
            }
        }
    }

    fn decode_csv(&mut self, data: &[u8]) -> Result<()> {
        let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
        let mut record = csv::ByteRecord::new();
        let header_ok = reader
            .read_byte_record(&mut record)
            .map_err(|e| parse_error(format!("CSV header: {e}")))?;
        if !header_ok {
            return Ok(()); // empty input: no records
        }
        let header: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(i, name)| {
                std::str::from_utf8(name)
                    .map(|s| s.trim_start_matches('\u{feff}').to_string())
                    .map_err(|_| parse_error(format!("CSV header: column {} is not UTF-8", i + 1)))
            })
            .collect::<Result<_>>()?;
        let mut columns = Vec::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(parse_error(format!("CSV header: column {name:?} appears twice")));
            }
            columns.push(self.contract.field_index(name));
        }
        let mut mismatched = Vec::new();
        loop {
            let start = reader.position().byte() as usize;
            let line = reader.position().line();
            match reader.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let record_index = self.next_record(start..data.len());
                    self.syntax(record_index, format!("line {line}: {e}"));
                    break;
                }
            }
            let end = (reader.position().byte() as usize).min(data.len());
            let record_index = self.next_record(start..end);
            if record.len() != header.len() {
                self.syntax(
                    record_index,
                    format!("line {line}: the row has {} fields, the header has {}", record.len(), header.len()),
                );
                continue;
            }
            // Cells borrow from `record`, which the next read overwrites: one small Vec per row.
            let mut cells: Vec<Cell<'_>> = Vec::with_capacity(self.contract.fields.len());
            cells.resize_with(self.contract.fields.len(), || Cell::Absent);
            mismatched.clear();
            let mut utf8_error = None;
            for (position, bytes) in record.iter().enumerate() {
                let Ok(text) = std::str::from_utf8(bytes) else {
                    utf8_error = Some(position);
                    break;
                };
                match columns[position] {
                    Some(field) => {
                        let spec = &self.contract.fields[field];
                        match csv_cell(spec.kind, text) {
                            Ok(cell) => cells[field] = cell,
                            Err(TypeMismatch(message)) => {
                                mismatched.push(field);
                                self.violations.push(type_violation(record_index, &spec.name, text, message));
                            }
                        }
                    }
                    None if !self.contract.additional_properties && !text.is_empty() => {
                        self.violations.push(unknown_field_violation(record_index, &header[position], text));
                    }
                    None => {}
                }
            }
            if let Some(position) = utf8_error {
                self.violations.retain(|v| v.record_index != record_index);
                self.syntax(record_index, format!("line {line}: field {:?} is not valid UTF-8", header[position]));
                continue;
            }
            self.commit(record_index, &cells, &mismatched);
        }
        Ok(())
    }
}

fn parse_error(message: String) -> ProcessorError {
    ProcessorError::Parse { message, errors: Vec::new() }
}

fn type_violation(record_index: u64, field: &str, value: &str, message: String) -> Violation {
    Violation {
        record_index,
        field: Some(field.to_string()),
        rule: "type".into(),
        value: Some(clip_value(value)),
        message,
    }
}

fn unknown_field_violation(record_index: u64, field: &str, value: &str) -> Violation {
    Violation {
        record_index,
        field: Some(field.to_string()),
        rule: "additionalProperties".into(),
        value: Some(clip_value(value)),
        message: format!("unknown field {field:?}: the contract does not allow additional properties"),
    }
}

/// serde_json's message with its position, as a line and column of the input.
fn describe_json_error(e: &serde_json::Error, line: Option<usize>) -> String {
    let text = e.to_string();
    let message = text.rsplit_once(" at line ").map_or(text.as_str(), |(m, _)| m);
    match line {
        Some(line) => format!("{message} at line {line}, column {}", e.column()),
        None => format!("{message} at line {}, column {}", e.line(), e.column()),
    }
}

/// The cells and violations of the record being decoded.
struct RecordState<'c, 'de> {
    contract: &'c Contract,
    record_index: u64,
    next_guess: usize,
    cells: Vec<Cell<'de>>,
    seen: Vec<bool>,
    mismatched: Vec<usize>,
    violations: Vec<Violation>,
}

impl<'c, 'de> RecordState<'c, 'de> {
    fn new(contract: &'c Contract) -> Self {
        let n = contract.fields.len();
        Self {
            contract,
            record_index: 0,
            next_guess: 0,
            cells: (0..n).map(|_| Cell::Absent).collect(),
            seen: vec![false; n],
            mismatched: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Makes the state ready for the next record, keeping its allocations.
    fn reset(&mut self, record_index: u64) {
        self.record_index = record_index;
        self.next_guess = 0;
        self.cells.iter_mut().for_each(|c| *c = Cell::Absent);
        self.seen.iter_mut().for_each(|s| *s = false);
        self.mismatched.clear();
        self.violations.clear();
    }

    /// The field named `key`. Senders usually write fields in one order, so the field after
    /// the previous one is tried first: one comparison per field instead of a scan.
    fn lookup(&mut self, key: &str) -> Option<usize> {
        let fields = &self.contract.fields;
        let guess = self.next_guess;
        let found = if guess < fields.len() && fields[guess].name == key {
            Some(guess)
        } else {
            self.contract.field_index(key)
        };
        if let Some(i) = found {
            self.next_guess = i + 1;
        }
        found
    }

    /// A field whose value was captured as raw JSON text (objects, arrays, unknown fields).
    fn field(&mut self, field: Option<usize>, key: &str, raw: &'de str) {
        let Some(field) = field else {
            if !self.contract.additional_properties && raw != "null" {
                self.violations.push(unknown_field_violation(self.record_index, key, raw));
            }
            return;
        };
        if std::mem::replace(&mut self.seen[field], true) {
            self.violations.push(Violation {
                record_index: self.record_index,
                field: Some(key.to_string()),
                rule: "syntax".into(),
                value: Some(clip_value(raw)),
                message: format!("field {key:?} appears more than once in the record"),
            });
            return;
        }
        let spec = &self.contract.fields[field];
        match json_cell(spec.kind, raw) {
            Ok(cell) => self.cells[field] = cell,
            Err(TypeMismatch(message)) => {
                self.mismatched.push(field);
                self.violations.push(type_violation(self.record_index, key, raw, message));
            }
        }
    }

    fn not_an_object(&mut self, got: &str) {
        self.violations.push(Violation {
            record_index: self.record_index,
            field: None,
            rule: "type".into(),
            value: None,
            message: format!("a record must be a JSON object, got {got}"),
        });
        // No field can be trusted: every cell stays NULL and is marked as already reported.
        self.mismatched = (0..self.contract.fields.len()).collect();
    }
}

struct RecordVisitor<'s, 'c, 'de> {
    state: &'s mut RecordState<'c, 'de>,
}


impl<'de> Visitor<'de> for RecordVisitor<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let state = self.state;
        while let Some(JsonKey(key)) = map.next_key::<JsonKey<'de>>()? {
            let field = state.lookup(&key);
            // Scalars are decoded straight from the parser's tokens (one scan of the text);
            // objects, arrays, unknown and repeated fields are kept as their raw JSON text.
            let scalar = field.filter(|&f| !state.seen[f] && state.contract.fields[f].kind.is_scalar());
            let Some(field) = scalar else {
                let raw: &'de RawValue = map.next_value()?;
                state.field(field, &key, raw.get());
                continue;
            };
            state.seen[field] = true;
            match map.next_value_seed(ScalarSeed { kind: state.contract.fields[field].kind })? {
                Ok(cell) => state.cells[field] = cell,
                Err(mismatch) => {
                    let (message, value) = *mismatch;
                    state.mismatched.push(field);
                    state.violations.push(type_violation(state.record_index, &key, &value, message));
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.state.not_an_object("an array");
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<(), E> {
        self.state.not_an_object("a string");
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<(), E> {
        self.state.not_an_object("a number");
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<(), E> {
        self.state.not_an_object("a number");
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<(), E> {
        self.state.not_an_object("a number");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<(), E> {
        self.state.not_an_object("a boolean");
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        self.state.not_an_object("null");
        Ok(())
    }
}

/// Decodes one scalar value for a field of `kind`: the cell, or (message, value as JSON text)
/// when the value has another type.
struct ScalarSeed {
    kind: FieldKind,
}

/// Boxed error: the common `Ok` path then moves a small value.
type ScalarResult<'de> = std::result::Result<Cell<'de>, Box<(String, String)>>;

impl ScalarSeed {
    fn mismatch<'de>(&self, got: &str, value: String) -> ScalarResult<'de> {
        Err(Box::new((format!("expected {}, got {got}", self.kind.json_name()), value)))
    }

    fn string<'de>(&self, value: Cow<'de, str>) -> ScalarResult<'de> {
        match self.kind {
            FieldKind::String => Ok(Cell::Str(value)),
            _ => self.mismatch("string", serde_json::to_string(&value).unwrap_or_default()),
        }
    }

    fn float<'de>(&self, value: f64) -> ScalarResult<'de> {
        match self.kind {
            FieldKind::Number => Ok(Cell::F64(value)),
            FieldKind::Integer if value.fract() != 0.0 => {
                Err(Box::new((format!("expected integer, got {value}"), value.to_string())))
            }
            // 2^63 is exactly representable; anything at or beyond it does not fit an i64.
            FieldKind::Integer if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&value) => {
                Err(Box::new((format!("integer {value} does not fit in 64 bits"), value.to_string())))
            }
            FieldKind::Integer => Ok(Cell::I64(value as i64)),
            _ => self.mismatch("number", value.to_string()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = ScalarResult<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = ScalarResult<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(self.string(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(self.string(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
        Ok(self.string(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(match self.kind {
            FieldKind::Integer => Ok(Cell::I64(v)),
            _ => self.float(v as f64),
        })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Ok(match (self.kind, i64::try_from(v)) {
            (FieldKind::Integer, Ok(v)) => Ok(Cell::I64(v)),
            (FieldKind::Integer, Err(_)) => Err(Box::new((format!("integer {v} does not fit in 64 bits"), v.to_string()))),
            _ => self.float(v as f64),
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
        Ok(self.float(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Self::Value, E> {
        Ok(match self.kind {
            FieldKind::Boolean => Ok(Cell::Bool(v)),
            _ => self.mismatch("boolean", v.to_string()),
        })
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Ok(Cell::Absent))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.mismatch("object", "{…}".into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.mismatch("array", "[…]".into()))
    }
}

impl<'de> DeserializeSeed<'de> for RecordVisitor<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, Int64Type, UInt64Type};

    use super::*;

    fn contract() -> Contract {
        Contract::from_json_str(
            r#"{"type":"object","additionalProperties":false,"required":["id"],
                "properties":{"id":{"type":"string"},"n":{"type":"integer"},"x":{"type":"number"},
                              "ok":{"type":"boolean"},"p":{"type":"object"}}}"#,
            "t",
            "t.json",
        )
        .unwrap()
    }

    fn rules(d: &Decoded) -> Vec<(u64, Option<&str>, &str)> {
        d.violations.iter().map(|v| (v.record_index, v.field.as_deref(), v.rule.as_str())).collect()
    }

    fn decode_str(data: &str, format: InputFormat) -> Decoded {
        decode(&contract(), data.as_bytes(), format).unwrap()
    }

    #[test]
    fn ndjson_types_and_borrowed_and_escaped_strings() {
        let d = decode_str(
            "{\"id\":\"a\",\"n\":3,\"x\":1.5,\"ok\":true,\"p\":{\"k\": [1, 2]}}\n\n{\"id\":\"b\\u00e9\\\"\",\"n\":4.0,\"x\":2}\r\n",
            InputFormat::Ndjson,
        );
        assert!(d.violations.is_empty(), "{:?}", d.violations);
        assert_eq!(d.record_count(), 2);
        let b = &d.batch;
        assert_eq!(b.num_rows(), 2);
        let ids = b.column(0).as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("a", "bé\""));
        assert_eq!(b.column(1).as_primitive::<Int64Type>().values(), &[3, 4]);
        assert_eq!(b.column(2).as_primitive::<Float64Type>().values(), &[1.5, 2.0]);
        assert!(b.column(3).as_boolean().value(0) && b.column(3).is_null(1));
        assert_eq!(b.column(4).as_string::<i32>().value(0), "{\"k\": [1, 2]}");
        assert_eq!(b.column(5).as_primitive::<UInt64Type>().values(), &[0, 1]);
    }

    #[test]
    fn a_malformed_line_in_the_middle_is_one_syntax_violation_and_the_rest_decode() {
        let d = decode_str("{\"id\":\"a\"}\n{\"id\": \"b\", \"n\": }\n{\"id\":\"c\"}\n", InputFormat::Ndjson);
        assert_eq!(rules(&d), [(1, None, "syntax")]);
        assert!(d.violations[0].message.contains("at line 2, column"), "{}", d.violations[0].message);
        assert_eq!(d.batch.column(5).as_primitive::<UInt64Type>().values(), &[0, 2]);
        assert_eq!(d.spans[1], 11..29);
    }

    #[test]
    fn type_mismatches_unknown_fields_duplicates_and_non_objects() {
        let d = decode_str(
            "{\"id\":1,\"n\":\"3\",\"x\":true,\"zz\":5,\"yy\":null}\n{\"id\":\"a\",\"id\":\"b\",\"n\":2.5}\n[1,2]\n{\"id\":\"q\",\"n\":99999999999999999999}",
            InputFormat::Ndjson,
        );
        assert_eq!(
            rules(&d),
            [
                (0, Some("id"), "type"),
                (0, Some("n"), "type"),
                (0, Some("x"), "type"),
                (0, Some("zz"), "additionalProperties"),
                (1, Some("id"), "syntax"),
                (1, Some("n"), "type"),
                (2, None, "type"),
                (3, Some("n"), "type"),
            ]
        );
        assert_eq!(d.violations[1].message, "expected integer, got string");
        assert_eq!(d.violations[5].message, "expected integer, got 2.5");
        assert_eq!(d.violations[7].message, "integer 100000000000000000000 does not fit in 64 bits");
        assert_eq!(d.batch.num_rows(), 4, "records with type errors stay, with NULL cells");
        assert!(d.batch.column(0).is_null(0));
        assert!(d.type_errors.contains(&(0, 0)) && d.type_errors.contains(&(2, 4)));
    }

    #[test]
    fn json_array_single_object_and_pretty_printed_object() {
        let d = decode_str(" [ {\"id\":\"a\"}, {\"id\":\"b\",\"n\":1} ] ", InputFormat::Json);
        assert_eq!(d.batch.num_rows(), 2);
        assert_eq!(d.spans[1], 15..31);
        let d = decode_str("{\n  \"id\": \"a\",\n  \"n\": 1\n}\n", InputFormat::Json);
        assert_eq!((d.batch.num_rows(), d.violations.len()), (1, 0));
        let d = decode_str("{\"id\":\"a\"}\n{\"id\":\"b\"}", InputFormat::Json);
        assert_eq!(d.batch.num_rows(), 2, "json with one object per line is NDJSON");
    }

    #[test]
    fn parallel_decoding_matches_one_decoder() {
        let lines = [
            r#"{"id":"a","n":3,"x":1.5,"ok":true,"p":{"k":[1]}}"#,
            r#"{"id":1,"n":"3","zz":5}"#,
            "{broken",
            "",
            r#"{"id":"b","n":2.5}"#,
        ];
        let mut data = String::new();
        while data.len() < PARALLEL_MIN_BYTES + 1000 {
            data.push_str(&lines.join("\n"));
            data.push('\n');
        }
        let c = contract();
        let parallel = decode(&c, data.as_bytes(), InputFormat::Ndjson).unwrap();
        let mut one = RecordDecoder::new(&c, 10);
        one.decode_lines(data.as_bytes(), 0..data.len(), 0);
        let one = one.finish().unwrap();
        assert_eq!(parallel.batch, one.batch);
        assert_eq!(parallel.violations, one.violations);
        assert_eq!(parallel.type_errors, one.type_errors);
        assert_eq!(parallel.spans, one.spans);
        let last_broken_line = format!("at line {}", data.lines().count() - 2);
        assert!(one.violations.iter().any(|v| v.message.contains(&last_broken_line)));
    }

    #[test]
    fn a_broken_array_is_quarantined_whole() {
        let d = decode_str("[{\"id\":\"a\"}, {\"id\":", InputFormat::Json);
        assert_eq!(rules(&d), [(0, None, "syntax")]);
        assert_eq!(d.batch.num_rows(), 0);
        assert_eq!(d.spans, [0..19]);
    }

    #[test]
    fn non_utf8_line_is_a_syntax_violation() {
        let mut data = b"{\"id\":\"a\"}\n{\"id\":\"".to_vec();
        data.extend_from_slice(&[0xff, 0xfe]);
        data.extend_from_slice(b"\"}\n{\"id\":\"c\"}");
        let d = decode(&contract(), &data, InputFormat::Ndjson).unwrap();
        assert_eq!(rules(&d), [(1, None, "syntax")]);
        assert_eq!(d.violations[0].message, "line 2: invalid UTF-8 at byte 7 of the line");
        assert_eq!(d.batch.num_rows(), 2);
    }

    #[test]
    fn empty_input_gives_an_empty_batch() {
        for format in [InputFormat::Json, InputFormat::Ndjson, InputFormat::Csv] {
            let d = decode_str("", format);
            assert_eq!((d.batch.num_rows(), d.record_count()), (0, 0));
            assert_eq!(d.batch.num_columns(), 6);
        }
        assert_eq!(decode_str(" \n\n ", InputFormat::Ndjson).record_count(), 0);
    }

    #[test]
    fn huge_numbers() {
        let d = decode_str("{\"id\":\"a\",\"x\":1e308,\"n\":-9223372036854775808}\n{\"id\":\"b\",\"x\":1e999}", InputFormat::Ndjson);
        assert_eq!(d.batch.column(1).as_primitive::<Int64Type>().value(0), i64::MIN);
        assert_eq!(d.batch.column(2).as_primitive::<Float64Type>().value(0), 1e308);
        // serde_json refuses 1e999 as out of range: a syntax violation for that record.
        assert_eq!(rules(&d), [(1, None, "syntax")]);
        assert!(d.violations[0].message.contains("number out of range"), "{}", d.violations[0].message);
    }

    #[test]
    fn csv_quoting_embedded_commas_quotes_and_newlines() {
        let data = "id,n,x,ok,p\n\"a,1\",3,1.5,true,\"{\"\"k\"\": 1}\"\n\"multi\nline \"\"quoted\"\"\",,,,\nb,x,1e400,maybe,[1]\nc,1,2\n";
        let d = decode_str(data, InputFormat::Csv);
        let ids = d.batch.column(0).as_string::<i32>();
        assert_eq!(ids.value(0), "a,1");
        assert_eq!(ids.value(1), "multi\nline \"quoted\"");
        assert_eq!(d.batch.column(4).as_string::<i32>().value(0), "{\"k\": 1}");
        assert!(d.batch.column(1).is_null(1), "empty CSV fields are absent");
        assert_eq!(
            rules(&d),
            [(2, Some("n"), "type"), (2, Some("x"), "type"), (2, Some("ok"), "type"), (2, Some("p"), "type"), (3, None, "syntax")]
        );
        assert_eq!(d.violations[4].message, "line 6: the row has 3 fields, the header has 5");
        assert_eq!(&data[d.spans[1].clone()], "\"multi\nline \"\"quoted\"\"\",,,,\n");
    }

    #[test]
    fn csv_unknown_columns_and_bad_headers() {
        let d = decode_str("id,extra\na,\nb,zz\n", InputFormat::Csv);
        assert_eq!(rules(&d), [(1, Some("extra"), "additionalProperties")]);
        let err = decode(&contract(), b"id,id\na,b\n", InputFormat::Csv).unwrap_err();
        assert_eq!(err.to_string(), "CSV header: column \"id\" appears twice");
    }

    #[test]
    fn unsupported_formats_are_named() {
        assert_eq!(
            InputFormat::parse("xml").unwrap_err().to_string(),
            "unsupported format \"xml\": the processor has no decoder for it; supported formats: json, ndjson, csv"
        );
        let err = decode(&contract(), b"PAR1\x15\x04", InputFormat::Json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported format \"parquet\": the input looks like parquet but was labelled json; supported formats: json, ndjson, csv"
        );
        let err = decode(&contract(), b"  <?xml version=\"1.0\"?><a/>", InputFormat::Ndjson).unwrap_err();
        assert!(err.to_string().starts_with("unsupported format \"xml\""));
    }
}
