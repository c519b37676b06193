//! Columnar contract checks: `required`, `enum`, `pattern`, `format`, `minimum`, `maximum` and
//! `maxLength`, run column by column over decoded records, reporting every violation of every
//! record. Also [`conform_table`], which brings an Arrow table from elsewhere (pyarrow, an
//! Iceberg scan) to the contract's types, reporting cells that do not fit as `type` violations.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use serde_json::Value;

use crate::processor::contract::{Contract, FieldKind, FieldSpec};
use crate::processor::decode::{short_eq, Decoded, RECORD_INDEX_COLUMN};
use crate::processor::error::Result;
use crate::processor::violation::{clip_value, Violation};

/// Checks every contract rule on `decoded.batch` (contract columns, then the record index),
/// skipping cells already reported as `type` violations. Violations come field by field.
pub fn check_rules(contract: &Contract, decoded: &Decoded) -> Vec<Violation> {
    let batch = &decoded.batch;
    let record_index = batch
        .column_by_name(RECORD_INDEX_COLUMN)
        .expect("decoded batches carry the record index")
        .as_primitive::<datafusion::arrow::datatypes::UInt64Type>();
    let mut skip = vec![HashSet::new(); contract.fields.len()];
    for &(row, field) in &decoded.type_errors {
        skip[field].insert(row);
    }
    let mut violations = Vec::new();
    for (i, spec) in contract.fields.iter().enumerate() {
        let mut report = |row: usize, rule: &str, value: Option<String>, message: String| {
            violations.push(Violation {
                record_index: record_index.value(row),
                field: Some(spec.name.clone()),
                rule: rule.to_string(),
                value,
                message,
            })
        };
        let column = batch.column(i);
        if let Some(nulls) = column.nulls().filter(|_| spec.required) {
            for row in (0..column.len()).filter(|&row| nulls.is_null(row)) {
                if !skip[i].contains(&row) {
                    report(row, "required", None, format!("required field {:?} is missing", spec.name));
                }
            }
        }
        match spec.kind {
            FieldKind::String => check_strings(spec, column, &mut report),
            FieldKind::Number | FieldKind::Integer => check_numbers(spec, column, &mut report),
            FieldKind::Boolean | FieldKind::Object | FieldKind::Array => {
                check_enum_json(spec, column, &mut report)
            }
        }
    }
    violations
}

type Report<'a> = dyn FnMut(usize, &str, Option<String>, String) + 'a;

fn check_strings(spec: &FieldSpec, column: &ArrayRef, report: &mut Report<'_>) {
    let values = column.as_string::<i32>();
    let allowed: Option<Vec<&str>> = spec
        .enum_values
        .as_ref()
        .map(|values| values.iter().filter_map(Value::as_str).collect());
    for row in 0..values.len() {
        if values.is_null(row) {
            continue;
        }
        let value = values.value(row);
        if let Some(allowed) = &allowed {
            if !allowed.iter().any(|a| short_eq(a.as_bytes(), value.as_bytes())) {
                report(row, "enum", Some(clip_value(value)), format!("must be one of {}", allowed.join(", ")));
            }
        }
        if let Some(pattern) = &spec.pattern {
            if !pattern.is_match(value) {
                report(row, "pattern", Some(clip_value(value)), format!("does not match {}", pattern.as_str()));
            }
        }
        if let Some(format) = spec.format {
            if !format.is_valid(value) {
                report(row, "format", Some(clip_value(value)), format!("not a valid {}", format.name()));
            }
        }
        if let Some(max) = spec.max_length {
            // Bytes bound characters from above, so only long values need counting.
            if value.len() > max {
                let chars = value.chars().count();
                if chars > max {
                    report(row, "maxLength", Some(clip_value(value)), format!("{chars} characters, at most {max} allowed"));
                }
            }
        }
    }
}

fn check_numbers(spec: &FieldSpec, column: &ArrayRef, report: &mut Report<'_>) {
    let values: Vec<Option<f64>> = match column.data_type() {
        DataType::Int64 => column.as_primitive::<Int64Type>().iter().map(|v| v.map(|v| v as f64)).collect(),
        _ => column.as_primitive::<Float64Type>().iter().collect(),
    };
    let text = |row: usize| -> String {
        match column.data_type() {
            DataType::Int64 => column.as_primitive::<Int64Type>().value(row).to_string(),
            _ => column.as_primitive::<Float64Type>().value(row).to_string(),
        }
    };
    let allowed: Option<Vec<f64>> = spec
        .enum_values
        .as_ref()
        .map(|values| values.iter().filter_map(Value::as_f64).collect());
    for (row, value) in values.into_iter().enumerate() {
        let Some(value) = value else { continue };
        if let Some(allowed) = &allowed {
            if !allowed.contains(&value) {
                let list: Vec<String> = allowed.iter().map(f64::to_string).collect();
                report(row, "enum", Some(text(row)), format!("must be one of {}", list.join(", ")));
            }
        }
        if let Some(min) = spec.minimum {
            if value < min {
                report(row, "minimum", Some(text(row)), format!("must be at least {min}"));
            }
        }
        if let Some(max) = spec.maximum {
            if value > max {
                report(row, "maximum", Some(text(row)), format!("must be at most {max}"));
            }
        }
    }
}

