//! The Weir record: how events travel in a Kinesis record. Many events are packed into one
//! record (what the Kinesis Producer Library calls aggregation), compressed with zstd,
//! behind a small header, because Kinesis counts and limits records, not bytes:
//!
//! ```text
//! "WEIR" | version u8 | flags u8 (bit 0: zstd) | format u8 (0 ndjson, 1 csv) | reserved u8
//! | event count u32 | first event index u64 (within the job) | crc32 of the events u32
//! | job id length u8 | job id | dataset length u8 | dataset | events (compressed)
//! ```
//! Integers are little-endian. The events are NDJSON (one event per line, each line ending
//! in `\n`) or CSV with its header line.

use crate::InputFormat;

const MAGIC: &[u8; 4] = b"WEIR";
const VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 1;

/// Largest Kinesis record (data plus partition key), 1 MiB.
pub const MAX_KINESIS_RECORD_BYTES: usize = 1024 * 1024;

/// The header of a Weir record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub job_id: String,
    pub dataset: String,
    pub format: InputFormat,
    pub event_count: u32,
    /// Index of the record's first event within its job, so rejected records can be named by
    /// their position in the request.
    pub first_index: u64,
}

/// A decoded Weir record: its header and uncompressed events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeirRecord {
    pub header: RecordHeader,
    pub events: Vec<u8>,
}

fn format_code(format: InputFormat) -> u8 {
    match format {
        InputFormat::Ndjson | InputFormat::Json => 0,
        InputFormat::Csv => 1,
    }
}

/// Packs `events` (already in the header's format) into record bytes.
pub fn encode(header: &RecordHeader, events: &[u8], zstd_level: i32) -> std::io::Result<Vec<u8>> {
    let compressed = zstd::bulk::compress(events, zstd_level)?;
    let mut out = Vec::with_capacity(compressed.len() + 32 + header.job_id.len() + header.dataset.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, FLAG_ZSTD, format_code(header.format), 0]);
    out.extend_from_slice(&header.event_count.to_le_bytes());
    out.extend_from_slice(&header.first_index.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(events).to_le_bytes());
    for text in [&header.job_id, &header.dataset] {
        let bytes = text.as_bytes();
        let len = u8::try_from(bytes.len()).map_err(|_| std::io::Error::other(format!("{text:?} is over 255 bytes")))?;
        out.push(len);
        out.extend_from_slice(bytes);
    }
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// Unpacks record bytes; the error says what is wrong with them.
pub fn decode(data: &[u8]) -> Result<WeirRecord, String> {
    let (header, flags, crc, rest) = split(data)?;
    let events = if flags & FLAG_ZSTD != 0 {
        zstd::stream::decode_all(rest).map_err(|e| format!("cannot decompress the events: {e}"))?
    } else {
        rest.to_vec()
    };
    if crc32fast::hash(&events) != crc {
        return Err("checksum mismatch: the events are corrupt".into());
    }
    Ok(WeirRecord { header, events })
}

/// Reads only the header (no decompression, no checksum), e.g. to name a record's job.
pub fn decode_header(data: &[u8]) -> Result<RecordHeader, String> {
    Ok(split(data)?.0)
}

/// The header, flags, checksum and the (compressed) events of record bytes.
fn split(data: &[u8]) -> Result<(RecordHeader, u8, u32, &[u8]), String> {
    let mut rest = data;
    let mut take = |n: usize, what: &str| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err(format!("truncated record: no room for the {what}"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(4, "magic")? != MAGIC {
        return Err("not a Weir record (no WEIR magic bytes)".into());
    }
    let fixed = take(4, "header")?;
    let (version, flags, format) = (fixed[0], fixed[1], fixed[2]);
    if version != VERSION {
        return Err(format!("Weir record version {version}, this consumer reads version {VERSION}"));
    }
    let event_count = u32::from_le_bytes(take(4, "event count")?.try_into().expect("4 bytes"));
    let first_index = u64::from_le_bytes(take(8, "first index")?.try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(take(4, "checksum")?.try_into().expect("4 bytes"));
    let mut text = |what: &str| -> Result<String, String> {
        let len = take(1, what)?[0] as usize;
        String::from_utf8(take(len, what)?.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    };
    let job_id = text("job id")?;
    let dataset = text("dataset")?;
    let format = match format {
        0 => InputFormat::Ndjson,
        1 => InputFormat::Csv,
        other => return Err(format!("unknown event format code {other}")),
    };
    Ok((RecordHeader { job_id, dataset, format, event_count, first_index }, flags, crc, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_named() {
        let header = RecordHeader {
            job_id: "0193a7e4-job".into(),
            dataset: "shop_events".into(),
            format: InputFormat::Ndjson,
            event_count: 2,
            first_index: 1000,
        };
        let events = b"{\"a\":1}\n{\"a\":2}\n".repeat(1);
        let bytes = encode(&header, &events, 3).unwrap();
        assert_eq!(decode(&bytes).unwrap(), WeirRecord { header: header.clone(), events: events.clone() });
        assert_eq!(decode_header(&bytes).unwrap(), header);
        assert!(decode(b"{\"a\":1}").unwrap_err().contains("not a Weir record"));
        assert!(decode(&bytes[..10]).unwrap_err().contains("truncated"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(decode(&flipped).is_err());
    }
}
