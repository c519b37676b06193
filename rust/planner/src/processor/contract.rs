//! Data contracts: one JSON Schema file per dataset (`contracts/<dataset>.json`), compiled into
//! an Arrow schema plus per-field rules. This is the single source of truth the decoder,
//! validator, API and (later) dbt and Great Expectations are generated from.
//!
//! Supported keywords: top level `type: object`, `properties`, `required`,
//! `additionalProperties` (boolean); per field `type` (`string`, `number`, `integer`,
//! `boolean`, `object`, `array`, optionally with `"null"`), `enum`, `pattern`, `format`
//! (`uuid`, `email`, `date-time`), `minimum`, `maximum`, `maxLength`; annotations
//! (`title`, `description`, `examples`, `$schema`, `$id`, `$comment`, `x-*`) are ignored,
//! except `x-weir-partition`: how the dataset's lake table is partitioned, a list such as
//! `["day(event_time)"]` over the pipeline's output columns (see `dataset`), and
//! `x-weir-record-format`: how the consumer reads records on the dataset's stream that
//! Weir's producer did not write ([`RecordFormat`]).
//! Any other keyword is an error naming it, so a typo such as `maxlength` cannot silently
//! switch a rule off.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use regex::Regex;
use serde_json::{Map, Value};
use weir_udfs::formats::{StringFormat, SUPPORTED_FORMATS};

use crate::processor::error::{ProcessorError, Result};

/// The JSON type a contract field declares, and so how it is decoded and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Number,
    Integer,
    Boolean,
    /// Stored as compact JSON text.
    Object,
    /// Stored as compact JSON text.
    Array,
}

impl FieldKind {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "number" => Self::Number,
            "integer" => Self::Integer,
            "boolean" => Self::Boolean,
            "object" => Self::Object,
            "array" => Self::Array,
            _ => return None,
        })
    }

    /// Whether values of this kind are JSON scalars (not objects or arrays).
    pub fn is_scalar(self) -> bool {
        !matches!(self, Self::Object | Self::Array)
    }

    /// The JSON Schema name of the type, used in messages.
    pub fn json_name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }

    /// The Arrow type values of this kind are stored as.
    pub fn arrow_type(self) -> DataType {
        match self {
            Self::String | Self::Object | Self::Array => DataType::Utf8,
            Self::Number => DataType::Float64,
            Self::Integer => DataType::Int64,
            Self::Boolean => DataType::Boolean,
        }
    }
}

/// One field of a contract with its compiled rules.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
    pub required: bool,
    pub enum_values: Option<Vec<Value>>,
    pub pattern: Option<Regex>,
    pub format: Option<StringFormat>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub max_length: Option<usize>,
}

/// A compiled data contract.
#[derive(Debug, Clone)]
pub struct Contract {
    /// The dataset name (the file stem, or the schema's `title`).
    pub name: String,
    pub fields: Vec<FieldSpec>,
    pub additional_properties: bool,
    /// `x-weir-partition`: partition fields of the dataset's table, e.g. `day(event_time)`;
    /// `None` when the contract does not declare them.
    pub partition: Option<Vec<String>>,
    /// `x-weir-record-format`: how records other producers put on the stream are read.
    pub record_format: RecordFormat,
    /// The contract's version: `sha256:` and the first 16 hex digits of the SHA-256 of its
    /// JSON with keys sorted and no white space, so reformatting or reordering the file
    /// keeps the version and any change of content makes a new one. Recorded in each
    /// snapshot the consumer commits (`weir.contract-version`).
    pub version: String,
    schema: SchemaRef,
}

/// How the consumer reads a record on the dataset's stream that is not a Weir record
/// (`x-weir-record-format`). In every format but `weir`, a KPL aggregated record is
/// de-aggregated and a gzip-compressed one decompressed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// JSON when the record starts with `{` or `[` (one object, an array of them, or NDJSON
    /// lines), otherwise CSV lines.
    #[default]
    Auto,
    /// Weir records only: anything else is dead-lettered.
    Weir,
    /// One JSON object, an array of objects, or NDJSON lines.
    Json,
    /// CSV lines, with or without a header line (without one, the columns are the
    /// contract's properties in order).
    Csv,
}

