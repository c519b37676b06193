//! [`StreamConfig`]: where the Kinesis streams are and how they are named and sized.
//!
//! The one validator of these settings and the one place their defaults are written.
//! `weir.config` (Python) collects weir.toml `[kinesis]`, `WEIR_KINESIS_*` and the `AWS_*`
//! variables as [`SettingSource`]s, each naming where the user wrote it, for
//! [`StreamConfig::from_sources`]; errors name that origin. The producer and consumers take
//! string properties ([`StreamConfig::from_properties`], the form
//! [`StreamConfig::to_properties`] writes), read by the same code. See
//! `docs/configuration.md`.

use std::collections::{BTreeMap, HashMap};

use super::error::{StreamError, StreamResult};
use crate::settings::{Endpoint, SettingSource, SettingSources};

/// The settings under `kinesis.` (as properties spell them; weir.toml writes `_` for `-`).
const KINESIS_KEYS: [&str; 7] =
    ["endpoint", "region", "access-key-id", "secret-access-key", "session-token", "stream-prefix", "shards"];
/// The `AWS_*` variables, under `aws.`: used only when the endpoint is AWS itself.
const AWS_KEYS: [&str; 5] = ["access-key-id", "secret-access-key", "session-token", "region", "default-region"];
/// Kinesis stream names are 1 to 128 of a-z, A-Z, 0-9, `_`, `.`, `-`.
const STREAM_NAME_MAX: usize = 128;
/// A prefix leaves room for a dataset name.
const STREAM_PREFIX_MAX: usize = 120;
/// Shards of a stream Weir creates: at most this many.
const MAX_SHARDS: u64 = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// A Kinesis-API endpoint (the local server); `None` means AWS itself for `region`.
    pub endpoint: Option<String>,
    pub region: String,
    /// Static credentials; `None` uses the AWS default chain (environment, profile, role).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// The stream of dataset `d` is `<stream_prefix><d>`.
    pub stream_prefix: String,
    /// Shards of a stream Weir creates.
    pub shards: u32,
    /// `defaults`, then the files and variables that contributed, joined by ` < `.
    pub source: String,
    /// Where each configured setting came from (key to origin), for later errors.
    pub origins: BTreeMap<String, String>,
}

impl Default for StreamConfig {
    /// The local server `weir up` starts, with the keys it accepts. The keys apply only to
    /// endpoints other than AWS.
    fn default() -> Self {
        Self {
            endpoint: Some("http://127.0.0.1:4567".into()),
            region: "us-east-1".into(),
            access_key_id: Some("weir".into()),
            secret_access_key: Some("weir".into()),
            session_token: None,
            stream_prefix: "weir-".into(),
            shards: 2,
            source: "defaults".into(),
            origins: BTreeMap::new(),
        }
    }
}

fn config_error(source: &SettingSource, message: String) -> StreamError {
    StreamError::Config { setting: source.origin.clone(), message }
}

/// The key of `source` as properties spell it (`_` as `-`), or the error naming an unknown
/// key and the known ones.
fn stream_key(source: &SettingSource) -> StreamResult<String> {
    let key = source.key.trim().replace('_', "-");
    let (section, name) = key.split_once('.').unwrap_or((key.as_str(), ""));
    let known: &[&str] = if section == "aws" { &AWS_KEYS } else { &KINESIS_KEYS };
    if (section == "kinesis" || section == "aws") && known.contains(&name) {
        return Ok(key);
    }
    if key == "kinesis" {
        return Err(config_error(source, "expected a table ([kinesis])".into()));
    }
    let known: Vec<String> = known.iter().map(|k| k.replace('-', "_")).collect();
    Err(config_error(source, format!("unknown setting (known: {})", known.join(", "))))
}

/// A configured non-blank text value, trimmed, with its origin.
fn text_setting(settings: &mut SettingSources<'_>, key: &str) -> StreamResult<Option<(String, String)>> {
    match settings.take_set(key) {
        None => Ok(None),
        Some(source) => {
            let text = source.text().map_err(|m| config_error(source, m))?;
            Ok(Some((text.trim().to_string(), source.origin.clone())))
        }
    }
}

fn is_stream_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

