//! Records other producers put on a dataset's stream: what a record written by boto3's
//! `put_record`, the AWS CLI, a Lambda or the Kinesis Producer Library (KPL) holds, unwrapped
//! down to event bytes the processor reads ([`unwrap`]).
//!
//! * A KPL aggregated record (`0xF3899AC2` magic, a protobuf `AggregatedRecord`, the MD5 of
//!   the protobuf) holds user records, each with its partition key: [`deaggregate`]. As in
//!   the KPL's own de-aggregator, a record with the magic but a wrong digest is an ordinary
//!   record.
//! * A gzip-compressed record (`1f 8b`) is decompressed: [`gunzip`].
//! * What is left is read as the contract's `x-weir-record-format` says ([`RecordFormat`]):
//!   JSON (one object, an array of objects, NDJSON lines) becomes NDJSON lines, one event
//!   each, so every foreign JSON record of a batch goes through the processor in one input;
//!   CSV lines get the contract's header line unless they have one.
//!
//! Pure functions, no I/O.

use std::io::Read;

use md5::{Digest, Md5};
use serde_json::value::RawValue;

use crate::processor::json_is_line_delimited;
use crate::RecordFormat;

/// The first bytes of a KPL aggregated record.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// The MD5 digest after the protobuf message.
const KPL_DIGEST_BYTES: usize = 16;
/// The first bytes of gzip data.
const GZIP_MAGIC: [u8; 2] = [0x1F, 0x8B];
/// A gzip record decompresses to at most this much (a Kinesis record holds 1 MiB).
const MAX_GUNZIPPED_BYTES: u64 = 64 << 20;

/// Events of one foreign record, or of one user record of a KPL aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The user record's index in its aggregated record (its KPL sub-sequence number);
    /// `None` for a record that was not aggregated.
    pub sub_record: Option<u32>,
    pub events: PieceEvents,
}

/// What the processor reads of a piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PieceEvents {
    /// NDJSON: `count` non-blank lines, each ending with a newline, one event each.
    Lines { text: Vec<u8>, count: usize },
    /// CSV with a header line; its events are counted by the processor.
    Csv(Vec<u8>),
}

/// The pieces of a record that is not a Weir record, read as `format` says (never
/// [`RecordFormat::Weir`]), CSV headers from `columns` (the contract's properties in order).
/// An error names what cannot be read (a malformed aggregated record, bad gzip).
pub fn unwrap(data: &[u8], format: RecordFormat, columns: &[String]) -> Result<Vec<Piece>, String> {
    let (payloads, aggregated): (Vec<Vec<u8>>, bool) = match deaggregate(data) {
        Some(records) => (records?.into_iter().map(|r| r.data).collect(), true),
        None => (vec![data.to_vec()], false),
    };
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let payload = if is_gzip(&payload) { gunzip(&payload, MAX_GUNZIPPED_BYTES)? } else { payload };
            let as_json = match format {
                RecordFormat::Json => true,
                RecordFormat::Csv => false,
                RecordFormat::Auto | RecordFormat::Weir => starts_like_json(&payload),
            };
            let events = if as_json { json_lines(&payload) } else { PieceEvents::Csv(with_header(payload, columns)) };
            let sub_record = aggregated.then(|| u32::try_from(i).unwrap_or(u32::MAX));
            Ok(Piece { sub_record, events })
        })
        .collect()
}

/// Whether the first byte that is not white space (after a UTF-8 byte order mark) opens a
/// JSON object or array.
fn starts_like_json(data: &[u8]) -> bool {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    matches!(data.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
}

/// `data` as NDJSON lines: an array's items one per line, NDJSON as it is (blank lines
/// dropped), anything else (a pretty-printed object, text that is not JSON) on one line,
/// for the processor to accept or reject as one event.
fn json_lines(data: &[u8]) -> PieceEvents {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut text = Vec::with_capacity(data.len() + 1);
    let mut count = 0;
    let mut line = |bytes: &[u8]| {
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            text.extend(bytes.iter().map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
            text.push(b'\n');
            count += 1;
        }
    };
    let first = data.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        match serde_json::from_slice::<Vec<&RawValue>>(data) {
            Ok(items) => items.iter().for_each(|item| line(item.get().as_bytes())),
            Err(_) => line(data),
        }
    } else if json_is_line_delimited(data) {
        data.split(|&b| b == b'\n').for_each(&mut line);
    } else {
        line(data);
    }
    PieceEvents::Lines { text, count }
}

/// CSV `data` with the header line `columns` first, unless its first line is a header
/// already (every name in it one of `columns`).
fn with_header(data: Vec<u8>, columns: &[String]) -> Vec<u8> {
    let first_line = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let names: Vec<String> = String::from_utf8_lossy(first_line)
        .trim_start_matches('\u{FEFF}')
        .trim_end_matches('\r')
        .split(',')
        .map(|name| name.trim().trim_matches('"').to_string())
        .collect();
    if names.iter().all(|name| columns.contains(name)) {
        return data;
    }
    let mut out = columns.join(",").into_bytes();
    out.push(b'\n');
    out.extend_from_slice(&data);
    out
}

