//! Settings as the user wrote them, for the one validator of each part (`lake/config.rs`,
//! `stream/config.rs`): a [`SettingSource`] is a key, a value and where it came from
//! (`WEIR_KINESIS_SHARDS`, `/home/x/weir.toml: kinesis.shards`, a property key), so every
//! error names its origin; [`SettingSources`] takes them in order, later ones winning, and
//! reports unknown keys; [`Endpoint`] is a checked http(s) URL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::RangeInclusive;

/// A configured value as the user wrote it: TOML values keep their type, variables and
/// properties are text.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    /// Anything else (a TOML array or date), described for messages.
    Other(String),
}

impl fmt::Display for SettingValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => write!(f, "{text:?}"),
            Self::Integer(n) => write!(f, "{n}"),
            Self::Float(x) => write!(f, "{x:?}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Other(description) => f.write_str(description),
        }
    }
}

/// One configured value: `key` names the setting (`warehouse`, `lake.s3.region`,
/// `kinesis.shards`; `_` and `-` are the same), `origin` says where the user wrote it
/// (`WEIR_KINESIS_SHARDS`, `/home/x/weir.toml: kinesis.shards`) and is what errors name.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingSource {
    pub key: String,
    pub value: SettingValue,
    pub origin: String,
}

impl SettingSource {
    pub fn new(key: impl Into<String>, value: SettingValue, origin: impl Into<String>) -> Self {
        Self { key: key.into(), value, origin: origin.into() }
    }

    /// A string property: its key is its origin.
    pub fn property(key: &str, value: &str) -> Self {
        Self::new(key, SettingValue::Text(value.to_string()), key)
    }

    /// Sorted string properties as sources (a key spelled twice, `_` and `-`, resolves the
    /// same way every time).
    pub fn properties(properties: &HashMap<String, String>) -> Vec<Self> {
        let sorted: BTreeMap<&String, &String> = properties.iter().collect();
        sorted.into_iter().map(|(key, value)| Self::property(key, value)).collect()
    }

    /// What `source` lists for this value: the file of a TOML origin, else the origin.
    fn contributor(&self) -> &str {
        self.origin.rsplit_once(": ").map_or(self.origin.as_str(), |(file, _)| file)
    }

    /// Empty (or blank) text: an unset value for most settings.
    fn is_blank(&self) -> bool {
        matches!(&self.value, SettingValue::Text(text) if text.trim().is_empty())
    }

    /// The value as text; errors are messages for the caller to wrap with the origin.
    pub fn text(&self) -> Result<&str, String> {
        match &self.value {
            SettingValue::Text(text) => Ok(text),
            other => Err(format!("expected a string, got {other}")),
        }
    }

    /// A whole number in `range` (text or an integer); `expected` describes it for the
    /// message (`"a whole number of shards from 1 to 1000"`).
    pub fn whole_number(&self, range: RangeInclusive<u64>, expected: &str) -> Result<u64, String> {
        let number = match &self.value {
            SettingValue::Text(text) => text.trim().parse::<u64>().ok(),
            SettingValue::Integer(n) => u64::try_from(*n).ok(),
            _ => None,
        };
        number.filter(|n| range.contains(n)).ok_or_else(|| format!("expected {expected}, got {}", self.value))
    }

    /// `true`/`false` (TOML) or `1`, `true`, `yes`, `on` / `0`, `false`, `no`, `off`, `""`.
    pub fn flag(&self) -> Result<bool, String> {
        let parsed = match &self.value {
            SettingValue::Bool(b) => Some(*b),
            SettingValue::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Some(true),
                "0" | "false" | "no" | "off" | "" => Some(false),
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| format!("expected true or false, got {}", self.value))
    }

    /// An endpoint URL (see [`Endpoint::parse`]); `None` for an empty one (AWS itself).
    pub fn endpoint(&self) -> Result<Option<String>, String> {
        let text = match &self.value {
            SettingValue::Text(text) => text,
            other => return Err(format!("expected a URL or an empty string (AWS), got {other}")),
        };
        Ok(Endpoint::parse(text)?.map(|endpoint| endpoint.url))
    }
}