impl StreamConfig {
    /// The settings from `sources`, later ones winning, validated; defaults fill the rest.
    ///
    /// Keys: `kinesis.endpoint` (`""`: AWS itself), `kinesis.region`, `kinesis.access-key-id`,
    /// `kinesis.secret-access-key`, `kinesis.session-token`, `kinesis.stream-prefix`,
    /// `kinesis.shards` (`_` and `-` are the same), and `aws.access-key-id`,
    /// `aws.secret-access-key`, `aws.session-token`, `aws.region`, `aws.default-region` (the
    /// `AWS_*` variables). With an AWS endpoint the `aws.*` values fill what `kinesis.*` does
    /// not set (the session token only with the AWS key), and no keys at all leave them to
    /// AWS's credential chain; with any other endpoint the `aws.*` values are ignored and the
    /// local server's keys are the default. Any other key is an error naming its origin and
    /// the known keys. Blank text counts as unset, except for the endpoint.
    pub fn from_sources(sources: &[SettingSource]) -> StreamResult<Self> {
        let keys = sources.iter().map(|s| stream_key(s).map(|key| (key, s))).collect::<StreamResult<Vec<_>>>()?;
        let mut settings = SettingSources::new(keys);
        let defaults = Self::default();

        let endpoint = match settings.take("kinesis.endpoint") {
            Some(source) => source.endpoint().map_err(|m| config_error(source, m))?,
            None => defaults.endpoint,
        };
        let aws = endpoint.is_none();
        let shards = match settings.take("kinesis.shards") {
            Some(source) => source
                .whole_number(1..=MAX_SHARDS, &format!("a whole number of shards from 1 to {MAX_SHARDS}"))
                .map_err(|m| config_error(source, m))? as u32,
            None => defaults.shards,
        };

        let mut region = text_setting(&mut settings, "kinesis.region")?;
        for fallback in ["aws.region", "aws.default-region"] {
            if aws && region.is_none() {
                region = text_setting(&mut settings, fallback)?;
            }
        }
        let mut access_key_id = text_setting(&mut settings, "kinesis.access-key-id")?;
        let mut secret_access_key = text_setting(&mut settings, "kinesis.secret-access-key")?;
        let mut session_token = text_setting(&mut settings, "kinesis.session-token")?;
        if aws {
            let mut aws_key = false;
            if access_key_id.is_none() {
                access_key_id = text_setting(&mut settings, "aws.access-key-id")?;
                aws_key = access_key_id.is_some();
            }
            if secret_access_key.is_none() {
                secret_access_key = text_setting(&mut settings, "aws.secret-access-key")?;
            }
            if session_token.is_none() && aws_key {
                session_token = text_setting(&mut settings, "aws.session-token")?;
            }
        } else {
            // The local server's keys, each where not configured.
            let default = |key: Option<String>| key.map(|key| (key, "defaults".to_string()));
            access_key_id = access_key_id.or_else(|| default(defaults.access_key_id.clone()));
            secret_access_key = secret_access_key.or_else(|| default(defaults.secret_access_key.clone()));
        }
        if let (Some((_, origin)), None) | (None, Some((_, origin))) = (&access_key_id, &secret_access_key) {
            return Err(StreamError::Config {
                setting: origin.clone(),
                message: "give both the access key id and the secret access key, or neither".into(),
            });
        }
        let access_key_id = access_key_id.map(|(key, _)| key);
        let secret_access_key = secret_access_key.map(|(key, _)| key);

        let stream_prefix = match settings.take("kinesis.stream-prefix") {
            Some(source) => {
                let prefix = source.text().map_err(|m| config_error(source, m))?;
                if prefix.len() > STREAM_PREFIX_MAX || !prefix.chars().all(is_stream_name_char) {
                    return Err(config_error(
                        source,
                        format!(
                            "{prefix:?} cannot start a Kinesis stream name (up to {STREAM_PREFIX_MAX} of a-z, A-Z, 0-9, '_', '.', '-')"
                        ),
                    ));
                }
                prefix.to_string()
            }
            None => defaults.stream_prefix,
        };

        Ok(Self {
            endpoint,
            region: region.map_or(defaults.region, |(region, _)| region),
            access_key_id,
            secret_access_key,
            session_token: session_token.map(|(token, _)| token),
            stream_prefix,
            shards,
            source: settings.source(),
            origins: settings.origins(),
        })
    }

    /// Reads string properties (the keys of [`StreamConfig::from_sources`]; each names
    /// itself in errors).
    pub fn from_properties(properties: &HashMap<String, String>) -> StreamResult<Self> {
        Self::from_sources(&SettingSource::properties(properties))
    }

