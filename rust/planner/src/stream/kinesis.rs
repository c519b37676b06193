//! [`Kinesis`]: the AWS SDK client for the configured endpoint (the local Kinesis-API server
//! or AWS), plus the few stream-level calls Weir needs: create a stream if missing and list
//! its shards (with their parents after a split or merge).

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kinesis::Client;

use super::config::StreamConfig;
use super::error::{StreamError, StreamResult};

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub shard_id: String,
    /// The shards it was split or merged from (none for a shard the stream began with).
    pub parents: Vec<String>,
    /// Set once the shard is closed (split or merged): no record of it comes after this.
    pub ending_sequence_number: Option<String>,
}

/// A Kinesis client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Kinesis {
    client: Client,
    config: StreamConfig,
}

/// A Kinesis SDK error with its whole cause chain (the SDK's `Display` says only "service error").
pub(crate) fn sdk_message(e: &(impl std::error::Error + 'static)) -> String {
    DisplayErrorContext(e).to_string()
}

impl Kinesis {
    pub async fn connect(config: StreamConfig) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(Region::new(config.region.clone()));
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(id, secret, config.session_token.clone(), None, "weir"));
        }
        let client = Client::new(&loader.load().await);
        Self { client, config }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// Creates `stream` with the configured number of shards unless it exists, and waits
    /// until it is active (another process creating it at the same time is fine).
    pub async fn ensure_stream(&self, stream: &str) -> StreamResult<()> {
        let err = |operation, e: &(dyn std::error::Error + 'static)| StreamError::Kinesis {
            operation,
            stream: stream.to_string(),
            message: DisplayErrorContext(e).to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut created = false;
        loop {
            match self.client.describe_stream_summary().stream_name(stream).send().await {
                Ok(out) => {
                    let summary = out.stream_description_summary();
                    match summary.map(|s| s.stream_status()) {
                        Some(StreamStatus::Active) | Some(StreamStatus::Updating) => return Ok(()),
                        Some(StreamStatus::Deleting) => {
                            return Err(StreamError::Kinesis {
                                operation: "DescribeStreamSummary",
                                stream: stream.into(),
                                message: "the stream is being deleted".into(),
                            })
                        }
                        _ => {}
                    }
                }
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) && !created => {
                    match self.client.create_stream().stream_name(stream).shard_count(self.config.shards as i32).send().await {
                        Ok(_) => {
                            tracing::info!(component = "stream", event = "stream_created", stream, shards = self.config.shards);
                        }
                        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
                        Err(e) => return Err(err("CreateStream", &e)),
                    }
                    created = true;
                }
                Err(e) => return Err(err("DescribeStreamSummary", &e)),
            }
            if Instant::now() > deadline {
                return Err(StreamError::Kinesis {
                    operation: "CreateStream",
                    stream: stream.into(),
                    message: "the stream did not become active within 120 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Names of the streams of the account and region (also a cheap reachability check).
    pub async fn stream_names(&self) -> StreamResult<Vec<String>> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_streams().next_token(t),
                None => self.client.list_streams(),
            };
            let out = request.send().await.map_err(|e| StreamError::Kinesis {
                operation: "ListStreams",
                stream: "*".into(),
                message: sdk_message(&e),
            })?;
            names.extend(out.stream_names().iter().cloned());
            token = out.next_token().map(str::to_string);
            if token.is_none() || !out.has_more_streams() {
                break;
            }
        }
        Ok(names)
    }

    /// The stream's shards, with their parents and, for a closed one, its end.
    pub async fn shards(&self, stream: &str) -> StreamResult<Vec<ShardInfo>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let request = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(stream),
            };
            let out = request.send().await.map_err(|e| StreamError::Kinesis {
                operation: "ListShards",
                stream: stream.into(),
                message: sdk_message(&e),
            })?;
            shards.extend(out.shards().iter().map(|s| ShardInfo {
                shard_id: s.shard_id().to_string(),
                parents: s.parent_shard_id().into_iter().chain(s.adjacent_parent_shard_id()).map(str::to_string).collect(),
                ending_sequence_number: s
                    .sequence_number_range()
                    .and_then(|range| range.ending_sequence_number())
                    .map(str::to_string),
            }));
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
        Ok(shards)
    }

    /// The ids of the stream's shards, sorted.
    pub async fn shard_ids(&self, stream: &str) -> StreamResult<Vec<String>> {
        Ok(self.shards(stream).await?.into_iter().map(|s| s.shard_id).collect())
    }
}