impl RecordFormat {
    pub const NAMES: [&'static str; 4] = ["auto", "weir", "json", "csv"];

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "weir" => Some(Self::Weir),
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

const ANNOTATIONS: &[&str] = &["title", "description", "examples", "$comment", "default", "deprecated"];

fn is_annotation(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword) || keyword.starts_with("x-")
}

/// `sha256:<16 hex digits>` of `document` written with sorted keys and no white space.
fn content_version(document: &Value) -> String {
    use sha2::{Digest, Sha256};
    fn canonical(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut text = String::new();
    canonical(document, &mut text);
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl Contract {
    /// Reads and compiles the contract at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProcessorError::Contract {
            contract: origin.clone(),
            path: "/".into(),
            keyword: String::new(),
            message: format!("cannot read the contract file: {e}"),
        })?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("contract").to_string();
        Self::from_json_str(&text, &name, &origin)
    }

    /// Compiles contract text; `origin` names it in errors.
    pub fn from_json_str(text: &str, name: &str, origin: &str) -> Result<Self> {
        let err = |path: &str, keyword: &str, message: String| ProcessorError::Contract {
            contract: origin.to_string(),
            path: path.to_string(),
            keyword: keyword.to_string(),
            message,
        };
        let document: Value = serde_json::from_str(text)
            .map_err(|e| err("/", "", format!("not valid JSON: {e}")))?;
        let Value::Object(top) = document else {
            return Err(err("/", "", "a contract is a JSON object".into()));
        };
        let mut properties = None;
        let mut required: Vec<String> = Vec::new();
        let mut additional_properties = true;
        let mut partition = None;
        let mut record_format = RecordFormat::default();
        for (keyword, value) in &top {
            let path = format!("/{keyword}");
            match keyword.as_str() {
                "$schema" | "$id" => {}
                "x-weir-partition" => {
                    partition = Some(
                        value
                            .as_array()
                            .and_then(|a| a.iter().map(|v| v.as_str().filter(|s| !s.trim().is_empty()).map(String::from)).collect())
                            .ok_or_else(|| {
                                err(&path, keyword, "expected an array of partition fields such as \"day(event_time)\"".into())
                            })?,
                    )
                }
                "x-weir-record-format" => {
                    record_format = value.as_str().and_then(RecordFormat::parse).ok_or_else(|| {
                        err(&path, keyword, format!("expected one of {}", RecordFormat::NAMES.map(|n| format!("{n:?}")).join(", ")))
                    })?
                }
                k if is_annotation(k) => {}
                "type" if value == "object" => {}
                "type" => return Err(err(&path, keyword, "a contract's top-level type must be \"object\"".into())),
                "properties" => {
                    properties = Some(value.as_object().ok_or_else(|| {
                        err(&path, keyword, "expected an object mapping field names to schemas".into())
                    })?)
                }
                "required" => {
                    required = value
                        .as_array()
                        .and_then(|a| a.iter().map(|v| v.as_str().map(String::from)).collect())
                        .ok_or_else(|| err(&path, keyword, "expected an array of field names".into()))?
                }
                "additionalProperties" => {
                    additional_properties = value.as_bool().ok_or_else(|| {
                        err(&path, keyword, "only true or false is supported".into())
                    })?
                }
                _ => return Err(err(&path, keyword, format!("unsupported keyword {keyword:?}"))),
            }
        }
        let properties = properties
            .ok_or_else(|| err("/properties", "properties", "a contract needs a properties object".into()))?;
        for name in &required {
            if !properties.contains_key(name) {
                return Err(err("/required", "required", format!("{name:?} is required but not defined in properties")));
            }
        }
        let required: HashSet<&str> = required.iter().map(String::as_str).collect();
        let fields = properties
            .iter()
            .map(|(field, schema)| compile_field(field, schema, required.contains(field.as_str()), &err))
            .collect::<Result<Vec<_>>>()?;
        let title = top.get("title").and_then(Value::as_str).unwrap_or(name).to_string();
        let schema = Arc::new(Schema::new(
            fields
                .iter()
                .map(|f| Field::new(&f.name, f.kind.arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        let version = content_version(&Value::Object(top));
        Ok(Self { name: title, fields, additional_properties, partition, record_format, version, schema })
    }

    /// The Arrow schema of decoded records: one nullable column per field, in contract order.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The position of a field by name.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

fn compile_field(
    name: &str,
    schema: &Value,
    required: bool,
    err: &impl Fn(&str, &str, String) -> ProcessorError,
) -> Result<FieldSpec> {
    let base = format!("/properties/{name}");
    let Value::Object(schema) = schema else {
        return Err(err(&base, "", "a field schema is a JSON object".into()));
    };
    let kind = field_kind(schema, &base, err)?;
    let mut spec = FieldSpec {
        name: name.to_string(),
        kind,
        required,
        enum_values: None,
        pattern: None,
        format: None,
        minimum: None,
        maximum: None,
        max_length: None,
    };
    let numeric = matches!(kind, FieldKind::Number | FieldKind::Integer);
    for (keyword, value) in schema {
        let path = format!("{base}/{keyword}");
        let wrong_kind = || err(&path, keyword, format!("{keyword} does not apply to a {} field", kind.json_name()));
        match keyword.as_str() {
            "type" => {}
            k if is_annotation(k) => {}
            "enum" => {
                let values = value
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| err(&path, keyword, "expected a non-empty array of values".into()))?;
                spec.enum_values = Some(values.clone());
            }
            "pattern" if kind == FieldKind::String => {
                let source = value.as_str().ok_or_else(|| err(&path, keyword, "expected a regular expression string".into()))?;
                spec.pattern = Some(
                    Regex::new(source).map_err(|e| err(&path, keyword, format!("invalid regular expression: {e}")))?,
                );
            }
            "format" if kind == FieldKind::String => {
                let format = StringFormat::parse(value.as_str().unwrap_or_default()).ok_or_else(|| {
                    err(&path, keyword, format!("unsupported format {value}; supported: {}", SUPPORTED_FORMATS.join(", ")))
                })?;
                spec.format = Some(format);
            }
            "minimum" | "maximum" if numeric => {
                let bound = value.as_f64().ok_or_else(|| err(&path, keyword, "expected a number".into()))?;
                if keyword == "minimum" {
                    spec.minimum = Some(bound);
                } else {
                    spec.maximum = Some(bound);
                }
            }
            "maxLength" if kind == FieldKind::String => {
                spec.max_length = Some(
                    value
                        .as_u64()
                        .ok_or_else(|| err(&path, keyword, "expected a non-negative integer".into()))?
                        as usize,
                );
            }
            "pattern" | "format" | "minimum" | "maximum" | "maxLength" => return Err(wrong_kind()),
            _ => return Err(err(&path, keyword, format!("unsupported keyword {keyword:?}"))),
        }
    }
    Ok(spec)
}

fn field_kind(
    schema: &Map<String, Value>,
    base: &str,
    err: &impl Fn(&str, &str, String) -> ProcessorError,
) -> Result<FieldKind> {
    let path = format!("{base}/type");
    let names: Vec<&str> = match schema.get("type") {
        None => return Err(err(&path, "type", "every field needs a type".into())),
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        Some(_) => vec![],
    };
    let non_null: Vec<&str> = names.into_iter().filter(|n| *n != "null").collect();
    match non_null.as_slice() {
        [name] => FieldKind::parse(name)
            .ok_or_else(|| err(&path, "type", format!("unknown type {name:?}"))),
        _ => Err(err(&path, "type", "expected one type name, optionally with \"null\"".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Contract> {
        Contract::from_json_str(text, "t", "test.json")
    }

    #[test]
    fn the_version_follows_the_content_not_the_layout() {
        let a = compile(r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"},"n":{"type":"integer"}}}"#).unwrap();
        let b = compile("{\n  \"properties\": {\"n\": {\"type\": \"integer\"}, \"id\": {\"type\": \"string\"}},\n  \"required\": [\"id\"], \"type\": \"object\"\n}").unwrap();
        let c = compile(r#"{"type":"object","required":["id"],"properties":{"id":{"type":"string"},"n":{"type":"number"}}}"#).unwrap();
        assert!(a.version.starts_with("sha256:") && a.version.len() == 23, "{}", a.version);
        assert_eq!(a.version, b.version);
        assert_ne!(a.version, c.version);
    }

    #[test]
    fn compiles_fields_rules_and_arrow_schema() {
        let c = compile(
            r#"{"type":"object","additionalProperties":false,"required":["id"],
                "properties":{"id":{"type":"string","format":"uuid"},
                              "qty":{"type":["integer","null"],"minimum":1,"maximum":10},
                              "tags":{"type":"object"},
                              "plan":{"type":"string","enum":["free","pro"],"maxLength":5,"pattern":"^[a-z]+$"}}}"#,
        )
        .unwrap();
        assert!(!c.additional_properties);
        let names: Vec<_> = c.fields.iter().map(|f| (f.name.as_str(), f.kind, f.required)).collect();
        assert_eq!(
            names,
            [("id", FieldKind::String, true), ("qty", FieldKind::Integer, false), ("tags", FieldKind::Object, false), ("plan", FieldKind::String, false)]
        );
        let schema = c.arrow_schema();
        let types: Vec<_> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types, [DataType::Utf8, DataType::Int64, DataType::Utf8, DataType::Utf8]);
        assert_eq!(c.fields[1].minimum, Some(1.0));
        assert_eq!(c.fields[3].max_length, Some(5));
    }

    fn error_of(text: &str) -> String {
        compile(text).unwrap_err().to_string()
    }

    #[test]
    fn the_record_format_is_auto_unless_the_contract_names_another() {
        let base = r#"{"type":"object","properties":{"id":{"type":"string"}}"#;
        assert_eq!(compile(&format!("{base}}}")).unwrap().record_format, RecordFormat::Auto);
        for name in RecordFormat::NAMES {
            let c = compile(&format!(r#"{base},"x-weir-record-format":"{name}"}}"#)).unwrap();
            assert_eq!(c.record_format.as_str(), name);
        }
        let error = error_of(&format!(r#"{base},"x-weir-record-format":"xml"}}"#));
        assert!(error.contains("/x-weir-record-format") && error.contains(r#""auto", "weir", "json", "csv""#), "{error}");
    }

    #[test]
    fn broken_contracts_name_the_keyword_and_path() {
        assert_eq!(
            error_of(r#"{"properties":{"a":{"type":"string","maxlength":3}}}"#),
            "contract test.json: /properties/a/maxlength: unsupported keyword \"maxlength\""
        );
        assert_eq!(
            error_of(r#"{"properties":{"a":{"type":"strin"}}}"#),
            "contract test.json: /properties/a/type: unknown type \"strin\""
        );
        assert_eq!(
            error_of(r#"{"properties":{"a":{"type":"string","pattern":"("}}}"#)
                .split(": invalid regular expression")
                .next()
                .unwrap(),
            "contract test.json: /properties/a/pattern"
        );
        assert_eq!(
            error_of(r#"{"properties":{"a":{"type":"integer","format":"email"}}}"#),
            "contract test.json: /properties/a/format: format does not apply to a integer field"
        );
        assert_eq!(
            error_of(r#"{"properties":{"a":{"type":"string","format":"ipv4"}}}"#),
            "contract test.json: /properties/a/format: unsupported format \"ipv4\"; supported: uuid, email, date-time"
        );
        assert_eq!(
            error_of(r#"{"required":["b"],"properties":{"a":{"type":"string"}}}"#),
            "contract test.json: /required: \"b\" is required but not defined in properties"
        );
        assert_eq!(
            error_of(r#"{"properties":{"a":{"type":"number","minimum":"0"}}}"#),
            "contract test.json: /properties/a/minimum: expected a number"
        );
        assert!(error_of("{not json").starts_with("contract test.json: /: not valid JSON"));
        assert_eq!(error_of(r#"{"type":"object"}"#), "contract test.json: /properties: a contract needs a properties object");
    }

    #[test]
    fn the_shipped_shop_events_contract_compiles() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../contracts/shop_events.json");
        let c = Contract::from_path(path).unwrap();
        assert_eq!(c.name, "shop_events");
        assert_eq!(c.fields.len(), 15);
        assert!(!c.additional_properties);
        let required: Vec<_> = c.fields.iter().filter(|f| f.required).map(|f| f.name.as_str()).collect();
        assert_eq!(required, ["event_id", "event_type", "event_time", "user_id"]);
    }
}