    /// The settings as the string properties [`StreamConfig::from_properties`] reads back:
    /// `kinesis.endpoint` is `""` for AWS; unset keys are left out.
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let mut props = BTreeMap::new();
        props.insert("kinesis.endpoint".to_string(), self.endpoint.clone().unwrap_or_default());
        props.insert("kinesis.region".to_string(), self.region.clone());
        for (key, value) in [
            ("kinesis.access-key-id", &self.access_key_id),
            ("kinesis.secret-access-key", &self.secret_access_key),
            ("kinesis.session-token", &self.session_token),
        ] {
            if let Some(value) = value {
                props.insert(key.to_string(), value.clone());
            }
        }
        props.insert("kinesis.stream-prefix".to_string(), self.stream_prefix.clone());
        props.insert("kinesis.shards".to_string(), self.shards.to_string());
        props
    }

    /// Where the setting `key` came from, or the key itself.
    fn origin(&self, key: &str) -> String {
        self.origins.get(key).cloned().unwrap_or_else(|| key.to_string())
    }

    /// Whether the endpoint is AWS itself.
    pub fn is_aws(&self) -> bool {
        self.endpoint.is_none()
    }

    /// Whether the endpoint is on this machine's loopback (the server `weir up` runs).
    pub fn is_local(&self) -> bool {
        self.parsed_endpoint().is_some_and(|e| e.is_local())
    }

    /// The endpoint's port (the scheme's default when the URL has none).
    pub fn local_port(&self) -> StreamResult<u16> {
        self.parsed_endpoint().map(|e| e.port_or_default()).ok_or_else(|| StreamError::Config {
            setting: self.origin("kinesis.endpoint"),
            message: "AWS (no endpoint) has no local port".into(),
        })
    }

    fn parsed_endpoint(&self) -> Option<Endpoint> {
        Endpoint::parse(self.endpoint.as_deref()?).ok().flatten()
    }

    /// The stream that carries `dataset`: `<stream_prefix><dataset>`, if that is a Kinesis
    /// stream name.
    pub fn stream_name(&self, dataset: &str) -> StreamResult<String> {
        let name = format!("{}{dataset}", self.stream_prefix);
        if name.is_empty() || name.len() > STREAM_NAME_MAX || !name.chars().all(is_stream_name_char) {
            return Err(StreamError::Config {
                setting: self.origin("kinesis.stream-prefix"),
                message: format!(
                    "stream name {name:?} for dataset {dataset:?} is not a Kinesis stream name (1 to {STREAM_NAME_MAX} of a-z, A-Z, 0-9, '_', '.', '-')"
                ),
            });
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::SettingValue;

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn source(key: &str, value: SettingValue, origin: &str) -> SettingSource {
        SettingSource::new(key, value, origin)
    }

    fn text(key: &str, value: &str, origin: &str) -> SettingSource {
        source(key, SettingValue::Text(value.into()), origin)
    }

    #[test]
    fn settings_are_read_and_checked() {
        let config = StreamConfig::from_properties(&props(&[
            ("kinesis.endpoint", "http://127.0.0.1:4599"),
            ("kinesis.shards", "4"),
            ("kinesis.access-key-id", "a"),
            ("kinesis.secret-access-key", "b"),
        ]))
        .unwrap();
        assert_eq!(config.shards, 4);
        assert_eq!(config.stream_name("shop_events").unwrap(), "weir-shop_events");
        assert_eq!(StreamConfig::from_properties(&config.to_properties().into_iter().collect()).unwrap().to_properties(), config.to_properties());
        let aws = StreamConfig::from_properties(&props(&[("kinesis.endpoint", ""), ("kinesis.region", "eu-west-1")])).unwrap();
        assert_eq!((aws.endpoint, aws.access_key_id), (None, None));
        let local = StreamConfig::from_properties(&HashMap::new()).unwrap();
        assert_eq!(local, StreamConfig::default());
        for (bad, needle) in [
            (props(&[("kinesis.shards", "0")]), "kinesis.shards: expected a whole number of shards from 1 to 1000, got \"0\""),
            (props(&[("kinesis.shards", "1001")]), "kinesis.shards"),
            (props(&[("kinesis.shard", "2")]), "kinesis.shard: unknown setting (known: endpoint, region, access_key_id"),
            (props(&[("kinesis.endpoint", ""), ("kinesis.access-key-id", "a")]), "kinesis.access-key-id: give both"),
            (props(&[("kinesis.endpoint", "localhost:4567")]), "http://"),
            (props(&[("kinesis.endpoint", "ftp://x")]), "http://"),
            (props(&[("kinesis.endpoint", "http://h:99999")]), "bad port"),
            (props(&[("kinesis.stream-prefix", "a b")]), "cannot start a Kinesis stream name"),
        ] {
            let err = StreamConfig::from_properties(&bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn errors_name_the_origin_and_later_sources_win() {
        let file = "/home/x/weir.toml";
        let err = StreamConfig::from_sources(&[
            source("kinesis.shards", SettingValue::Integer(3), &format!("{file}: kinesis.shards")),
            text("kinesis.shards", "two", "WEIR_KINESIS_SHARDS"),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "stream configuration: WEIR_KINESIS_SHARDS: expected a whole number of shards from 1 to 1000, got \"two\"");
        let err = StreamConfig::from_sources(&[source("kinesis.region", SettingValue::Integer(5), "f: kinesis.region")]).unwrap_err();
        assert!(err.to_string().contains("f: kinesis.region: expected a string, got 5"), "{err}");
        let err = StreamConfig::from_sources(&[source("kinesis.shards", SettingValue::Bool(true), "f: kinesis.shards")]).unwrap_err();
        assert!(err.to_string().contains("got true"), "{err}");

        let config = StreamConfig::from_sources(&[
            text("kinesis.endpoint", "http://localhost:4999/", &format!("{file}: kinesis.endpoint")),
            source("kinesis.shards", SettingValue::Integer(3), &format!("{file}: kinesis.shards")),
            text("kinesis.access_key_id", "toml", &format!("{file}: kinesis.access_key_id")),
            text("kinesis.shards", " 8 ", "WEIR_KINESIS_SHARDS"),
            text("aws.access-key-id", "ignored", "AWS_ACCESS_KEY_ID"),
        ])
        .unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://localhost:4999"));
        assert!(config.is_local() && config.local_port().unwrap() == 4999);
        assert_eq!((config.shards, config.access_key_id.as_deref(), config.secret_access_key.as_deref()), (8, Some("toml"), Some("weir")));
        assert_eq!(config.source, format!("defaults < {file} < WEIR_KINESIS_SHARDS"));
    }

    #[test]
    fn aws_takes_the_aws_variables() {
        let aws = [
            text("kinesis.endpoint", "", "WEIR_KINESIS_ENDPOINT"),
            text("aws.access-key-id", "AKIA", "AWS_ACCESS_KEY_ID"),
            text("aws.secret-access-key", "s3cr3t", "AWS_SECRET_ACCESS_KEY"),
            text("aws.session-token", "token", "AWS_SESSION_TOKEN"),
            text("aws.default-region", "eu-central-1", "AWS_DEFAULT_REGION"),
        ];
        let config = StreamConfig::from_sources(&aws).unwrap();
        assert!(config.is_aws() && !config.is_local());
        assert_eq!(config.region, "eu-central-1");
        assert_eq!((config.access_key_id.as_deref(), config.session_token.as_deref()), (Some("AKIA"), Some("token")));
        assert!(config.local_port().unwrap_err().to_string().contains("WEIR_KINESIS_ENDPOINT: AWS (no endpoint) has no local port"));
        let mut own_key = aws.to_vec();
        own_key.push(text("kinesis.access-key-id", "W", "WEIR_KINESIS_ACCESS_KEY_ID"));
        let config = StreamConfig::from_sources(&own_key).unwrap();
        assert_eq!((config.access_key_id.as_deref(), config.secret_access_key.as_deref()), (Some("W"), Some("s3cr3t")));
        assert_eq!(config.session_token, None);
        let bare = StreamConfig::from_sources(&aws[..1]).unwrap();
        assert_eq!((bare.access_key_id, bare.region.as_str()), (None, "us-east-1"));
        let err = StreamConfig::from_sources(&[aws[0].clone(), text("kinesis.access-key-id", "a", "WEIR_KINESIS_ACCESS_KEY_ID")]).unwrap_err();
        assert!(err.to_string().contains("WEIR_KINESIS_ACCESS_KEY_ID: give both"), "{err}");
    }

    #[test]
    fn stream_names_are_checked() {
        let config = StreamConfig::from_sources(&[text("kinesis.stream_prefix", "dev.", "WEIR_KINESIS_STREAM_PREFIX")]).unwrap();
        assert_eq!(config.stream_name("clicks").unwrap(), "dev.clicks");
        let err = config.stream_name("shop events").unwrap_err().to_string();
        assert!(err.contains("WEIR_KINESIS_STREAM_PREFIX: stream name \"dev.shop events\""), "{err}");
        let err = StreamConfig::from_sources(&[text("kinesis", "x", "f: kinesis")]).unwrap_err().to_string();
        assert!(err.contains("f: kinesis: expected a table ([kinesis])"), "{err}");
    }
}
