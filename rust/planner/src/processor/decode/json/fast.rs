//! The fast path of the JSON record decoder: one hand-written scan of a record that is a flat
//! object of known fields with values of the right types, the shape almost every record has.
//!
//! It is strict and has no error reporting of its own: at the first thing it does not handle
//! (an escape in a key, an unknown or repeated field, a value of another type, an integer out
//! of range, anything that is not well-formed JSON) it gives up and the serde decoder
//! ([`super`]) decodes the record again from the start, with its violations and messages. So
//! whenever this path accepts a record, the serde path would have produced the same cells and
//! no violation; `tests` below check that on valid and broken records alike.
//!
//! Nested objects and arrays (kept as raw JSON text) are checked and delimited by the same scan.

use std::borrow::Cow;

use super::{short_eq, RecordState};
use crate::processor::contract::FieldKind;
use crate::processor::decode::columns::Cell;

/// Objects and arrays nested deeper than this are left to serde (its limit is 128).
const MAX_NESTING: usize = 64;

/// Decodes `text` into `state`'s cells; false when the serde decoder must decode it instead
/// (the cells are then left half-filled, and that decoder resets them).
pub(super) fn decode_flat_record<'a>(state: &mut RecordState<'_, 'a>, text: &'a str) -> bool {
    Scan { text, bytes: text.as_bytes(), pos: 0 }.record(state).is_some()
}

struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scan<'a> {
    fn record(&mut self, state: &mut RecordState<'_, 'a>) -> Option<()> {
        self.skip_whitespace();
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.expect(b'"')?;
                let field = match self.expected_key(state) {
                    Some(field) => field,
                    None => {
                        let Cow::Borrowed(key) = self.string()? else { return None };
                        state.lookup(key)?
                    }
                };
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
                if std::mem::replace(&mut state.seen[field], true) {
                    return None;
                }
                state.cells[field] = self.value(state.contract.fields[field].kind)?;
                self.skip_whitespace();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        self.skip_whitespace();
                    }
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.skip_whitespace();
        (self.pos == self.bytes.len()).then_some(())
    }

    /// The field after the previous one, if its name (and the closing quote) come next: senders
    /// write fields in one order, so most keys are one comparison, not a scan and a lookup.
    fn expected_key(&mut self, state: &mut RecordState<'_, 'a>) -> Option<usize> {
        let guess = state.next_guess;
        let name = state.contract.fields.get(guess)?.name.as_bytes();
        let end = self.pos + name.len();
        let found = self.bytes.get(end) == Some(&b'"') && short_eq(&self.bytes[self.pos..end], name);
        found.then(|| {
            self.pos = end + 1;
            state.next_guess = guess + 1;
            guess
        })
    }

    /// One field's value as the cell for a field of `kind`.
    fn value(&mut self, kind: FieldKind) -> Option<Cell<'a>> {
        match (self.peek()?, kind) {
            (b'"', FieldKind::String) => {
                self.pos += 1;
                Some(Cell::Str(self.string()?))
            }
            (b'{', FieldKind::Object) | (b'[', FieldKind::Array) => {
                let start = self.pos;
                self.nested(0)?;
                Some(Cell::Str(Cow::Borrowed(&self.text[start..self.pos])))
            }
            (b't', FieldKind::Boolean) => self.literal(b"true").then_some(Cell::Bool(true)),
            (b'f', FieldKind::Boolean) => self.literal(b"false").then_some(Cell::Bool(false)),
            (b'n', _) => self.literal(b"null").then_some(Cell::Absent),
            (b'-' | b'0'..=b'9', FieldKind::Integer) => {
                let (text, integral) = self.number()?;
                // A fraction or exponent (2.0, 1e3) is left to serde, which checks the value.
                Some(Cell::I64(if integral { text.parse().ok()? } else { return None }))
            }
            (b'-' | b'0'..=b'9', FieldKind::Number) => {
                let value: f64 = self.number()?.0.parse().ok()?;
                value.is_finite().then_some(Cell::F64(value))
            }
            _ => None,
        }
    }

    /// Skips an object or array (kept as its JSON text), checking it is well-formed. Deep
    /// nesting is left to serde, whose recursion limit then decides.
    fn nested(&mut self, depth: usize) -> Option<()> {
        if depth >= MAX_NESTING {
            return None;
        }
        let close = match self.peek()? {
            b'{' => b'}',
            b'[' => b']',
            _ => return None,
        };
        self.pos += 1;
        self.skip_whitespace();
        if self.eat(close) {
            return Some(());
        }
        loop {
            if close == b'}' {
                self.expect(b'"')?;
                self.string()?;
                self.skip_whitespace();
                self.expect(b':')?;
                self.skip_whitespace();
            }
            self.any_value(depth)?;
            self.skip_whitespace();
            if self.eat(close) {
                return Some(());
            }
            self.expect(b',')?;
            self.skip_whitespace();
        }
    }

    /// Skips any JSON value inside an object or array at `depth`.
    fn any_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                self.string().map(drop)
            }
            b'{' | b'[' => self.nested(depth + 1),
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            _ => self.number().map(drop),
        }
    }

    /// The rest of a string whose opening quote was just read, borrowed unless it had
    /// escapes (then unescaped and checked by serde_json).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.pos = start_of_quote_escape_or_control(self.bytes, self.pos)?;
            match self.bytes[self.pos] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.pos += 2;
                }
                // Control characters must be escaped in JSON.
                _ => return None,
            }
        }
        self.pos += 1;
        if escaped {
            return serde_json::from_str::<String>(&self.text[start - 1..self.pos]).ok().map(Cow::Owned);
        }
        Some(Cow::Borrowed(&self.text[start..self.pos - 1]))
    }

    /// A number as JSON's grammar has it: its text, and whether it is an integer literal.
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integral = true;
        if self.eat(b'.') {
            integral = false;
            self.at_least_one_digit()?;
        }
        if self.eat(b'e') || self.eat(b'E') {
            integral = false;
            let _ = self.eat(b'+') || self.eat(b'-');
            self.at_least_one_digit()?;
        }
        Some((&self.text[start..self.pos], integral))
    }

    fn at_least_one_digit(&mut self) -> Option<()> {
        self.peek()?.is_ascii_digit().then(|| self.digits())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.bytes[self.pos..].starts_with(word);
        self.pos += word.len();
        found
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }
}

