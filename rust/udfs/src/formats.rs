//! String formats of Weir's data contracts (`uuid`, `email`, `date-time`), checked without
//! regular expressions or allocation because they run once per value on every ingested record.
//!
//! The processor's contract checks and the `weir_is_valid_format` / `weir_to_utc` UDFs share
//! these functions, so SQL and contracts always agree on what a valid value is.

/// The formats a contract's `format` keyword may name.
pub const SUPPORTED_FORMATS: &[&str] = &["uuid", "email", "date-time"];

/// A contract string format, resolved once so checks do not compare names per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFormat {
    Uuid,
    Email,
    DateTime,
}

impl StringFormat {
    /// The format named `name` (as in [`SUPPORTED_FORMATS`]), if supported.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "uuid" => Some(Self::Uuid),
            "email" => Some(Self::Email),
            "date-time" => Some(Self::DateTime),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Email => "email",
            Self::DateTime => "date-time",
        }
    }

    /// Whether `value` is valid in this format.
    pub fn is_valid(self, value: &str) -> bool {
        match self {
            Self::Uuid => is_uuid(value),
            Self::Email => is_email(value),
            Self::DateTime => parse_rfc3339_micros(value).is_some(),
        }
    }
}

/// Whether `value` is valid for the named format; `None` when the format is unknown.
pub fn check_format(format: &str, value: &str) -> Option<bool> {
    StringFormat::parse(format).map(|f| f.is_valid(value))
}

/// `8-4-4-4-12` hexadecimal digits, either case (RFC 9562 textual form).
pub fn is_uuid(value: &str) -> bool {
    let Ok(b) = <&[u8; 36]>::try_from(value.as_bytes()) else {
        return false;
    };
    // Every byte checked without early exit, so the loop has no branches to mispredict.
    let mut ok = b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-';
    for (i, &c) in b.iter().enumerate() {
        ok &= matches!(i, 8 | 13 | 18 | 23) || HEX_DIGIT[c as usize];
    }
    ok
}

/// Whether each byte is an ASCII hexadecimal digit.
const HEX_DIGIT: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = (c as u8).is_ascii_hexdigit();
        c += 1;
    }
    table
};

/// A pragmatic address check: `local@domain`, the local part of RFC 5322 "atext" characters
/// and dots (no leading, trailing or doubled dot, at most 64 bytes), the domain two or more
/// LDH labels of 1–63 characters not starting or ending with '-', the last one letters only
/// and at least two of them. Quoted local parts and IP-literal domains are not accepted.
pub fn is_email(value: &str) -> bool {
    let b = value.as_bytes();
    let Some(at) = memchr::memchr(b'@', b) else {
        return false;
    };
    is_email_local_part(&b[..at]) && is_email_domain(&b[at + 1..])
}

fn is_email_local_part(b: &[u8]) -> bool {
    if b.is_empty() || b.len() > 64 || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    let mut previous = 0u8;
    b.iter().all(|&c| {
        let ok = ATEXT[c as usize] || (c == b'.' && previous != b'.');
        previous = c;
        ok
    })
}

/// RFC 5322 "atext": letters, digits and ``!#$%&'*+/=?^_`{|}~-``.
const ATEXT: [bool; 256] = {
    let specials = b"!#$%&'*+/=?^_`{|}~-";
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = true;
        i += 1;
    }
    table
};

fn is_email_domain(domain: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for b in domain.split(|&c| c == b'.') {
        let ldh = !b.is_empty()
            && b.len() <= 63
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-');
        if !ldh {
            return false;
        }
        labels += 1;
        last = b;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(|c| c.is_ascii_alphabetic())
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, 'T' and 'Z' in
/// either case) into microseconds since the Unix epoch in UTC. Fractions beyond microseconds
/// are truncated. Returns `None` for anything else, including impossible dates and leap seconds.
pub fn parse_rfc3339_micros(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        b[range].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut pos = 19;
    let mut micros = 0i64;
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            if pos - start < 6 {
                micros = micros * 10 + i64::from(b[pos] - b'0');
            }
            pos += 1;
        }
        let fraction_digits = pos - start;
        if fraction_digits == 0 || fraction_digits > 9 {
            return None;
        }
        for _ in fraction_digits..6 {
            micros *= 10;
        }
    }
    let offset_seconds = match b.get(pos..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (digits(pos + 1..pos + 3)?, digits(pos + 4..pos + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3600 + om * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_seconds;
    Some(seconds * 1_000_000 + micros)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids() {
        assert!(is_uuid("0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a11"));
        assert!(is_uuid("0B5E6F5C-3D0C-4C1B-9A47-0D6C6B0E5A11"));
        assert!(!is_uuid("0b5e6f5c3d0c4c1b9a470d6c6b0e5a11"));
        assert!(!is_uuid("0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a1g"));
        assert!(!is_uuid(""));
        assert!(!is_uuid("0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a1"), "35 bytes");
        assert!(!is_uuid("0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5a111"), "37 bytes");
        assert!(!is_uuid("0b5e6f5c3-d0c-4c1b-9a47-0d6c6b0e5a11"), "a dash moved");
        assert!(!is_uuid("0b5e6f5c-3d0c-4c1b-9a47-0d6c6b0e5aé"), "a non-ASCII byte");
        assert!(!is_uuid("------------------------------------"));
    }

    #[test]
    fn emails() {
        for ok in ["a@b.io", "Ann.Lee+tag@mail.example.COM", "x_y-z@sub-domain.example.org"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "", "plain", "@b.io", "a@", "a@b", "a@b.c", "a@.b.io", "a@b..io", ".a@b.io", "a.@b.io",
            "a..b@c.io", "a b@c.io", " a@b.io", "a@b.io ", "a@-b.io", "a@b-.io", "a@b.i0", "a@@b.io",
            "a@b.io.", "é@b.io", "a@bé.io", "a(b@c.io", "a@b_c.io",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
        assert!(!is_email(&format!("{}@b.io", "a".repeat(65))));
    }

    #[test]
    fn rfc3339_to_utc_micros() {
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_micros("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339_micros("1969-12-31t19:00:00-05:00"), Some(0));
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00.5z"), Some(500_000));
        assert_eq!(parse_rfc3339_micros("1970-01-01T00:00:00.123456789Z"), Some(123_456));
        assert_eq!(
            parse_rfc3339_micros("2024-02-29T12:30:45+05:30"),
            Some(1_709_190_045_000_000)
        );
        assert_eq!(parse_rfc3339_micros("1900-03-01T00:00:00Z"), Some(-2_203_891_200_000_000));
    }

    #[test]
    fn rfc3339_rejects_malformed() {
        for bad in [
            "", "2024-02-29", "2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z",
            "2024-01-01 00:00:00Z", "2024-01-01T24:00:00Z", "2024-01-01T23:59:60Z",
            "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z", "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00+0100", "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00Zjunk",
            "２024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339_micros(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn check_format_dispatches_and_rejects_unknown_formats() {
        assert_eq!(check_format("email", "a@b.io"), Some(true));
        assert_eq!(check_format("uuid", "nope"), Some(false));
        assert_eq!(check_format("ipv4", "1.2.3.4"), None);
    }
}