/// The winning source of each setting (later sources win) and which of them were used, so
/// that `source` lists only what contributed.
pub struct SettingSources<'a> {
    winners: BTreeMap<String, (usize, &'a SettingSource)>,
    used: BTreeSet<usize>,
}

impl<'a> SettingSources<'a> {
    /// `entries` are the sources in order with their keys already normalised.
    pub fn new(entries: impl IntoIterator<Item = (String, &'a SettingSource)>) -> Self {
        let mut winners = BTreeMap::new();
        for (index, (key, source)) in entries.into_iter().enumerate() {
            winners.insert(key, (index, source));
        }
        Self { winners, used: BTreeSet::new() }
    }

    /// The setting's winning source, counted as used.
    pub fn take(&mut self, key: &str) -> Option<&'a SettingSource> {
        let (index, source) = *self.winners.get(key)?;
        self.used.insert(index);
        Some(source)
    }

    /// Like [`SettingSources::take`], but a blank text value counts as unset (and unused).
    pub fn take_set(&mut self, key: &str) -> Option<&'a SettingSource> {
        let (_, source) = self.winners.get(key)?;
        if source.is_blank() {
            return None;
        }
        self.take(key)
    }

    /// The configured keys that start with `prefix`.
    pub fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        self.winners.keys().filter(|k| k.starts_with(prefix)).cloned().collect()
    }

    /// `defaults`, then every file or variable whose values were used, in the order given,
    /// joined by ` < ` (later wins).
    pub fn source(&self) -> String {
        let mut by_index: Vec<_> = self.winners.values().filter(|(i, _)| self.used.contains(i)).collect();
        by_index.sort_by_key(|(i, _)| *i);
        let mut names = vec!["defaults"];
        for (_, source) in by_index {
            if !names.contains(&source.contributor()) {
                names.push(source.contributor());
            }
        }
        names.join(" < ")
    }

    /// Where each used setting came from (normalised key to origin).
    pub fn origins(&self) -> BTreeMap<String, String> {
        self.winners
            .iter()
            .filter(|(_, (i, _))| self.used.contains(i))
            .map(|(key, (_, source))| (key.clone(), source.origin.clone()))
            .collect()
    }
}

/// An `http://host[:port]` or `https://host[:port]` server URL (a Kinesis-API server, an
/// S3-compatible store).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The URL as given, trimmed, without trailing slashes.
    pub url: String,
    pub https: bool,
    /// Lower-cased; IPv6 addresses keep their brackets.
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    /// Parses `text`; an empty one means none (AWS itself). Errors are messages for the
    /// caller to wrap with the setting's origin.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let url = text.trim().trim_end_matches('/');
        if url.is_empty() {
            return Ok(None);
        }
        let expected = || format!("expected http://host:port or https://host:port (or \"\" for AWS), got {text:?}");
        let (scheme, rest) = url.split_once("://").ok_or_else(expected)?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(expected()),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let (host, port) = if authority.starts_with('[') {
            match authority.split_once(']') {
                Some((address, "")) => (&authority[..address.len() + 1], None),
                Some((address, tail)) => match tail.strip_prefix(':') {
                    Some(port) => (&authority[..address.len() + 1], Some(port)),
                    None => return Err(expected()),
                },
                None => return Err(expected()),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(expected());
        }
        let port = match port {
            None => None,
            Some(port) => Some(port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port in {text:?}"))?),
        };
        Ok(Some(Self { url: url.to_string(), https, host: host.to_ascii_lowercase(), port }))
    }

    /// Whether the server is on this machine's loopback (`127.0.0.1` or `localhost`).
    pub fn is_local(&self) -> bool {
        matches!(self.host.as_str(), "127.0.0.1" | "localhost")
    }

    /// The port, or the scheme's default (443, 80).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }
}
