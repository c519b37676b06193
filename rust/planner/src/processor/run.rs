//! The processor: parse → validate → transform for one dataset, as the API, the consumer and
//! Python's `weir.process` run it.
//!
//! ```text
//! bytes ─decode─▶ typed batch ─contract rules─▶ ─SQL rules (violations)─▶ valid rows ─SQL (transformed)─▶ output
//!                      └─────────── every violation of every record ──────────▶ rejected rows (raw text + violations)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, ListArray, RecordBatch, StringArray, StructArray,
    UInt64Array,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};

use crate::processor::contract::Contract;
use crate::processor::decode::{decode, Decoded, InputFormat, RECORD_INDEX_COLUMN};
use crate::processor::error::{ProcessorError, Result};
use crate::processor::pipeline::PipelineSql;
use crate::processor::position::{with_positions, KinesisPosition};
use crate::processor::validate::{check_rules, conform_table};
use crate::processor::violation::{violation_fields, Violation};

/// Rejected records logged one by one before the processor only logs a summary.
const REJECTED_RECORDS_LOGGED: usize = 10;

/// Valid rows and rejected records of one input.
#[derive(Debug)]
pub struct ValidationOutcome {
    /// Records that passed every rule: contract columns plus `_record_index`.
    pub valid: RecordBatch,
    /// One row per rejected record: `record_index`, `raw` text and its `violations`.
    pub rejected: RecordBatch,
    /// Every violation, ordered by record index.
    pub violations: Vec<Violation>,
    /// Records in the input.
    pub records: usize,
}

/// Counts and timings of one processed input, for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub records: usize,
    pub valid: usize,
    pub rejected: usize,
    pub violations: usize,
    pub bytes: usize,
    pub seconds: f64,
}

/// The result of [`Processor::process`].
#[derive(Debug)]
pub struct ProcessOutcome {
    pub output_schema: SchemaRef,
    /// The transformed valid records, in input order.
    pub output: Vec<RecordBatch>,
    pub rejected: RecordBatch,
    pub violations: Vec<Violation>,
    pub stats: ProcessStats,
}

/// Where the raw text of a rejected record comes from.
enum RawSource<'a> {
    /// Input bytes and each record's byte range.
    Bytes(&'a [u8], &'a [std::ops::Range<usize>]),
    /// A table: the row is rendered as a JSON object.
    Table(&'a RecordBatch),
}

/// Schema of the rejected-records table.
pub fn rejected_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("record_index", DataType::UInt64, false),
        Field::new("raw", DataType::Utf8, false),
        Field::new(
            "violations",
            DataType::List(Arc::new(Field::new("item", DataType::Struct(violation_fields()), false))),
            false,
        ),
    ]))
}

/// A compiled contract and, optionally, the dataset's pipeline SQL.
#[derive(Debug, Clone)]
pub struct Processor {
    contract: Arc<Contract>,
    pipeline: Option<PipelineSql>,
}

impl Processor {
    pub fn new(contract: Contract, pipeline: Option<PipelineSql>) -> Self {
        Self { contract: Arc::new(contract), pipeline }
    }

    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    pub fn pipeline(&self) -> Option<&PipelineSql> {
        self.pipeline.as_ref()
    }

    /// Strict parsing: the records as a table with the contract's columns and types, or a
    /// [`ProcessorError::Parse`] listing every record that is not valid JSON/CSV or has a value
    /// of the wrong type. Contract rules (enum, pattern, ...) are not checked here.
    pub fn parse(&self, data: &[u8], format: InputFormat) -> Result<RecordBatch> {
        let decoded = decode(&self.contract, data, format)?;
        let errors: Vec<Violation> = decoded
            .violations
            .into_iter()
            .filter(|v| v.rule == "syntax" || v.rule == "type")
            .collect();
        if let Some(first) = errors.first() {
            let field = first.field.as_ref().map(|f| format!(" field {f:?}:")).unwrap_or_default();
            return Err(ProcessorError::Parse {
                message: format!(
                    "{} of {} records could not be parsed as {}; first, record {}:{field} {}",
                    errors.iter().map(|v| v.record_index).collect::<std::collections::BTreeSet<_>>().len(),
                    decoded.spans.len(),
                    format.name(),
                    first.record_index,
                    first.message
                ),
                errors,
            });
        }
        let without_index = decoded.batch.num_columns() - 1;
        Ok(decoded.batch.project(&(0..without_index).collect::<Vec<_>>())?)
    }

    /// Decodes and validates input bytes against the contract and the pipeline's SQL rules.
    pub async fn validate_bytes(&self, data: &[u8], format: InputFormat) -> Result<ValidationOutcome> {
        let mut decoded = decode(&self.contract, data, format)?;
        let spans = std::mem::take(&mut decoded.spans);
        self.validate_decoded(decoded, RawSource::Bytes(data, &spans)).await
    }

