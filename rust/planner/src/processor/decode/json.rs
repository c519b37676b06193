//! JSON records: documents and arrays split into records, and the serde visitor that decodes
//! one record's object straight from the parser's tokens into staged cells. Most records are
//! first tried by the [`fast`] path, which hands anything unusual to the visitor.

mod fast;

use std::borrow::Cow;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use weir_udfs::JsonKey;

use super::columns::{json_cell, type_violation, unknown_field_violation, Cell, RecordDecoder, TypeMismatch};
use crate::processor::contract::{Contract, FieldKind};
use crate::processor::violation::{clip_value, Violation};

impl<'c> RecordDecoder<'c> {
    /// `json` input: an array of objects, one object, or newline-delimited objects.
    /// `json` input that is not line-delimited ([`decode`](super::decode) sends that to the line decoder):
    /// an array of objects, or one document (a pretty-printed object spans several lines).
    pub(super) fn decode_json_document(&mut self, data: &[u8]) {
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

    /// Decodes one record's JSON text; `line` (1-based) positions syntax errors in NDJSON.
    pub(super) fn decode_json_record<'a>(
        &mut self,
        state: &mut RecordState<'c, 'a>,
        record_index: u64,
        text: &'a str,
        line: Option<usize>,
    ) {
        state.reset(record_index);
        if fast_path_enabled() && fast::decode_flat_record(state, text) {
            return self.commit(record_index, &state.cells, &state.mismatched);
        }
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
}

#[cfg(test)]
thread_local! {
    /// Set by tests to decode with the serde visitor only, to compare it with the fast path.
    pub(super) static SERDE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn fast_path_enabled() -> bool {
    #[cfg(test)]
    return !SERDE_ONLY.with(std::cell::Cell::get);
    #[cfg(not(test))]
    true
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
pub(super) struct RecordState<'c, 'de> {
    contract: &'c Contract,
    record_index: u64,
    next_guess: usize,
    cells: Vec<Cell<'de>>,
    seen: Vec<bool>,
    mismatched: Vec<usize>,
    violations: Vec<Violation>,
}

impl<'c, 'de> RecordState<'c, 'de> {
    pub(super) fn new(contract: &'c Contract) -> Self {
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
        let found = if guess < fields.len() && short_eq(fields[guess].name.as_bytes(), key.as_bytes()) {
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

/// `a == b` for short byte strings (keys, enum values) without a call to `memcmp` (the call
/// costs more than the compare).
pub(crate) fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Two overlapping loads cover every length from the word size to twice it.
    match a.len() {
        8..=16 => {
            let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
            word(a, 0) == word(b, 0) && word(a, a.len() - 8) == word(b, a.len() - 8)
        }
        4..=7 => {
            let word = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("four bytes"));
            word(a, 0) == word(b, 0) && word(a, a.len() - 4) == word(b, a.len() - 4)
        }
        _ => a.iter().zip(b).all(|(x, y)| x == y),
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

    use crate::processor::decode::tests::{decode_str, rules};
    use crate::processor::decode::InputFormat;

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
    fn a_broken_array_is_quarantined_whole() {
        let d = decode_str("[{\"id\":\"a\"}, {\"id\":", InputFormat::Json);
        assert_eq!(rules(&d), [(0, None, "syntax")]);
        assert_eq!(d.batch.num_rows(), 0);
        assert_eq!((d.spans.len(), d.spans[0].clone()), (1, 0..19));
    }

    #[test]
    fn short_eq_agrees_with_equality() {
        let keys = [
            "", "a", "ab", "abc", "abcd", "abce", "abcde", "user_id", "user_ix", "event_id", "event_ix",
            "event_type_x", "event_tzpe_x", "product_category", "product_categorz", "xroduct_category",
            "a_seventeen_bytes", "a_seventeen_bytez", "a_sevenxeen_bytes",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(super::short_eq(a.as_bytes(), b.as_bytes()), a == b, "{a:?} {b:?}");
            }
        }
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
}
