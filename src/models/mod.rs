//! The served model's history: every model put in service (a promoted
//! retrain, a changed model file, a publish from the command line), kept
//! with who published it and why, so that every replica serves the same
//! one and operators can go back in one step.
//!
//! The history is a list ordered by `seq`. The live model is the newest
//! entry not rolled back. Publishing appends an entry (a body identical to
//! the live one changes nothing); a rollback marks the live entry rolled
//! back, which makes the one before it live again. The newest `keep`
//! entries in service (and the rolled-back ones among them) are kept; older
//! ones are dropped.
//!
//! Backends: [`MemoryRegistry`] (one process), [`sqlite::SqliteRegistry`]
//! (`models.sqlite3` in the data directory, beside the SQLite ledger) and
//! the Redis one in `crate::redis`, shared by every replica. One
//! conformance suite runs on all three.

pub mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::Mutex;

/// Earlier models kept to go back to by default, besides the live one.
pub const DEFAULT_KEEP_PREVIOUS: usize = 5;

/// Largest number of earlier models kept.
pub const MAX_KEEP_PREVIOUS: usize = 100;

/// One model put in service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// Increases with every publish (per registry).
    pub seq: u64,
    /// The model file's `version`.
    pub version: String,
    /// SHA-256 of the model file's bytes (hex).
    pub sha256: String,
    pub published_at_ms: i64,
    /// A token's name, `file` (the model file changed), `cli` or `config`.
    pub published_by: String,
    pub reason: String,
    /// Set once a rollback took this model out of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back: Option<RolledBack>,
}

/// Who took a model out of service, when and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub at_ms: i64,
    pub by: String,
    pub reason: String,
}

/// A model to publish.
#[derive(Clone, Debug)]
pub struct Publish {
    /// The model file's text, already validated by the caller.
    pub body: String,
    pub version: String,
    pub at_ms: i64,
    pub by: String,
    pub reason: String,
}

impl Publish {
    pub fn sha256(&self) -> String {
        sha256_hex(self.body.as_bytes())
    }
}

/// A rollback of the live model, made on the live entry `expected` (a
/// rollback made on a view that another one has changed is refused).
#[derive(Clone, Debug)]
pub struct Rollback {
    pub expected: u64,
    pub at_ms: i64,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("no model has been published yet")]
    Empty,
    #[error(
        "no earlier model to go back to: the {0} kept models before it were rolled back or dropped"
    )]
    NoEarlier(usize),
    #[error("the live model changed meanwhile (now seq {0}); look again and retry")]
    Conflict(u64),
    #[error("model store unavailable: {0}")]
    Unavailable(String),
}

/// Where the model history is kept.
#[async_trait]
pub trait ModelRegistry: Send + Sync + 'static {
    /// The live entry; cheap (replicas poll it).
    async fn live(&self) -> Result<Option<ModelEntry>, RegistryError>;
    /// Every kept entry, newest first.
    async fn history(&self) -> Result<Vec<ModelEntry>, RegistryError>;
    /// A kept entry's model file text.
    async fn body(&self, seq: u64) -> Result<Option<String>, RegistryError>;
    /// Appends `p` and makes it live, unless its bytes are the live
    /// model's; answers the live entry. Keeps `in_service` entries in
    /// service (the live one included).
    async fn publish(&self, p: Publish, in_service: usize) -> Result<ModelEntry, RegistryError>;
    /// Takes the live model out of service; answers the entry now live.
    async fn rollback(&self, r: Rollback) -> Result<ModelEntry, RegistryError>;
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The live entry of a history (any order): the newest not rolled back.
pub fn live_of(entries: &[ModelEntry]) -> Option<&ModelEntry> {
    entries
        .iter()
        .filter(|e| e.rolled_back.is_none())
        .max_by_key(|e| e.seq)
}

/// The entry a rollback of `live` makes live: the newest older one still
/// in service.
pub fn earlier_of(entries: &[ModelEntry], live: u64) -> Option<&ModelEntry> {
    entries
        .iter()
        .filter(|e| e.seq < live && e.rolled_back.is_none())
        .max_by_key(|e| e.seq)
}

