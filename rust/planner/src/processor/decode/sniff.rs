//! Format sniffing: bytes of formats the processor does not read, and whether `json` input is
//! line-delimited.

use serde_json::value::RawValue;

/// Recognises bytes of formats the processor does not read, by their magic numbers, so that
/// Parquet labelled as JSON is reported as Parquet rather than as a JSON syntax error.
pub(super) fn sniff_foreign_format(data: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"PAR1", "parquet"),
        (b"ARROW1", "arrow"),
        (b"ORC", "orc"),
        (b"Obj\x01", "avro"),
        (b"\x1f\x8b", "gzip"),
        (b"PK\x03\x04", "zip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"BZh", "bzip2"),
    ];
    if let Some((_, name)) = MAGICS.iter().find(|(magic, _)| data.starts_with(magic)) {
        return Some(name);
    }
    let first = data.iter().position(|b| !b.is_ascii_whitespace()).map(|i| data[i]);
    (first == Some(b'<')).then_some("xml")
}

/// Whether `json` input holds one object per line, rather than an array or one document
/// (a pretty-printed object spans several lines, so its first line alone is not complete).
pub(crate) fn json_is_line_delimited(data: &[u8]) -> bool {
    let Some(start) = data.iter().position(|b| !b.is_ascii_whitespace()) else {
        return false;
    };
    if data[start] == b'[' {
        return false;
    }
    let first_line_end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
    std::str::from_utf8(&data[start..first_line_end])
        .is_ok_and(|line| serde_json::from_str::<&RawValue>(line).is_ok())
}

#[cfg(test)]
mod tests {
    use crate::processor::decode::tests::contract;
    use crate::processor::decode::{decode, InputFormat};

    #[test]
    fn unsupported_formats_are_named() {
        assert_eq!(
            InputFormat::parse("xml").unwrap_err().to_string(),
            "unsupported format \"xml\": the processor has no decoder for it; supported formats: json, ndjson, csv"
        );
        let err = decode(&contract(), b"PAR1\x15\x04", InputFormat::Json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported format \"parquet\": the input looks like parquet but was labelled json; supported formats: json, ndjson, csv"
        );
        let err = decode(&contract(), b"  <?xml version=\"1.0\"?><a/>", InputFormat::Ndjson).unwrap_err();
        assert!(err.to_string().starts_with("unsupported format \"xml\""));
    }
}