/// `enum` on booleans and JSON-text fields compares parsed JSON values.
fn check_enum_json(spec: &FieldSpec, column: &ArrayRef, report: &mut Report<'_>) {
    let Some(allowed) = &spec.enum_values else { return };
    for row in 0..column.len() {
        if column.is_null(row) {
            continue;
        }
        let value: Value = match column.data_type() {
            DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
            _ => serde_json::from_str(column.as_string::<i32>().value(row)).unwrap_or(Value::Null),
        };
        if !allowed.contains(&value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            report(row, "enum", Some(clip_value(&value.to_string())), format!("must be one of {}", list.join(", ")));
        }
    }
}

/// Brings batches from elsewhere to the contract's columns and types (the same shape
/// [`crate::decode`] produces, with record index = row number). Cells that do not fit
/// their field's type become NULL with a `type` violation; non-null values in columns the
/// contract does not define are `additionalProperties` violations when the contract forbids
/// them. Missing contract columns are all NULL (and so `required` violations, if required).
pub fn conform_table(contract: &Contract, table: &RecordBatch) -> Result<Decoded> {
    let schema = table.schema();
    let rows = table.num_rows();
    let mut violations = Vec::new();
    let mut type_errors = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(contract.fields.len() + 1);
    let mut fields: Vec<Field> = contract.arrow_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    for (i, spec) in contract.fields.iter().enumerate() {
        let target = spec.kind.arrow_type();
        let Some(source) = table.column_by_name(&spec.name) else {
            columns.push(datafusion::arrow::array::new_null_array(&target, rows));
            continue;
        };
        let converted = conform_column(spec.kind, source)?;
        for row in 0..rows {
            if source.is_valid(row) && converted.is_null(row) {
                type_errors.push((row, i));
                violations.push(Violation {
                    record_index: row as u64,
                    field: Some(spec.name.clone()),
                    rule: "type".into(),
                    value: cell_text(source, row),
                    message: format!("expected {}, got a {} value", spec.kind.json_name(), source.data_type()),
                });
            }
        }
        columns.push(converted);
    }
    if !contract.additional_properties {
        for (position, field) in schema.fields().iter().enumerate() {
            if contract.field_index(field.name()).is_some() || field.name() == RECORD_INDEX_COLUMN {
                continue;
            }
            let column = table.column(position);
            for row in (0..rows).filter(|&row| column.is_valid(row)) {
                violations.push(Violation {
                    record_index: row as u64,
                    field: Some(field.name().clone()),
                    rule: "additionalProperties".into(),
                    value: cell_text(column, row),
                    message: format!("unknown field {:?}: the contract does not allow additional properties", field.name()),
                });
            }
        }
    }
    violations.sort_by_key(|v| v.record_index);
    columns.push(Arc::new(UInt64Array::from_iter_values(0..rows as u64)));
    fields.push(Field::new(RECORD_INDEX_COLUMN, DataType::UInt64, false));
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    Ok(Decoded { batch, violations, type_errors, spans: Vec::new() })
}

/// Converts one column to a field kind's Arrow type; values that do not fit become NULL.
/// Only lossless conversions count: numbers never become text, floats become integers only
/// when integral, and text never becomes a number (as in JSON Schema).
fn conform_column(kind: FieldKind, source: &ArrayRef) -> Result<ArrayRef> {
    let data_type = source.data_type();
    let nulls = || datafusion::arrow::array::new_null_array(&kind.arrow_type(), source.len());
    let is_text = matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let converted = match kind {
        FieldKind::String | FieldKind::Object | FieldKind::Array if is_text => cast(source, &DataType::Utf8)?,
        FieldKind::Boolean if data_type == &DataType::Boolean => Arc::clone(source),
        FieldKind::Number if data_type.is_numeric() => cast(source, &DataType::Float64)?,
        FieldKind::Integer if data_type.is_integer() => cast(source, &DataType::Int64)?,
        FieldKind::Integer if data_type.is_floating() => {
            let floats = cast(source, &DataType::Float64)?;
            let integral: datafusion::arrow::array::Int64Array = floats
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.filter(|v| v.fract() == 0.0 && v.abs() < 9.2e18).map(|v| v as i64))
                .collect();
            Arc::new(integral)
        }
        _ => nulls(),
    };
    Ok(converted)
}

