//! Consumer checkpoints stored in Iceberg snapshot summaries, so data and checkpoint are
//! committed atomically: the summary key [`CHECKPOINT_PROPERTY`] holds, per stream and shard,
//! the sequence number of the last source record whose rows the table holds.
//!
//! Every Weir commit carries the checkpoint of its parent forward (merged with its own
//! advance), so the newest snapshot always has it; readers also walk back through ancestors,
//! so a snapshot written by another tool (pyiceberg, DuckDB) does not hide it.
//!
//! A commit that advances shards is *fenced*: it names the position it expects each shard to
//! be at, and is refused with [`LakeError::CheckpointMoved`] if another consumer moved it
//! first. That is what makes a consumer that lost its lease (a zombie) harmless.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};

use iceberg::spec::TableMetadata;
use serde::{Deserialize, Serialize};

use super::error::{LakeError, LakeResult};

/// Snapshot-summary key of the checkpoint (JSON).
pub const CHECKPOINT_PROPERTY: &str = "weir.checkpoint";

/// Per stream, per shard: the sequence number of the last record stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Checkpoint(pub BTreeMap<String, BTreeMap<String, String>>);

impl Checkpoint {
    /// The checkpoint in a snapshot summary, if it has one.
    pub fn from_summary(table: &str, summary: &HashMap<String, String>) -> LakeResult<Option<Self>> {
        let Some(json) = summary.get(CHECKPOINT_PROPERTY) else { return Ok(None) };
        serde_json::from_str(json).map(Some).map_err(|e| LakeError::Table {
            table: table.to_string(),
            message: format!("snapshot summary {CHECKPOINT_PROPERTY} is not a checkpoint: {e}"),
        })
    }

    /// The checkpoint of the table's current snapshot or, if that has none, of its nearest
    /// ancestor that has one; empty when no snapshot has one.
    pub fn of_table(table: &str, metadata: &TableMetadata) -> LakeResult<Self> {
        let mut snapshot = metadata.current_snapshot().cloned();
        while let Some(current) = snapshot {
            if let Some(found) = Self::from_summary(table, &current.summary().additional_properties)? {
                return Ok(found);
            }
            snapshot = current.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id).cloned());
        }
        Ok(Self::default())
    }

    pub fn position(&self, stream: &str, shard: &str) -> Option<&str> {
        self.0.get(stream)?.get(shard).map(String::as_str)
    }

    /// The positions of one stream's shards.
    pub fn shards(&self, stream: &str) -> BTreeMap<String, String> {
        self.0.get(stream).cloned().unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a checkpoint serialises")
    }

    /// Checks the fence of `advance` against this checkpoint and applies it.
    pub fn advance(&mut self, table: &str, advance: &CheckpointAdvance) -> LakeResult<()> {
        for (shard, step) in &advance.shards {
            let found = self.position(&advance.stream, shard);
            if found != step.expected.as_deref() {
                return Err(LakeError::CheckpointMoved {
                    table: table.to_string(),
                    stream: advance.stream.clone(),
                    shard: shard.clone(),
                    expected: step.expected.clone(),
                    found: found.map(str::to_string),
                });
            }
        }
        let positions = self.0.entry(advance.stream.clone()).or_default();
        for (shard, step) in &advance.shards {
            positions.insert(shard.clone(), step.to.clone());
        }
        Ok(())
    }
}

/// Moves some shards of one stream forward in one commit, fenced on their current positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointAdvance {
    pub stream: String,
    pub shards: BTreeMap<String, ShardAdvance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardAdvance {
    /// Where the table's checkpoint must be for the commit to go through (`None`: the shard
    /// has no position yet).
    pub expected: Option<String>,
    /// The sequence number of the last record this commit stores.
    pub to: String,
}

/// Orders Kinesis sequence numbers (decimal strings of up to 128 bits and more, without
/// leading zeros): a longer number is larger.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(shard: &str, expected: Option<&str>, to: &str) -> CheckpointAdvance {
        CheckpointAdvance {
            stream: "s".into(),
            shards: [(shard.to_string(), ShardAdvance { expected: expected.map(Into::into), to: to.into() })].into(),
        }
    }

    #[test]
    fn advances_are_fenced_on_the_expected_position() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.advance("t", &advance("shard-0", None, "10")).unwrap();
        checkpoint.advance("t", &advance("shard-1", None, "7")).unwrap();
        checkpoint.advance("t", &advance("shard-0", Some("10"), "25")).unwrap();
        assert_eq!(checkpoint.position("s", "shard-0"), Some("25"));
        assert_eq!(checkpoint.position("s", "shard-1"), Some("7"));
        let err = checkpoint.advance("t", &advance("shard-0", Some("10"), "30")).unwrap_err();
        assert!(err.to_string().contains("shard-0") && err.to_string().contains("25"), "{err}");
        assert_eq!(checkpoint.position("s", "shard-0"), Some("25"), "a refused advance changes nothing");
        let again = Checkpoint::from_summary("t", &[(CHECKPOINT_PROPERTY.to_string(), checkpoint.to_json())].into())
            .unwrap()
            .unwrap();
        assert_eq!(again, checkpoint);
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("495", "494"), Ordering::Greater);
        assert_eq!(compare_sequence_numbers("12", "12"), Ordering::Equal);
    }
}
