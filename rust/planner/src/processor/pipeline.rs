//! Pipeline SQL: the rules and transformations of a dataset, written as named SQL queries in
//! `sql/pipeline/<dataset>.sql` and run by DataFusion with every Weir UDF registered.
//!
//! A pipeline file holds named queries, each introduced by a `-- name: <query>` line:
//!
//! * `violations` (optional): cross-field rules. Returns one row per broken rule with columns
//!   `record_index` (from the input's `_record_index`), `rule`, and optionally `field`, `value`
//!   and `message`. Those records are rejected like contract violations.
//! * `transformed` (required): the output rows, computed from the records that passed.
//!
//! Both read the table `events`: the contract's columns, `_record_index` and the Kinesis
//! position columns `_kinesis_*` (see [`super::position`]; null but where the consumer runs
//! `transformed`). Users change behaviour here without recompiling anything.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, UInt64Type};

use crate::processor::error::{ProcessorError, Result};
use crate::processor::position::with_positions;
use crate::processor::prepared::PreparedQuery;
use crate::processor::violation::{clip_value, Violation};

const QUERY_NAMES: &[&str] = &["violations", "transformed"];

/// A parsed pipeline file. Its queries are planned once and run on every batch
/// ([`PreparedQuery`]); concurrent batches never see each other's `events` rows.
#[derive(Clone)]
pub struct PipelineSql {
    origin: String,
    violations: Option<Arc<PreparedQuery>>,
    transformed: Arc<PreparedQuery>,
}

impl std::fmt::Debug for PipelineSql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineSql").field("origin", &self.origin).finish_non_exhaustive()
    }
}

impl PipelineSql {
    /// Reads and parses the pipeline file at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProcessorError::PipelineSql {
            origin: origin.clone(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text, &origin)
    }

    /// Parses pipeline text; `origin` names it in errors. Text without any `-- name:` marker
    /// is taken as a single `transformed` query.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let err = |message: String| ProcessorError::PipelineSql { origin: origin.to_string(), message };
        let mut queries: Vec<(String, String)> = Vec::new();
        let mut preamble = String::new();
        for line in text.lines() {
            if let Some(name) = line.trim().strip_prefix("-- name:") {
                let name = name.trim().to_string();
                if !QUERY_NAMES.contains(&name.as_str()) {
                    return Err(err(format!("unknown query name {name:?}; expected one of {}", QUERY_NAMES.join(", "))));
                }
                if queries.iter().any(|(n, _)| *n == name) {
                    return Err(err(format!("query {name:?} is defined twice")));
                }
                queries.push((name, String::new()));
            } else if let Some((_, body)) = queries.last_mut() {
                body.push_str(line);
                body.push('\n');
            } else {
                preamble.push_str(line);
                preamble.push('\n');
            }
        }
        if queries.is_empty() && !strip_sql(&preamble).is_empty() {
            queries.push(("transformed".into(), preamble));
        }
        let take = |name: &str| {
            queries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, body)| strip_sql(body).to_string())
                .filter(|body| !body.is_empty())
        };
        let violations = take("violations").map(|sql| Arc::new(PreparedQuery::new(sql)));
        let transformed = take("transformed").ok_or_else(|| err("no `-- name: transformed` query".into()))?;
        Ok(Self { origin: origin.to_string(), violations, transformed: Arc::new(PreparedQuery::new(transformed)) })
    }

    /// Where the SQL came from (a path, or a description).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    fn sql_error(&self, query: &str, e: impl std::fmt::Display) -> ProcessorError {
        ProcessorError::PipelineSql { origin: self.origin.clone(), message: format!("query {query:?}: {e}") }
    }

    /// Runs one query over `events`, given null position columns if it has none.
    async fn run(&self, name: &str, query: &PreparedQuery, events: RecordBatch) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let events = with_positions(&events, |_| None)?;
        query.run(events).await.map_err(|e| self.sql_error(name, e))
    }

    /// Runs the `violations` query over `events`; no query means no violations.
    pub async fn rule_violations(&self, events: RecordBatch) -> Result<Vec<Violation>> {
        let Some(query) = &self.violations else { return Ok(Vec::new()) };
        let (schema, batches) = self.run("violations", query, events).await?;
        for required in ["record_index", "rule"] {
            if schema.column_with_name(required).is_none() {
                return Err(self.sql_error("violations", format!("the result needs a {required:?} column")));
            }
        }
        let mut violations = Vec::new();
        for batch in batches {
            let text = |name: &str| -> Result<Option<Arc<dyn Array>>> {
                batch
                    .column_by_name(name)
                    .map(|c| cast(c, &DataType::Utf8))
                    .transpose()
                    .map_err(|e| self.sql_error("violations", e))
            };
            let index = cast(batch.column_by_name("record_index").expect("checked above"), &DataType::UInt64)
                .map_err(|e| self.sql_error("violations", format!("record_index: {e}")))?;
            let index = index.as_primitive::<UInt64Type>();
            let (rule, field, value, message) = (text("rule")?, text("field")?, text("value")?, text("message")?);
            let get = |column: &Option<Arc<dyn Array>>, row: usize| {
                column
                    .as_ref()
                    .filter(|c| c.is_valid(row))
                    .map(|c| c.as_string::<i32>().value(row).to_string())
            };
            for row in 0..batch.num_rows() {
                if index.is_null(row) {
                    return Err(self.sql_error("violations", "record_index is NULL"));
                }
                let rule_name = get(&rule, row).unwrap_or_else(|| "sql".into());
                violations.push(Violation {
                    record_index: index.value(row),
                    field: get(&field, row),
                    message: get(&message, row).unwrap_or_else(|| format!("breaks rule {rule_name}")),
                    rule: rule_name,
                    value: get(&value, row).map(|v| clip_value(&v)),
                });
            }
        }
        Ok(violations)
    }

    /// Runs the `transformed` query over `events`.
    pub async fn transform(&self, events: RecordBatch) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        self.run("transformed", &self.transformed, events).await
    }
}

