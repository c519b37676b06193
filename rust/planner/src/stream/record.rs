//! The Weir record: how events travel in a Kinesis record. Many events are packed into one
//! record (what the Kinesis Producer Library calls aggregation), compressed with zstd,
//! behind a small header, because Kinesis counts and limits records, not bytes. One record
//! holds a part of one job, or several small jobs whole (each a *segment*):
//!
//! ```text
//! "WEIR" | version u8 (2) | flags u8 (bit 0: zstd) | format u8 (0 ndjson, 1 csv) | reserved u8
//! | crc32 of the events u32 | dataset length u8 | dataset | segment count u32
//! | per segment: job id length u8 | job id | first event index u64 (within the job) | event count u32
//! | events (compressed): the segments' events one after another
//! ```
//! Integers are little-endian. The events are NDJSON (one event per line, each line ending
//! in `\n`) or CSV with its header line (CSV records hold one segment). Version 1 records
//! (one job, no segment list) are still read.

use std::cell::RefCell;

use crate::InputFormat;

const MAGIC: &[u8; 4] = b"WEIR";
const VERSION: u8 = 2;
const FLAG_ZSTD: u8 = 1;

/// Decompressed events of one record above this size are not trusted to their frame header.
const MAX_EVENTS_BYTES: u64 = 256 << 20;

/// Largest Kinesis record (data plus partition key), 1 MiB.
pub const MAX_KINESIS_RECORD_BYTES: usize = 1024 * 1024;

/// The events of one job in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub job_id: String,
    /// Index of the segment's first event within its job, so rejected records can be named
    /// by their position in the request.
    pub first_index: u64,
    pub event_count: u32,
}

/// The header of a Weir record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub dataset: String,
    pub format: InputFormat,
    /// In the order of their events.
    pub segments: Vec<Segment>,
}

impl RecordHeader {
    /// A record holding (part of) one job.
    pub fn single(job_id: &str, dataset: &str, format: InputFormat, first_index: u64, event_count: u32) -> Self {
        Self {
            dataset: dataset.to_string(),
            format,
            segments: vec![Segment { job_id: job_id.to_string(), first_index, event_count }],
        }
    }

    pub fn event_count(&self) -> u64 {
        self.segments.iter().map(|s| s.event_count as u64).sum()
    }

    /// The jobs of the record, comma-separated (for dead-letter rows).
    pub fn job_ids(&self) -> String {
        self.segments.iter().map(|s| s.job_id.as_str()).collect::<Vec<_>>().join(",")
    }
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

thread_local! {
    /// A compression context per thread and level: creating one costs more than compressing
    /// a small record.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

fn compress(events: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            *cell = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        cell.as_mut().expect("set above").1.compress(events)
    })
}

/// Packs `events` (already in the header's format, the segments' events in order) into
/// record bytes.
pub fn encode(header: &RecordHeader, events: &[u8], zstd_level: i32) -> std::io::Result<Vec<u8>> {
    let compressed = compress(events, zstd_level)?;
    let texts: usize = header.segments.iter().map(|s| s.job_id.len() + 13).sum();
    let mut out = Vec::with_capacity(compressed.len() + 24 + header.dataset.len() + texts);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, FLAG_ZSTD, format_code(header.format), 0]);
    out.extend_from_slice(&crc32fast::hash(events).to_le_bytes());
    push_text(&mut out, &header.dataset)?;
    out.extend_from_slice(&(header.segments.len() as u32).to_le_bytes());
    for segment in &header.segments {
        push_text(&mut out, &segment.job_id)?;
        out.extend_from_slice(&segment.first_index.to_le_bytes());
        out.extend_from_slice(&segment.event_count.to_le_bytes());
    }
    out.extend_from_slice(&compressed);
    Ok(out)
}