/// The position of the first `"`, `\\` or control character at or after `from`, sixteen
/// bytes at a time with SSE2 where there is room, then eight at a time (values are short: a
/// call into a general SIMD search costs more than it saves).
fn start_of_quote_escape_or_control(bytes: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    let from = {
        use std::arch::x86_64::{
            _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_setzero_si128,
            _mm_subs_epu8,
        };
        let mut pos = from;
        while pos + 16 <= bytes.len() {
            // SAFETY: SSE2 is part of every x86_64 CPU, and the load reads bytes[pos..pos + 16],
            // which the loop condition keeps in bounds (an unaligned load is allowed).
            let found = unsafe {
                let chunk = _mm_loadu_si128(bytes.as_ptr().add(pos).cast());
                let quote = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b'\\' as i8));
                // Below 0x20 exactly where subtracting 0x1f (saturating at 0) leaves 0.
                let control = _mm_cmpeq_epi8(_mm_subs_epu8(chunk, _mm_set1_epi8(0x1f)), _mm_setzero_si128());
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
            };
            if found != 0 {
                return Some(pos + found.trailing_zeros() as usize);
            }
            pos += 16;
        }
        pos
    };
    const ONES: u64 = u64::MAX / 255;
    const HIGH_BITS: u64 = ONES << 7;
    let mut pos = from;
    while let Some(chunk) = bytes.get(pos..pos + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte's high bit is set where it is below 0x20, or equal to '"' or '\\' (its XOR
        // is zero). Only the lowest such byte is exact, which is the one wanted.
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (control | (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH_BITS;
        if found != 0 {
            return Some(pos + found.trailing_zeros() as usize / 8);
        }
        pos += 8;
    }
    bytes[pos.min(bytes.len())..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|i| pos + i)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Float64Type};

    use super::{decode_flat_record, RecordState};
    use crate::processor::decode::columns::Cell;
    use crate::processor::decode::tests::{contract, decode_str, decode_str_without_fast_path, rules};
    use crate::processor::decode::InputFormat;

    /// Records the fast path takes and records it must leave to serde, each decoded both ways.
    const RECORDS: &[&str] = &[
        r#"{"id":"a","n":3,"x":1.5,"ok":true,"p":{"k":[1,2]}}"#,
        r#" { "id" : "b" , "n" : -0 , "x" : -0 , "ok" : false , "p" : null } "#,
        r#"{"id":"\u00e9\"\\\/","x":1e2,"n":null}"#,
        "{\"id\":\"a long value with a newline escaped\\nbeyond eight bytes and \\\"quotes\\\"\"}",
        r#"{}"#,
        r#"{"x":44.97}"#,
        r#"{"x":0.1,"n":-9223372036854775808}"#,
        r#"{"x":123456789012345678901234567890}"#,
        r#"{"x":2.2250738585072011e-308}"#,
        r#"{"p":{ "a" : [ 1, -2.5e3, "x\"y", {"b":null,"c":[]}, true, false ] , "d" : {} }}"#,
        r#"{"p":{"\u00e9":"\ud83d\ude00"}}"#,
        r#"{"p":{"a":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}"#,
        r#"{"n":2.0}"#,
        r#"{"n":2.5}"#,
        r#"{"n":1e2}"#,
        r#"{"n":9223372036854775808}"#,
        r#"{"x":1e999}"#,
        r#"{"x":01}"#,
        r#"{"x":1.}"#,
        r#"{"x":.5}"#,
        r#"{"x":-}"#,
        r#"{"x":+1}"#,
        r#"{"x":1e}"#,
        r#"{"x":NaN}"#,
        r#"{"id":"a""#,
        r#"{"id":"a",}"#,
        r#"{"id":"a"}x"#,
        r#"{"id":"a" "n":1}"#,
        r#"{"id":"tab	in"}"#,
        "{\"id\":\"a long value with a tab\tbeyond eight bytes\"}",
        "{\"id\":\"\u{7f}\u{1f}\"}",
        r#"{"id":"bad \q escape"}"#,
        r#"{"id":1}"#,
        r#"{"id":"a","id":"b"}"#,
        r#"{"zz":1}"#,
        r#"{"i\u0064":"escaped key"}"#,
        r#"{"ok":tru}"#,
        r#"{"ok":truex}"#,
        r#"{"ok":"true"}"#,
        r#"{"p":[1]}"#,
        r#"{"p":{"k":}}"#,
        r#"{"p":{"a":1,}}"#,
        r#"{"p":{"a" 1}}"#,
        r#"{"p":{a:1}}"#,
        r#"{"p":{"a":[1 2]}}"#,
        r#"{"p":{"a":[1,]}}"#,
        r#"{"p":{"a":"\ud800"}}"#,
        r#"{"p":{"a":"tab	in"}}"#,
        r#"{"p":{"a":01}}"#,
        r#"{"p":{"a":nul}}"#,
        r#"{"p":{"a":1]}"#,
        r#"{"p":{"a":1}"#,
        r#"{"p":"text"}"#,
        r#"[1,2]"#,
        r#""text""#,
        r#"nul"#,
    ];

    /// Equal columns, floats compared by their bits (Arrow's equality has -0.0 == 0.0).
    fn same(fast: &RecordBatch, slow: &RecordBatch) -> bool {
        fast.columns().iter().zip(slow.columns()).all(|(a, b)| match a.data_type() {
            DataType::Float64 => {
                let bits = |c: &ArrayRef| -> Vec<Option<u64>> {
                    c.as_primitive::<Float64Type>().iter().map(|v| v.map(f64::to_bits)).collect()
                };
                bits(a) == bits(b)
            }
            _ => a == b,
        })
    }

    #[test]
    fn the_string_search_finds_the_first_quote_backslash_or_control_character() {
        let text: Vec<u8> =
            b"plain text, then a \"quote\" and a \\ backslash; \x01 \x1f \x7f \xc3\xa9 \x20 tail end..".to_vec();
        for from in 0..=text.len() {
            let naive = text[from..].iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|i| from + i);
            assert_eq!(super::start_of_quote_escape_or_control(&text, from), naive, "from {from}");
            // And on every suffix, so that each lands in the 16-, 8- and 1-byte steps.
            let cut = &text[..text.len() - from.min(text.len())];
            let naive = cut.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            assert_eq!(super::start_of_quote_escape_or_control(cut, 0), naive, "first {} bytes", cut.len());
        }
    }

    #[test]
    fn flat_well_typed_records_take_the_fast_path_and_the_rest_do_not() {
        let contract = contract();
        let mut state = RecordState::new(&contract);
        let taken: Vec<bool> = RECORDS
            .iter()
            .map(|record| {
                state.reset(0);
                decode_flat_record(&mut state, record)
            })
            .collect();
        // The first eleven are well-formed and well-typed (the 12th nests deeper than the
        // scan goes); of the rest only the integers written as 2.0, 2.5 and 1e2 (left to
        // serde's checks) and the deep one are well-formed JSON at all.
        assert_eq!(taken.iter().position(|t| !t), Some(11), "{taken:?}");
        assert!(taken[11..].iter().all(|t| !t), "{taken:?}");
        state.reset(0);
        assert!(decode_flat_record(&mut state, r#"{"id":"a\u00e9","x":-1.5e-3,"ok":false}"#));
        assert!(matches!(&state.cells[0], Cell::Str(s) if s == "a\u{e9}"));
        assert!(matches!(state.cells[2], Cell::F64(x) if x == -0.0015));
        // Keys that only start like the expected one, or are escaped, are looked up in full.
        state.reset(0);
        assert!(decode_flat_record(&mut state, r#"{"id":"a","n":1}"#));
        state.reset(0);
        assert!(!decode_flat_record(&mut state, r#"{"idx":"a"}"#), "unknown field");
        state.reset(0);
        assert!(!decode_flat_record(&mut state, r#"{"i\u0064":"a"}"#), "escaped key");
        state.reset(0);
        assert!(decode_flat_record(&mut state, r#"{"x":1.5,"id":"b"}"#), "fields out of order");
        assert!(matches!(&state.cells[0], Cell::Str(s) if s == "b"));
    }

    #[test]
    fn every_record_decodes_as_the_serde_decoder_decodes_it() {
        for record in RECORDS {
            let (fast, slow) = (decode_str(record, InputFormat::Ndjson), decode_str_without_fast_path(record));
            assert_eq!(rules(&fast), rules(&slow), "{record}");
            let messages = |d: &crate::processor::decode::Decoded| -> Vec<String> {
                d.violations.iter().map(|v| v.message.clone()).collect()
            };
            assert_eq!(messages(&fast), messages(&slow), "{record}");
            assert!(same(&fast.batch, &slow.batch), "{record}:\n{:?}\n{:?}", fast.batch, slow.batch);
            assert_eq!(fast.type_errors, slow.type_errors, "{record}");
        }
        let all = RECORDS.join("\n");
        let (fast, slow) = (decode_str(&all, InputFormat::Ndjson), decode_str_without_fast_path(&all));
        assert_eq!(rules(&fast), rules(&slow));
        assert!(same(&fast.batch, &slow.batch));
        assert!(fast.batch.num_rows() > 20, "most records decode: {}", fast.batch.num_rows());
    }
}