    /// Validates an Arrow table (for example from pyarrow or an Iceberg scan).
    pub async fn validate_table(&self, schema: SchemaRef, batches: &[RecordBatch]) -> Result<ValidationOutcome> {
        let table = concat_batches(&schema, batches)?;
        let decoded = conform_table(&self.contract, &table)?;
        self.validate_decoded(decoded, RawSource::Table(&table)).await
    }

    async fn validate_decoded(&self, decoded: Decoded, raw: RawSource<'_>) -> Result<ValidationOutcome> {
        let records = match raw {
            RawSource::Bytes(_, spans) => spans.len(),
            RawSource::Table(table) => table.num_rows(),
        };
        let mut violations = check_rules(&self.contract, &decoded);
        violations.extend(decoded.violations);
        let mut rejected = vec![false; records];
        for v in &violations {
            rejected[v.record_index as usize] = true;
        }
        // SQL rules see every decodable record, so a record breaking both kinds of rule
        // reports both. A cell nulled by a type violation reads as NULL there, but the field
        // was present: as with contract rules, a field with a type violation is not checked
        // further, so SQL violations naming it are dropped.
        if let Some(pipeline) = &self.pipeline {
            let mistyped: HashSet<(u64, &str)> = violations
                .iter()
                .filter(|v| v.rule == "type")
                .filter_map(|v| Some((v.record_index, v.field.as_deref()?)))
                .collect();
            let rule_violations: Vec<Violation> = pipeline
                .rule_violations(decoded.batch.clone())
                .await?
                .into_iter()
                .filter(|v| !v.field.as_deref().is_some_and(|f| mistyped.contains(&(v.record_index, f))))
                .collect();
            for v in &rule_violations {
                let Some(flag) = rejected.get_mut(v.record_index as usize) else {
                    return Err(ProcessorError::PipelineSql {
                        origin: pipeline.origin().to_string(),
                        message: format!("query \"violations\": record_index {} is not a record of the input", v.record_index),
                    });
                };
                *flag = true;
            }
            violations.extend(rule_violations);
        }
        let valid = keep_unrejected(&decoded.batch, &rejected)?;
        // Stable: per record, decode violations, then contract rules in field order, then SQL.
        violations.sort_by_key(|v| v.record_index);
        let rejected = rejected_batch(&violations, &raw)?;
        Ok(ValidationOutcome { valid, rejected, violations, records })
    }

    /// Runs the pipeline's `transformed` query over already validated rows.
    pub async fn transform(&self, events: RecordBatch) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let pipeline = self.pipeline.as_ref().ok_or_else(|| ProcessorError::PipelineSql {
            origin: self.contract.name.clone(),
            message: "no pipeline SQL is configured for this dataset".into(),
        })?;
        pipeline.transform(events).await
    }

    /// The schema of the pipeline's `transformed` output, found by planning it over no rows:
    /// the schema of the dataset's lake table (`raw.<dataset>`).
    pub async fn output_schema(&self) -> Result<SchemaRef> {
        let mut fields: Vec<Field> = self.contract.arrow_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(RECORD_INDEX_COLUMN, DataType::UInt64, false));
        let events = RecordBatch::new_empty(Arc::new(Schema::new(fields)));
        Ok(self.transform(events).await?.0)
    }

    /// Parse, validate and transform `data`, keeping every rejected record with its violations.
    pub async fn process(&self, data: &[u8], format: InputFormat) -> Result<ProcessOutcome> {
        self.process_at(data, format, |_| None).await
    }

    /// [`Self::process`] for events read from Kinesis: `position(record_index)` is where the
    /// record was, for the `_kinesis_*` columns the `transformed` query reads.
    pub async fn process_at<'a>(
        &self,
        data: &[u8],
        format: InputFormat,
        position: impl Fn(u64) -> Option<KinesisPosition<'a>>,
    ) -> Result<ProcessOutcome> {
        let started = Instant::now();
        let outcome = self.validate_bytes(data, format).await?;
        let (output_schema, output) = self.transform(with_positions(&outcome.valid, position)?).await?;
        let stats = ProcessStats {
            records: outcome.records,
            valid: outcome.valid.num_rows(),
            rejected: outcome.rejected.num_rows(),
            violations: outcome.violations.len(),
            bytes: data.len(),
            seconds: started.elapsed().as_secs_f64(),
        };
        log_outcome(&self.contract.name, &stats, &outcome.violations);
        Ok(ProcessOutcome { output_schema, output, rejected: outcome.rejected, violations: outcome.violations, stats })
    }
}