/// One user record of a KPL aggregated record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The user records of a KPL aggregated record, in order; `None` when `data` is not one (no
/// magic, too short, or a digest that does not match). `Some(Err)` names what is malformed
/// in a record whose digest matched.
pub fn deaggregate(data: &[u8]) -> Option<Result<Vec<UserRecord>, String>> {
    if data.len() < KPL_MAGIC.len() + KPL_DIGEST_BYTES || data[..KPL_MAGIC.len()] != KPL_MAGIC {
        return None;
    }
    let (message, digest) = data[KPL_MAGIC.len()..].split_at(data.len() - KPL_MAGIC.len() - KPL_DIGEST_BYTES);
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    Some(aggregated_record(message).map_err(|e| format!("a KPL aggregated record with a malformed body: {e}")))
}

/// Whether `data` starts like gzip data.
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// `data` decompressed, refusing more than `limit` bytes of output (a small record can
/// expand enormously).
pub fn gunzip(data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(data).take(limit + 1);
    reader.read_to_end(&mut out).map_err(|e| format!("a gzip record that does not decompress: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("a gzip record that decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

/// `AggregatedRecord { repeated string partition_key_table = 1; repeated string
/// explicit_hash_key_table = 2; repeated Record records = 3; }`
fn aggregated_record(message: &[u8]) -> Result<Vec<UserRecord>, String> {
    let mut keys: Vec<String> = Vec::new();
    let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut fields = Fields::new(message);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Bytes(key)) => {
                keys.push(String::from_utf8(key.to_vec()).map_err(|_| "a partition key that is not UTF-8".to_string())?)
            }
            (3, Value::Bytes(record)) => records.push(user_record(record)?),
            (1 | 3, _) => return Err(format!("field {number} has the wrong wire type")),
            _ => {} // explicit hash keys and unknown fields
        }
    }
    records
        .into_iter()
        .enumerate()
        .map(|(i, (key, data))| {
            let partition_key = keys
                .get(key as usize)
                .cloned()
                .ok_or_else(|| format!("user record {i} names partition key {key} of {}", keys.len()))?;
            Ok(UserRecord { partition_key, data })
        })
        .collect()
}

/// `Record { required uint64 partition_key_index = 1; optional uint64
/// explicit_hash_key_index = 2; required bytes data = 3; repeated Tag tags = 4; }`
fn user_record(message: &[u8]) -> Result<(u64, Vec<u8>), String> {
    let (mut key, mut data) = (None, None);
    let mut fields = Fields::new(message);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Varint(index)) => key = Some(index),
            (3, Value::Bytes(bytes)) => data = Some(bytes.to_vec()),
            (1 | 3, _) => return Err(format!("a user record's field {number} has the wrong wire type")),
            _ => {}
        }
    }
    match (key, data) {
        (Some(key), Some(data)) => Ok((key, data)),
        (None, _) => Err("a user record without its partition key index".into()),
        (_, None) => Err("a user record without data".into()),
    }
}