fn push_text(out: &mut Vec<u8>, text: &str) -> std::io::Result<()> {
    let len = u8::try_from(text.len()).map_err(|_| std::io::Error::other(format!("{text:?} is over 255 bytes")))?;
    out.push(len);
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Unpacks record bytes; the error says what is wrong with them.
pub fn decode(data: &[u8]) -> Result<WeirRecord, String> {
    let (header, flags, crc, rest) = split(data)?;
    let events = if flags & FLAG_ZSTD != 0 {
        // The frame states its size: one allocation of the right size, not a growing buffer.
        match zstd::zstd_safe::get_frame_content_size(rest) {
            Ok(Some(size)) if size <= MAX_EVENTS_BYTES => zstd::bulk::decompress(rest, size as usize),
            _ => zstd::stream::decode_all(rest),
        }
        .map_err(|e| format!("cannot decompress the events: {e}"))?
    } else {
        rest.to_vec()
    };
    if crc32fast::hash(&events) != crc {
        return Err("checksum mismatch: the events are corrupt".into());
    }
    Ok(WeirRecord { header, events })
}

/// Whether `data` starts with Weir's magic bytes (a Weir record, possibly a damaged one).
pub fn is_weir_record(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Reads only the header (no decompression, no checksum), e.g. to name a record's jobs.
pub fn decode_header(data: &[u8]) -> Result<RecordHeader, String> {
    Ok(split(data)?.0)
}

/// Reads record bytes front to back.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("truncated record: no room for the {what}"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let len = self.take(1, what)?[0] as usize;
        String::from_utf8(self.take(len, what)?.to_vec()).map_err(|_| format!("the {what} is not UTF-8"))
    }
}

/// The header, flags, checksum and the (compressed) events of record bytes.
fn split(data: &[u8]) -> Result<(RecordHeader, u8, u32, &[u8]), String> {
    let mut r = Reader { rest: data };
    if r.take(4, "magic")? != MAGIC {
        return Err("not a Weir record (no WEIR magic bytes)".into());
    }
    let fixed = r.take(4, "header")?;
    let (version, flags, format) = (fixed[0], fixed[1], fixed[2]);
    let format = match format {
        0 => InputFormat::Ndjson,
        1 => InputFormat::Csv,
        other => return Err(format!("unknown event format code {other}")),
    };
    let (header, crc) = match version {
        1 => {
            let event_count = r.u32("event count")?;
            let first_index = r.u64("first index")?;
            let crc = r.u32("checksum")?;
            let job_id = r.text("job id")?;
            let dataset = r.text("dataset")?;
            (RecordHeader::single(&job_id, &dataset, format, first_index, event_count), crc)
        }
        2 => {
            let crc = r.u32("checksum")?;
            let dataset = r.text("dataset")?;
            let count = r.u32("segment count")? as usize;
            if count == 0 || count > r.rest.len() / 14 {
                return Err(format!("implausible segment count {count}"));
            }
            let mut segments = Vec::with_capacity(count);
            for _ in 0..count {
                let job_id = r.text("job id")?;
                let first_index = r.u64("first index")?;
                let event_count = r.u32("event count")?;
                segments.push(Segment { job_id, first_index, event_count });
            }
            (RecordHeader { dataset, format, segments }, crc)
        }
        other => return Err(format!("Weir record version {other}, this consumer reads versions 1 and 2")),
    };
    Ok((header, flags, crc, r.rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_corruption_is_named() {
        let header = RecordHeader {
            dataset: "shop_events".into(),
            format: InputFormat::Ndjson,
            segments: vec![
                Segment { job_id: "0193a7e4-job".into(), first_index: 1000, event_count: 2 },
                Segment { job_id: "0193a7e5-job".into(), first_index: 0, event_count: 1 },
            ],
        };
        let events = b"{\"a\":1}\n{\"a\":2}\n{\"b\":1}\n".to_vec();
        let bytes = encode(&header, &events, 3).unwrap();
        assert_eq!(decode(&bytes).unwrap(), WeirRecord { header: header.clone(), events: events.clone() });
        assert_eq!(decode_header(&bytes).unwrap(), header);
        assert_eq!(header.event_count(), 3);
        assert_eq!(header.job_ids(), "0193a7e4-job,0193a7e5-job");
        assert!(decode(b"{\"a\":1}").unwrap_err().contains("not a Weir record"));
        assert!(decode(&bytes[..10]).unwrap_err().contains("truncated"));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        assert!(decode(&flipped).is_err());
    }

    #[test]
    fn version_1_records_are_still_read() {
        let events = b"{\"a\":1}\n".to_vec();
        let mut v1 = b"WEIR".to_vec();
        v1.extend_from_slice(&[1, 1, 0, 0]);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&7u64.to_le_bytes());
        v1.extend_from_slice(&crc32fast::hash(&events).to_le_bytes());
        for text in ["job-1", "shop_events"] {
            v1.push(text.len() as u8);
            v1.extend_from_slice(text.as_bytes());
        }
        v1.extend_from_slice(&zstd::bulk::compress(&events, 3).unwrap());
        let record = decode(&v1).unwrap();
        assert_eq!(record.header, RecordHeader::single("job-1", "shop_events", InputFormat::Ndjson, 7, 1));
        assert_eq!(record.events, events);
    }
}
