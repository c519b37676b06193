//! Line-delimited input (NDJSON, and `json` with one object per line): split into lines, cut
//! into one chunk per core for large inputs, and the decoded chunks joined back in order.

use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt64Array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::UInt64Type;

use super::columns::RecordDecoder;
use super::json::RecordState;
use super::{estimate_rows, Decoded};
use crate::processor::contract::Contract;
use crate::processor::error::Result;
use crate::processor::violation::Violation;

/// Inputs smaller than this are decoded on one thread (threads cost more than they save).
const PARALLEL_MIN_BYTES: usize = 4 << 20;

/// Decodes line-delimited records on every core: the input is cut at line ends into one
/// chunk per core, each decoded on its own, and the parts are joined with record indexes,
/// rows and line numbers renumbered as if one decoder had read the whole input.
pub(super) fn decode_lines_in_parallel(contract: &Contract, data: &[u8]) -> Result<Decoded> {
    // Small inputs first: asking for the core count reads cgroup files each time.
    let workers = if data.len() < PARALLEL_MIN_BYTES { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) };
    if workers < 2 {
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

impl RecordDecoder<'_> {
    /// Newline-delimited records in `data[range]` (which starts at a line start, after
    /// `lines_before` lines); blank lines are skipped, a bad line is one violation.
    fn decode_lines(&mut self, data: &[u8], range: Range<usize>, lines_before: usize) {
        let mut state = RecordState::new(self.contract);
        // One SIMD check of the whole chunk; lines are then cut from it as text (a line
        // break is always a character boundary). Only a chunk with bad bytes is checked
        // line by line, to say which lines.
        let text = simdutf8::basic::from_utf8(&data[range.clone()]).ok();
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
            let record_index = self.next_record(span.clone());
            let line_text = match text {
                Some(text) => Ok(&text[span.start - range.start..span.start - range.start + line.len()]),
                None => std::str::from_utf8(line),
            };
            match line_text {
                Ok(text) => self.decode_json_record(&mut state, record_index, text, Some(line_number)),
                Err(e) => self.syntax(
                    record_index,
                    format!("line {line_number}: invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::decode::tests::{contract, decode_str, rules};
    use crate::processor::decode::{decode, InputFormat};

    #[test]
    fn a_malformed_line_in_the_middle_is_one_syntax_violation_and_the_rest_decode() {
        let d = decode_str("{\"id\":\"a\"}\n{\"id\": \"b\", \"n\": }\n{\"id\":\"c\"}\n", InputFormat::Ndjson);
        assert_eq!(rules(&d), [(1, None, "syntax")]);
        assert!(d.violations[0].message.contains("at line 2, column"), "{}", d.violations[0].message);
        assert_eq!(d.batch.column(5).as_primitive::<UInt64Type>().values(), &[0, 2]);
        assert_eq!(d.spans[1], 11..29);
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
    fn non_utf8_line_is_a_syntax_violation() {
        let mut data = b"{\"id\":\"a\"}\n{\"id\":\"".to_vec();
        data.extend_from_slice(&[0xff, 0xfe]);
        data.extend_from_slice(b"\"}\n{\"id\":\"c\"}");
        let d = decode(&contract(), &data, InputFormat::Ndjson).unwrap();
        assert_eq!(rules(&d), [(1, None, "syntax")]);
        assert_eq!(d.violations[0].message, "line 2: invalid UTF-8 at byte 7 of the line");
        assert_eq!(d.batch.num_rows(), 2);
    }
}