/// A protobuf field's value, by wire type.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message, in order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("a varint cut short")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        if n > self.rest.len() as u64 {
            return Err(format!("a field of {n} bytes where {} are left", self.rest.len()));
        }
        let (taken, rest) = self.rest.split_at(n as usize);
        self.rest = rest;
        Ok(taken)
    }

    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, String> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            wire => return Err(format!("wire type {wire} (groups are not used by the KPL)")),
        };
        Ok(Some((tag >> 3, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }

    /// A KPL aggregated record, encoded by hand from the format's definition.
    fn aggregate(keys: &[&str], records: &[(u64, &[u8])]) -> Vec<u8> {
        let mut message = Vec::new();
        for key in keys {
            field(1, key.as_bytes(), &mut message);
        }
        for (key, data) in records {
            let mut record = Vec::new();
            varint(1 << 3, &mut record);
            varint(*key, &mut record);
            field(3, data, &mut record);
            field(3, &record, &mut message);
        }
        let mut out = KPL_MAGIC.to_vec();
        out.extend_from_slice(&message);
        out.extend_from_slice(&Md5::digest(&message));
        out
    }

    #[test]
    fn user_records_come_out_in_order_with_their_keys() {
        let data = aggregate(&["a", "b"], &[(0, b"{\"n\":1}"), (1, b"{\"n\":2}"), (0, b"")]);
        let records = deaggregate(&data).unwrap().unwrap();
        let got: Vec<(&str, &[u8])> = records.iter().map(|r| (r.partition_key.as_str(), r.data.as_slice())).collect();
        assert_eq!(got, vec![("a", &b"{\"n\":1}"[..]), ("b", &b"{\"n\":2}"[..]), ("a", &b""[..])]);
    }

    #[test]
    fn a_record_without_magic_or_with_a_wrong_digest_is_not_aggregated() {
        assert!(deaggregate(b"{\"n\":1}").is_none());
        let mut data = aggregate(&["a"], &[(0, b"x")]);
        let last = data.len() - 1;
        data[last] ^= 1;
        assert!(deaggregate(&data).is_none());
    }

    #[test]
    fn a_malformed_body_with_a_matching_digest_is_named() {
        let data = aggregate(&["a"], &[(3, b"x")]);
        let error = deaggregate(&data).unwrap().unwrap_err();
        assert!(error.contains("partition key 3 of 1"), "{error}");
        let mut cut = KPL_MAGIC.to_vec();
        let message = [0x1A, 0x05, 0x08];
        cut.extend_from_slice(&message);
        cut.extend_from_slice(&Md5::digest(message));
        let error = deaggregate(&cut).unwrap().unwrap_err();
        assert!(error.contains("bytes where"), "{error}");
    }

    #[test]
    fn gzip_is_decompressed_within_a_limit() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&[b'x'; 1000]).unwrap();
        let data = encoder.finish().unwrap();
        assert!(is_gzip(&data));
        assert_eq!(gunzip(&data, 1000).unwrap().len(), 1000);
        assert!(gunzip(&data, 999).unwrap_err().contains("more than 999"));
        assert!(gunzip(&[0x1F, 0x8B, 0, 1], 10).unwrap_err().contains("does not decompress"));
    }

    fn columns() -> Vec<String> {
        ["id", "n"].map(String::from).to_vec()
    }

    fn lines(data: &[u8], format: RecordFormat) -> (String, usize) {
        match unwrap(data, format, &columns()).unwrap().remove(0).events {
            PieceEvents::Lines { text, count } => (String::from_utf8(text).unwrap(), count),
            PieceEvents::Csv(text) => panic!("CSV: {}", String::from_utf8_lossy(&text)),
        }
    }

    #[test]
    fn json_records_become_one_line_per_event() {
        assert_eq!(lines(b"{\"id\":\"a\"}", RecordFormat::Auto), ("{\"id\":\"a\"}\n".into(), 1));
        assert_eq!(lines(b"{\"id\":\"a\"}\n\n{\"id\":\"b\"}\r\n", RecordFormat::Auto).1, 2);
        assert_eq!(lines(b"{\n  \"id\": \"a\",\n  \"n\": 1\n}\n", RecordFormat::Auto), ("{   \"id\": \"a\",   \"n\": 1 } \n".into(), 1));
        assert_eq!(lines(b" [{\"id\":\"a\"},\n {\"id\":\"b\"}]", RecordFormat::Auto), ("{\"id\":\"a\"}\n{\"id\":\"b\"}\n".into(), 2));
        // Not JSON at all, read as JSON: one event, which the processor rejects.
        assert_eq!(lines(b"id,n\na,1", RecordFormat::Json), ("id,n a,1\n".into(), 1));
        assert_eq!(lines(b"  \n", RecordFormat::Json).1, 0);
    }

    #[test]
    fn csv_records_get_the_contract_header_unless_they_have_one() {
        let csv = |data: &[u8], format| match unwrap(data, format, &columns()).unwrap().remove(0).events {
            PieceEvents::Csv(text) => String::from_utf8(text).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(csv(b"a,1", RecordFormat::Auto), "id,n\na,1");
        assert_eq!(csv(b"\"n\",id\r\n1,a\r\n", RecordFormat::Auto), "\"n\",id\r\n1,a\r\n");
        assert_eq!(csv(b"{\"id\":1}", RecordFormat::Csv), "id,n\n{\"id\":1}");
    }

    #[test]
    fn aggregated_and_gzip_records_unwrap_into_pieces() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(b"{\"id\":\"z\"}").unwrap();
        let gz = encoder.finish().unwrap();
        assert_eq!(lines(&gz, RecordFormat::Auto), ("{\"id\":\"z\"}\n".into(), 1));
        let data = aggregate(&["k"], &[(0, b"{\"id\":\"a\"}"), (0, &gz), (0, b"b,2")]);
        let pieces = unwrap(&data, RecordFormat::Auto, &columns()).unwrap();
        assert_eq!(pieces.iter().map(|p| p.sub_record).collect::<Vec<_>>(), [Some(0), Some(1), Some(2)]);
        assert_eq!(pieces[2].events, PieceEvents::Csv(b"id,n\nb,2".to_vec()));
        let broken = aggregate(&["k"], &[(0, &gz[..gz.len() - 4])]);
        assert!(unwrap(&broken, RecordFormat::Auto, &columns()).unwrap_err().contains("gzip"));
        assert!(unwrap(&aggregate(&["k"], &[(1, b"x")]), RecordFormat::Json, &columns()).unwrap_err().contains("malformed body"));
    }
}