/// Rows of `batch` whose record index is not flagged in `rejected`.
fn keep_unrejected(batch: &RecordBatch, rejected: &[bool]) -> Result<RecordBatch> {
    let index = batch
        .column_by_name(RECORD_INDEX_COLUMN)
        .expect("decoded batches carry the record index")
        .as_primitive::<UInt64Type>();
    if !index.values().iter().any(|&i| rejected[i as usize]) {
        return Ok(batch.clone());
    }
    let keep: BooleanArray = index.values().iter().map(|&i| Some(!rejected[i as usize])).collect();
    Ok(filter_record_batch(batch, &keep)?)
}

/// One row per rejected record (in record order) with its raw text and violations.
/// `violations` must be sorted by record index.
fn rejected_batch(violations: &[Violation], raw: &RawSource<'_>) -> Result<RecordBatch> {
    let mut indexes: Vec<u64> = Vec::new();
    let mut offsets: Vec<i32> = vec![0];
    for (i, v) in violations.iter().enumerate() {
        if indexes.last() != Some(&v.record_index) {
            if !indexes.is_empty() {
                offsets.push(i as i32);
            }
            indexes.push(v.record_index);
        }
    }
    if !indexes.is_empty() {
        offsets.push(violations.len() as i32);
    }
    let raw_text: Vec<String> = match raw {
        RawSource::Bytes(data, spans) => indexes
            .iter()
            .map(|&i| {
                let bytes = &data[spans[i as usize].clone()];
                String::from_utf8_lossy(bytes).trim_end_matches(['\r', '\n']).to_string()
            })
            .collect(),
        RawSource::Table(table) => rows_as_json(table, &indexes)?,
    };
    let text = |f: &dyn Fn(&Violation) -> Option<&str>| -> ArrayRef {
        Arc::new(violations.iter().map(f).collect::<StringArray>())
    };
    let items = StructArray::try_new(
        violation_fields(),
        vec![
            text(&|v| v.field.as_deref()),
            text(&|v| Some(v.rule.as_str())),
            text(&|v| v.value.as_deref()),
            text(&|v| Some(v.message.as_str())),
        ],
        None,
    )?;
    let DataType::List(item_field) = rejected_schema().field(2).data_type().clone() else {
        unreachable!("violations is a list column")
    };
    let lists = ListArray::try_new(item_field, OffsetBuffer::new(offsets.into()), Arc::new(items), None)?;
    Ok(RecordBatch::try_new(
        rejected_schema(),
        vec![
            Arc::new(UInt64Array::from(indexes)),
            Arc::new(StringArray::from(raw_text)),
            Arc::new(lists),
        ],
    )?)
}

/// The given rows of a table as JSON objects, one string per row.
fn rows_as_json(table: &RecordBatch, rows: &[u64]) -> Result<Vec<String>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let picked = take_record_batch(table, &UInt64Array::from(rows.to_vec()))?;
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&picked)?;
    writer.finish()?;
    let text = String::from_utf8(writer.into_inner()).map_err(|e| ProcessorError::Internal(e.to_string()))?;
    Ok(text.lines().map(str::to_string).collect())
}

