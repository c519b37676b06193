//! Decoding input bytes (JSON, NDJSON, CSV) into Arrow record batches typed by a contract.
//!
//! Decoding never stops at the first bad record: a record that is not valid JSON (or a CSV row
//! with the wrong number of fields) becomes one `syntax` violation with its position and is
//! left out of the batch; a value of the wrong type becomes a `type` violation and a NULL cell;
//! an unknown field becomes an `additionalProperties` violation. Everything else is checked
//! later, column by column, by [`crate::processor::validate`].
//!
//! Each record is decoded in one pass: field values are staged per record (borrowing from the
//! input where no unescaping is needed) and appended to the column builders only when the
//! whole record parsed, so a syntax error half-way through a record cannot misalign columns.
//!
//! The work is split by concern: [`sniff`] recognises foreign formats and line-delimited JSON,
//! [`lines`] cuts line-delimited input into chunks decoded in parallel, [`columns`] stages
//! cells and builds the Arrow columns, [`json`] decodes one JSON record (a fast scan for
//! flat records, else a serde visitor), and [`csv`] decodes CSV rows.

mod columns;
mod csv;
mod json;
mod lines;
mod sniff;

use std::ops::Range;

use datafusion::arrow::array::RecordBatch;

use crate::processor::contract::Contract;
use crate::processor::error::{ProcessorError, Result};
use crate::processor::violation::Violation;

use columns::RecordDecoder;
use lines::decode_lines_in_parallel;
pub(crate) use sniff::json_is_line_delimited;
pub(crate) use json::short_eq;
use sniff::sniff_foreign_format;

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

/// About how many records `data` holds, for sizing column builders: one record per line is
/// the common case, and the first lines tell the average length (counting every line would
/// be one more pass over the input; builders grow if the guess is short).
fn estimate_rows(data: &[u8]) -> usize {
    const SAMPLE_BYTES: usize = 64 << 10;
    let sample = &data[..data.len().min(SAMPLE_BYTES)];
    let lines = memchr::memchr_iter(b'\n', sample).count() + 1;
    if sample.len() == data.len() {
        return lines;
    }
    let estimate = (data.len() as u128 * lines as u128 / sample.len() as u128) as usize;
    estimate + estimate / 16
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn contract() -> Contract {
        Contract::from_json_str(
            r#"{"type":"object","additionalProperties":false,"required":["id"],
                "properties":{"id":{"type":"string"},"n":{"type":"integer"},"x":{"type":"number"},
                              "ok":{"type":"boolean"},"p":{"type":"object"}}}"#,
            "t",
            "t.json",
        )
        .unwrap()
    }

    pub(super) fn rules(d: &Decoded) -> Vec<(u64, Option<&str>, &str)> {
        d.violations.iter().map(|v| (v.record_index, v.field.as_deref(), v.rule.as_str())).collect()
    }

    pub(super) fn decode_str(data: &str, format: InputFormat) -> Decoded {
        decode(&contract(), data.as_bytes(), format).unwrap()
    }

    /// NDJSON decoded by the serde visitor alone (no fast path), on this thread.
    pub(super) fn decode_str_without_fast_path(data: &str) -> Decoded {
        json::SERDE_ONLY.with(|s| s.set(true));
        let decoded = decode_str(data, InputFormat::Ndjson);
        json::SERDE_ONLY.with(|s| s.set(false));
        decoded
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
}