/// SQL text without surrounding white space and a trailing semicolon.
fn strip_sql(body: &str) -> &str {
    body.trim().trim_end_matches(';').trim()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, StringArray, UInt64Array};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn events() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("kind", DataType::Utf8, true),
            Field::new("qty", DataType::Int64, true),
            Field::new("_record_index", DataType::UInt64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("buy"), Some("buy"), Some("view")])),
                Arc::new(Int64Array::from(vec![Some(2), None, None])),
                Arc::new(UInt64Array::from(vec![0, 1, 2])),
            ],
        )
        .unwrap()
    }

    const SQL: &str = "-- A test pipeline.\n-- name: violations\nSELECT _record_index AS record_index, 'buy_needs_qty' AS rule, 'qty' AS field\nFROM events WHERE kind = 'buy' AND qty IS NULL;\n\n-- name: transformed\nSELECT upper(kind) AS kind, qty * 10 AS qty10 FROM events;\n";

    #[tokio::test]
    async fn runs_rules_and_transformations() {
        let p = PipelineSql::parse(SQL, "test.sql").unwrap();
        let v = p.rule_violations(events()).await.unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].record_index, v[0].rule.as_str(), v[0].field.as_deref()), (1, "buy_needs_qty", Some("qty")));
        assert_eq!(v[0].message, "breaks rule buy_needs_qty");
        let (schema, batches) = p.transform(events()).await.unwrap();
        assert_eq!(schema.field(1).name(), "qty10");
        let table = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        assert!(table.contains("| BUY  | 20    |"), "{table}");
    }

    #[test]
    fn malformed_files_are_reported_with_their_origin() {
        let e = PipelineSql::parse("-- name: transfromed\nselect 1", "x.sql").unwrap_err();
        assert_eq!(e.to_string(), "pipeline SQL x.sql: unknown query name \"transfromed\"; expected one of violations, transformed");
        let e = PipelineSql::parse("-- name: violations\nselect 1", "x.sql").unwrap_err();
        assert_eq!(e.to_string(), "pipeline SQL x.sql: no `-- name: transformed` query");
        assert!(PipelineSql::parse("select * from events", "x.sql").is_ok(), "a bare query is the transformation");
    }

    #[tokio::test]
    async fn concurrent_runs_do_not_share_tables() {
        let p = PipelineSql::parse("select count(*) as n from events", "x.sql").unwrap();
        let (a, b) = tokio::join!(p.transform(events()), p.transform(events().slice(0, 1)));
        let count = |batches: &[RecordBatch]| batches[0].column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0);
        assert_eq!((count(&a.unwrap().1), count(&b.unwrap().1)), (3, 1));
    }

    #[tokio::test]
    async fn sql_errors_name_the_file_and_query() {
        let p = PipelineSql::parse("-- name: transformed\nselect nope from events", "x.sql").unwrap();
        let e = p.transform(events()).await.unwrap_err().to_string();
        assert!(e.starts_with("pipeline SQL x.sql: query \"transformed\":"), "{e}");
        assert!(e.contains("nope"), "{e}");
        let p = PipelineSql::parse("-- name: violations\nselect 1 as x from events\n-- name: transformed\nselect 1", "x.sql").unwrap();
        let e = p.rule_violations(events()).await.unwrap_err().to_string();
        assert_eq!(e, "pipeline SQL x.sql: query \"violations\": the result needs a \"record_index\" column");
    }
}