/// Structured logs for one processed input: a summary, every rejected record of a small
/// batch, and for large batches the first few plus counts by field and rule.
fn log_outcome(dataset: &str, stats: &ProcessStats, violations: &[Violation]) {
    tracing::info!(
        component = "processor",
        event = "batch_processed",
        dataset,
        records = stats.records,
        valid = stats.valid,
        rejected = stats.rejected,
        violations = stats.violations,
        bytes = stats.bytes,
        seconds = stats.seconds,
    );
    if violations.is_empty() {
        return;
    }
    let mut by_record: BTreeMap<u64, Vec<&Violation>> = BTreeMap::new();
    for v in violations {
        by_record.entry(v.record_index).or_default().push(v);
    }
    for (record_index, found) in by_record.iter().take(REJECTED_RECORDS_LOGGED) {
        let details: Vec<String> = found
            .iter()
            .map(|v| format!("{}{}: {}", v.field.as_deref().map(|f| format!("{f} ")).unwrap_or_default(), v.rule, v.message))
            .collect();
        tracing::warn!(
            component = "processor",
            event = "record_rejected",
            dataset,
            record_index,
            violations = %details.join("; "),
        );
    }
    if by_record.len() > REJECTED_RECORDS_LOGGED {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for v in violations {
            *counts.entry(format!("{}:{}", v.field.as_deref().unwrap_or("-"), v.rule)).or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        tracing::warn!(
            component = "processor",
            event = "records_rejected",
            dataset,
            rejected = by_record.len(),
            not_logged_individually = by_record.len() - REJECTED_RECORDS_LOGGED,
            violations_by_field_and_rule = %summary.join(", "),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop_processor() -> Processor {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let contract = Contract::from_path(format!("{root}/contracts/shop_events.json")).unwrap();
        let sql = PipelineSql::from_path(format!("{root}/sql/pipeline/shop_events.sql")).unwrap();
        Processor::new(contract, Some(sql))
    }

    const GOOD: &str = r#"{"event_id":"0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11","event_type":"purchase","event_time":"2026-11-27T01:00:00+02:00","user_id":"u_1","user_email":"Ann@Example.COM","user_country":"GB","product_id":"p_9","unit_price":9.5,"quantity":2,"currency":"EUR","properties":{"referrer":"ad"}}"#;

    #[tokio::test]
    async fn a_batch_with_broken_records_reports_everything_and_transforms_the_rest() {
        let p = shop_processor();
        let view = r#"{"event_id":"1b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11","event_type":"page_view","event_time":"2026-11-27T10:00:00Z","user_id":"u_2"}"#;
        let no_product = r#"{"event_id":"2b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11","event_type":"refund","event_time":"2026-11-27T10:00:00Z","user_id":"u_3","unit_price":1}"#;
        let bad = r#"{"event_id":"x","event_type":"purchase","event_time":"2026-11-27T10:00:00Z","user_id":"u_4","quantity":0,"colour":"red"}"#;
        let data = format!("{GOOD}\n{{oops\n{view}\n{no_product}\n{bad}\n");
        let out = p.process(data.as_bytes(), InputFormat::Ndjson).await.unwrap();
        assert_eq!(
            (out.stats.records, out.stats.valid, out.stats.rejected),
            (5, 2, 3)
        );
        let rejected_index: Vec<u64> = out.rejected.column(0).as_primitive::<UInt64Type>().values().to_vec();
        assert_eq!(rejected_index, [1, 3, 4]);
        assert_eq!(out.rejected.column(1).as_string::<i32>().value(0), "{oops");
        let rules: Vec<(u64, String, String)> = out
            .violations
            .iter()
            .map(|v| (v.record_index, v.field.clone().unwrap_or_default(), v.rule.clone()))
            .collect();
        let expect = |i: u64, f: &str, r: &str| (i, f.to_string(), r.to_string());
        assert_eq!(
            rules,
            [
                expect(1, "", "syntax"),
                expect(3, "product_id", "product_event_fields"),
                expect(3, "quantity", "product_event_fields"),
                expect(3, "currency", "product_event_fields"),
                expect(4, "event_id", "format"),
                expect(4, "quantity", "minimum"),
                expect(4, "colour", "additionalProperties"),
                expect(4, "product_id", "product_event_fields"),
                expect(4, "unit_price", "product_event_fields"),
                expect(4, "currency", "product_event_fields"),
            ]
        );
        let output = concat_batches(&out.output_schema, &out.output).unwrap();
        assert_eq!(output.num_rows(), 2);
        let col = |name: &str| output.column_by_name(name).unwrap().clone();
        let text = |name: &str, row: usize| {
            datafusion::arrow::util::display::array_value_to_string(&col(name), row).unwrap()
        };
        assert_eq!(text("user_email", 0), "ann@example.com");
        assert_eq!(text("event_time", 0), "2026-11-26T23:00:00Z");
        assert_eq!(text("event_date", 0), "2026-11-26");
        assert_eq!(text("amount", 0), "19.0");
        assert_eq!(text("referrer", 0), "ad");
        assert_eq!(text("user_key", 0), "d33def0eb4933f91b88eb4e784adaf05", "md5 of u_1, as dbt_utils would");
        assert_eq!(text("product_key", 1), "");
        assert_eq!(text("event_type", 1), "page_view");
    }

    #[tokio::test]
    async fn table_input_is_validated_with_rows_as_raw_json() {
        let p = shop_processor();
        let good = p.parse(GOOD.as_bytes(), InputFormat::Ndjson).unwrap();
        assert_eq!(good.num_columns(), 15);
        let bad = p.parse(GOOD.replace("\"GB\"", "\"gb\"").as_bytes(), InputFormat::Ndjson).unwrap();
        let out = p.validate_table(good.schema(), &[good, bad]).await.unwrap();
        assert_eq!((out.valid.num_rows(), out.rejected.num_rows()), (1, 1));
        let raw = out.rejected.column(1).as_string::<i32>().value(0).to_string();
        assert!(raw.starts_with("{\"event_id\":\"0b5e6f5c") && raw.contains("\"user_country\":\"gb\""), "{raw}");
        assert_eq!(out.violations[0].rule, "pattern");
    }

    #[test]
    fn strict_parse_lists_every_bad_record() {
        let p = shop_processor();
        let err = p.parse(b"{\"event_id\":1}\n{bad\n{}\n", InputFormat::Ndjson).unwrap_err();
        let ProcessorError::Parse { message, errors } = err else { panic!("{err}") };
        assert_eq!(errors.len(), 2);
        assert!(message.starts_with("2 of 3 records could not be parsed as ndjson; first, record 0: field \"event_id\": expected string, got number"), "{message}");
    }
}