/// The seqs to drop so that `in_service` entries in service remain (the
/// live one included) with the rolled-back ones newer than the oldest of
/// them.
pub fn to_drop(entries: &[ModelEntry], in_service: usize) -> Vec<u64> {
    let mut in_service_seqs: Vec<u64> = entries
        .iter()
        .filter(|e| e.rolled_back.is_none())
        .map(|e| e.seq)
        .collect();
    in_service_seqs.sort_unstable_by_key(|s| std::cmp::Reverse(*s));
    let Some(&oldest_kept) = in_service_seqs.get(in_service.max(1) - 1) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| e.seq < oldest_kept)
        .map(|e| e.seq)
        .collect()
}

/// The history of one process (tests, the memory ledger).
#[derive(Default)]
pub struct MemoryRegistry {
    inner: Mutex<(Vec<(ModelEntry, String)>, u64)>,
}

#[async_trait]
impl ModelRegistry for MemoryRegistry {
    async fn live(&self) -> Result<Option<ModelEntry>, RegistryError> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<ModelEntry> = g.0.iter().map(|(e, _)| e.clone()).collect();
        Ok(live_of(&entries).cloned())
    }

    async fn history(&self) -> Result<Vec<ModelEntry>, RegistryError> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut entries: Vec<ModelEntry> = g.0.iter().map(|(e, _)| e.clone()).collect();
        entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
        Ok(entries)
    }

    async fn body(&self, seq: u64) -> Result<Option<String>, RegistryError> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(g.0
            .iter()
            .find(|(e, _)| e.seq == seq)
            .map(|(_, b)| b.clone()))
    }

    async fn publish(&self, p: Publish, in_service: usize) -> Result<ModelEntry, RegistryError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let sha256 = p.sha256();
        let entries: Vec<ModelEntry> = g.0.iter().map(|(e, _)| e.clone()).collect();
        if let Some(live) = live_of(&entries).filter(|l| l.sha256 == sha256) {
            return Ok(live.clone());
        }
        g.1 += 1;
        let entry = ModelEntry {
            seq: g.1,
            version: p.version,
            sha256,
            published_at_ms: p.at_ms,
            published_by: p.by,
            reason: p.reason,
            rolled_back: None,
        };
        g.0.push((entry.clone(), p.body));
        let entries: Vec<ModelEntry> = g.0.iter().map(|(e, _)| e.clone()).collect();
        let drop = to_drop(&entries, in_service);
        g.0.retain(|(e, _)| !drop.contains(&e.seq));
        Ok(entry)
    }

    async fn rollback(&self, r: Rollback) -> Result<ModelEntry, RegistryError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entries: Vec<ModelEntry> = g.0.iter().map(|(e, _)| e.clone()).collect();
        let live = live_of(&entries).ok_or(RegistryError::Empty)?;
        if live.seq != r.expected {
            return Err(RegistryError::Conflict(live.seq));
        }
        let earlier = earlier_of(&entries, live.seq)
            .ok_or(RegistryError::NoEarlier(entries.len() - 1))?
            .clone();
        let live_seq = live.seq;
        for (e, _) in g.0.iter_mut() {
            if e.seq == live_seq {
                e.rolled_back = Some(RolledBack {
                    at_ms: r.at_ms,
                    by: r.by.clone(),
                    reason: r.reason.clone(),
                });
            }
        }
        Ok(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, rolled: bool) -> ModelEntry {
        ModelEntry {
            seq,
            version: format!("v{seq}"),
            sha256: String::new(),
            published_at_ms: 0,
            published_by: "t".into(),
            reason: String::new(),
            rolled_back: rolled.then(|| RolledBack {
                at_ms: 0,
                by: "t".into(),
                reason: String::new(),
            }),
        }
    }

    #[test]
    fn the_live_model_is_the_newest_in_service() {
        let h = [e(1, false), e(2, false), e(3, true)];
        assert_eq!(live_of(&h).map(|x| x.seq), Some(2));
        assert_eq!(earlier_of(&h, 2).map(|x| x.seq), Some(1));
        assert_eq!(earlier_of(&h, 1), None);
    }

    #[test]
    fn pruning_keeps_the_newest_in_service_and_the_rolled_back_among_them() {
        let h = [
            e(1, false),
            e(2, false),
            e(3, true),
            e(4, false),
            e(5, false),
        ];
        assert_eq!(to_drop(&h, 2), vec![1, 2, 3]);
        assert_eq!(to_drop(&h, 3), vec![1]);
        assert!(to_drop(&h, 4).is_empty());
        assert!(to_drop(&h, 10).is_empty());
        // 0 is read as 1: the live model always stays.
        assert_eq!(to_drop(&h, 0), vec![1, 2, 3, 4]);
    }
}
