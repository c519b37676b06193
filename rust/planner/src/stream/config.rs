//! [`StreamConfig`]: where the Kinesis streams are and how they are named and sized. Built
//! from the string properties `weir.config.KinesisSettings.properties()` produces (weir.toml
//! `[kinesis]`, `WEIR_KINESIS_*`); see `docs/configuration.md`.

use std::collections::HashMap;

use super::error::{StreamError, StreamResult};

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
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            endpoint: Some("http://127.0.0.1:4567".into()),
            region: "us-east-1".into(),
            access_key_id: Some("weir".into()),
            secret_access_key: Some("weir".into()),
            session_token: None,
            stream_prefix: "weir-".into(),
            shards: 2,
        }
    }
}

impl StreamConfig {
    /// Reads `kinesis.endpoint`, `kinesis.region`, `kinesis.access-key-id`,
    /// `kinesis.secret-access-key`, `kinesis.session-token`, `kinesis.stream-prefix` and
    /// `kinesis.shards`. A missing endpoint means AWS; a missing key pair means the AWS
    /// default credential chain. Any other key is an error naming it.
    pub fn from_properties(properties: &HashMap<String, String>) -> StreamResult<Self> {
        let mut config = Self { endpoint: None, access_key_id: None, secret_access_key: None, ..Self::default() };
        for (key, value) in properties {
            let text = || Some(value.trim().to_string()).filter(|v| !v.is_empty());
            match key.as_str() {
                "kinesis.endpoint" => config.endpoint = text(),
                "kinesis.region" => config.region = text().unwrap_or(config.region),
                "kinesis.access-key-id" => config.access_key_id = text(),
                "kinesis.secret-access-key" => config.secret_access_key = text(),
                "kinesis.session-token" => config.session_token = text(),
                "kinesis.stream-prefix" => config.stream_prefix = value.trim().to_string(),
                "kinesis.shards" => {
                    config.shards = value.trim().parse::<u32>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
                        StreamError::Config {
                            setting: key.clone(),
                            message: format!("expected a whole number of shards from 1 to 1000, got {value:?}"),
                        }
                    })?
                }
                _ => return Err(StreamError::Config { setting: key.clone(), message: "unknown setting".into() }),
            }
        }
        if config.access_key_id.is_some() != config.secret_access_key.is_some() {
            return Err(StreamError::Config {
                setting: "kinesis.access-key-id".into(),
                message: "give both the access key id and the secret access key, or neither".into(),
            });
        }
        if let Some(endpoint) = &config.endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(StreamError::Config {
                    setting: "kinesis.endpoint".into(),
                    message: format!("expected an http:// or https:// URL, got {endpoint:?}"),
                });
            }
        }
        Ok(config)
    }

    /// The stream that carries `dataset`.
    pub fn stream_name(&self, dataset: &str) -> String {
        format!("{}{dataset}", self.stream_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
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
        assert_eq!(config.stream_name("shop_events"), "weir-shop_events");
        let aws = StreamConfig::from_properties(&props(&[("kinesis.region", "eu-west-1")])).unwrap();
        assert_eq!((aws.endpoint, aws.access_key_id), (None, None));
        for (bad, needle) in [
            (props(&[("kinesis.shards", "0")]), "kinesis.shards"),
            (props(&[("kinesis.shard", "2")]), "kinesis.shard: unknown"),
            (props(&[("kinesis.access-key-id", "a")]), "both"),
            (props(&[("kinesis.endpoint", "localhost:4567")]), "http://"),
        ] {
            let err = StreamConfig::from_properties(&bad).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