/// A cell rendered as text for a violation report.
fn cell_text(column: &ArrayRef, row: usize) -> Option<String> {
    datafusion::arrow::util::display::array_value_to_string(column, row).ok().map(|s| clip_value(&s))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int32Array, StringArray};

    use super::*;
    use crate::processor::decode::{decode, InputFormat};

    fn contract() -> Contract {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/shop_events.json");
        Contract::from_path(path).unwrap()
    }

    fn rules_of(violations: &[Violation]) -> Vec<(u64, &str, &str)> {
        violations
            .iter()
            .map(|v| (v.record_index, v.field.as_deref().unwrap_or(""), v.rule.as_str()))
            .collect()
    }

    const GOOD: &str = r#"{"event_id":"0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11","event_type":"purchase","event_time":"2026-11-27T10:00:00+02:00","user_id":"u_1","user_email":"a@b.io","user_country":"GB","user_plan":"pro","session_id":"s","product_id":"p_9","product_name":"Mug","product_category":"Kitchen","unit_price":9.5,"quantity":2,"currency":"EUR","properties":{"referrer":"ad"}}"#;

    #[test]
    fn a_good_record_has_no_violations() {
        let c = contract();
        let d = decode(&c, GOOD.as_bytes(), InputFormat::Ndjson).unwrap();
        assert!(d.violations.is_empty() && check_rules(&c, &d).is_empty());
    }

    #[test]
    fn every_rule_reports_every_violation_of_every_record() {
        let c = contract();
        let bad = r#"{"event_id":"nope","event_type":"sale","event_time":"yesterday","user_id":"U1","user_email":"not-an-email","user_country":"gb","user_plan":"gold","session_id":"SESSION","product_id":"x","unit_price":-1,"quantity":1001,"currency":"BTC"}"#;
        let long = format!(r#"{{"event_type":"page_view","event_time":"2026-11-27T10:00:00Z","session_id":"{}","unit_price":100000.01,"quantity":0}}"#, "é".repeat(65));
        let data = format!("{GOOD}\n{bad}\n{long}\n");
        let d = decode(&c, data.as_bytes(), InputFormat::Ndjson).unwrap();
        let v = check_rules(&c, &d);
        let mut got = rules_of(&v);
        got.sort();
        assert_eq!(
            got,
            [
                (1, "currency", "enum"),
                (1, "event_id", "format"),
                (1, "event_time", "format"),
                (1, "event_type", "enum"),
                (1, "product_id", "pattern"),
                (1, "quantity", "maximum"),
                (1, "unit_price", "minimum"),
                (1, "user_country", "pattern"),
                (1, "user_email", "format"),
                (1, "user_id", "pattern"),
                (1, "user_plan", "enum"),
                (2, "event_id", "required"),
                (2, "quantity", "minimum"),
                (2, "session_id", "maxLength"),
                (2, "unit_price", "maximum"),
                (2, "user_id", "required"),
            ]
        );
        let email = v.iter().find(|v| v.field.as_deref() == Some("user_email")).unwrap();
        assert_eq!((email.value.as_deref(), email.message.as_str()), (Some("not-an-email"), "not a valid email"));
        let length = v.iter().find(|v| v.rule == "maxLength").unwrap();
        assert_eq!(length.message, "65 characters, at most 64 allowed");
    }

    #[test]
    fn a_type_error_is_not_reported_again_as_missing() {
        let c = contract();
        let data = r#"{"event_id":7,"event_type":"page_view","event_time":"2026-11-27T10:00:00Z","user_id":"u_1"}"#;
        let d = decode(&c, data.as_bytes(), InputFormat::Ndjson).unwrap();
        assert_eq!(rules_of(&d.violations), [(0, "event_id", "type")]);
        assert!(check_rules(&c, &d).is_empty());
    }

    #[test]
    fn conform_table_casts_losslessly_and_reports_the_rest() {
        let c = contract();
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, true),
            Field::new("quantity", DataType::Float64, true),
            Field::new("unit_price", DataType::Int32, true),
            Field::new("user_id", DataType::Int32, true),
            Field::new("extra", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(StringArray::from(vec![Some("a"), None])),
                Arc::new(Float64Array::from(vec![Some(2.0), Some(2.5)])),
                Arc::new(Int32Array::from(vec![Some(3), None])),
                Arc::new(Int32Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![None, Some("x")])),
            ],
        )
        .unwrap();
        let d = conform_table(&c, &batch).unwrap();
        assert_eq!(
            rules_of(&d.violations),
            [(0, "user_id", "type"), (1, "quantity", "type"), (1, "extra", "additionalProperties")]
        );
        assert_eq!(d.batch.num_columns(), 16);
        assert_eq!(d.batch.column(c.field_index("quantity").unwrap()).as_primitive::<Int64Type>().value(0), 2);
        assert_eq!(d.batch.column(c.field_index("unit_price").unwrap()).as_primitive::<Float64Type>().value(0), 3.0);
        let mut all = d.violations.clone();
        all.extend(check_rules(&c, &d));
        assert!(rules_of(&all).contains(&(1, "event_id", "required")));
        assert!(!rules_of(&all).contains(&(0, "user_id", "required")));
    }
}
