//! Where campaign settings and their audit trail are kept: in memory (the
//! memory ledger: forgotten on restart, like its money), in SQLite beside
//! the ledger (`<data_dir>/campaigns.db`, the default) or in Redis with the
//! Redis ledger ([`crate::redis::RedisSettingsStore`], shared by every
//! replica). One conformance suite runs on all three.
//!
//! A change is one atomic compare-and-set on the campaign's revision, with
//! its audit entry in the same step: two operators changing one campaign at
//! once never lose a change silently (the second is applied on top of the
//! first, see [`crate::engine::campaigns`]).

use super::{CampaignError, CampaignSettings};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;

/// Audit entries kept at most (the oldest are dropped beyond it).
pub const MAX_AUDIT: usize = 100_000;

/// A campaign as stored: its settings and the config seed they were last
/// reconciled with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub settings: CampaignSettings,
    /// The config file's settings for this campaign when they were last
    /// applied (JSON of the seed); `None` for a campaign created at run
    /// time.
    pub seed: Option<String>,
}

/// One change, as the audit trail keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increases with every change (per store).
    pub seq: u64,
    pub at_ms: i64,
    /// The token's name (never its value); `config` for the config file,
    /// `local` when no token is configured.
    pub actor: String,
    pub campaign: String,
    /// `create`, `update` or `config`.
    pub action: String,
    pub before: Option<CampaignSettings>,
    pub after: CampaignSettings,
    /// What changed, in one line.
    pub changes: String,
    pub reason: String,
}

/// A change to commit: `expected` is the revision the change was made on
/// (`None`: the campaign must not exist yet).
#[derive(Clone, Debug)]
pub struct Commit {
    pub expected: Option<u64>,
    pub stored: Stored,
    pub audit: AuditEntry,
}

/// Why a commit was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The campaign's revision is no longer `expected` (or it exists).
    #[error("changed concurrently")]
    Stale,
    #[error(transparent)]
    Store(#[from] CampaignError),
}

#[async_trait]
pub trait SettingsStore: Send + Sync + 'static {
    /// Every stored campaign and the store's version (bumped by every
    /// commit; replicas poll it).
    async fn load(&self) -> Result<(Vec<Stored>, u64), CampaignError>;
    /// The store's version alone (cheap).
    async fn version(&self) -> Result<u64, CampaignError>;
    /// Applies `commit` atomically with its audit entry (whose `seq` the
    /// store assigns), or refuses a stale one. Returns the entry.
    async fn commit(&self, commit: Commit) -> Result<AuditEntry, CommitError>;
    /// Audit entries, newest first, of one campaign or all, at most
    /// `limit`, older than `before_seq` when given (paging).
    async fn audit(
        &self,
        campaign: Option<&str>,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<AuditEntry>, CampaignError>;
}

fn check(current: Option<&Stored>, expected: Option<u64>) -> Result<(), CommitError> {
    match (current, expected) {
        (None, None) => Ok(()),
        (Some(c), Some(e)) if c.settings.revision == e => Ok(()),
        _ => Err(CommitError::Stale),
    }
}

fn unavailable(e: impl std::fmt::Display) -> CampaignError {
    CampaignError::Unavailable(e.to_string())
}

/// Settings kept in memory (the memory ledger's companion).
#[derive(Default)]
pub struct MemorySettings {
    state: Mutex<MemoryState>,
}

#[derive(Default)]
struct MemoryState {
    campaigns: std::collections::BTreeMap<String, Stored>,
    audit: std::collections::VecDeque<AuditEntry>,
    version: u64,
}

#[async_trait]
impl SettingsStore for MemorySettings {
    async fn load(&self) -> Result<(Vec<Stored>, u64), CampaignError> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok((s.campaigns.values().cloned().collect(), s.version))
    }

    async fn version(&self) -> Result<u64, CampaignError> {
        Ok(self.state.lock().unwrap_or_else(|p| p.into_inner()).version)
    }

    async fn commit(&self, commit: Commit) -> Result<AuditEntry, CommitError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        check(s.campaigns.get(&commit.stored.settings.id), commit.expected)?;
        s.version += 1;
        let mut audit = commit.audit;
        audit.seq = s.version;
        s.campaigns
            .insert(commit.stored.settings.id.clone(), commit.stored);
        s.audit.push_front(audit.clone());
        s.audit.truncate(MAX_AUDIT);
        Ok(audit)
    }

    async fn audit(
        &self,
        campaign: Option<&str>,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<AuditEntry>, CampaignError> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        Ok(s.audit
            .iter()
            .filter(|a| campaign.is_none_or(|c| a.campaign == c))
            .filter(|a| before_seq.is_none_or(|b| a.seq < b))
            .take(limit)
            .cloned()
            .collect())
    }
}

/// Settings in SQLite (`campaigns.db` beside the ledger): one row per
/// campaign, one per audit entry, each commit one transaction with the
/// revision check. Changes are rare, so one connection behind a mutex, used
/// on the blocking pool, is enough.
pub struct SqliteSettings {
    con: std::sync::Arc<Mutex<rusqlite::Connection>>,
}

impl SqliteSettings {
    pub fn open(path: &Path) -> Result<Self, CampaignError> {
        let con = rusqlite::Connection::open(path).map_err(unavailable)?;
        // Settings name campaigns and operators: not for every local user.
        let _ = crate::files::set_mode(path, 0o600);
        con.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS campaigns (
               id TEXT PRIMARY KEY, revision INTEGER NOT NULL, json TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS audit (
               seq INTEGER PRIMARY KEY, campaign TEXT NOT NULL, json TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_campaign ON audit (campaign, seq);",
        )
        .map_err(unavailable)?;
        Ok(SqliteSettings {
            con: std::sync::Arc::new(Mutex::new(con)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> Result<T, CommitError> + Send + 'static,
    ) -> Result<T, CommitError> {
        let con = std::sync::Arc::clone(&self.con);
        tokio::task::spawn_blocking(move || {
            let mut con = con.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut con)
        })
        .await
        .map_err(|e| CommitError::Store(unavailable(e)))?
    }
}

fn version_of(con: &rusqlite::Connection) -> rusqlite::Result<u64> {
    con.query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|v| v.max(0) as u64)
}

fn store_err(e: impl std::fmt::Display) -> CommitError {
    CommitError::Store(unavailable(e))
}

fn flatten<T>(r: Result<T, CommitError>) -> Result<T, CampaignError> {
    r.map_err(|e| match e {
        CommitError::Store(e) => e,
        CommitError::Stale => unavailable("unexpected stale read"),
    })
}

#[async_trait]
impl SettingsStore for SqliteSettings {
    async fn load(&self) -> Result<(Vec<Stored>, u64), CampaignError> {
        flatten(
            self.with(|con| {
                let mut st = con
                    .prepare("SELECT json FROM campaigns ORDER BY id")
                    .map_err(store_err)?;
                let rows = st
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(store_err)?;
                let mut all = Vec::new();
                for json in rows {
                    let json = json.map_err(store_err)?;
                    all.push(serde_json::from_str(&json).map_err(store_err)?);
                }
                Ok((all, version_of(con).map_err(store_err)?))
            })
            .await,
        )
    }

    async fn version(&self) -> Result<u64, CampaignError> {
        flatten(self.with(|con| version_of(con).map_err(store_err)).await)
    }

    async fn commit(&self, commit: Commit) -> Result<AuditEntry, CommitError> {
        self.with(move |con| {
            let tx = con
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(store_err)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT revision FROM campaigns WHERE id = ?1",
                    [&commit.stored.settings.id],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(store_err)?;
            match (current, commit.expected) {
                (None, None) => {}
                (Some(c), Some(e)) if c as u64 == e => {}
                _ => return Err(CommitError::Stale),
            }
            let seq = version_of(&tx).map_err(store_err)? + 1;
            let mut audit = commit.audit;
            audit.seq = seq;
            tx.execute(
                "INSERT INTO campaigns (id, revision, json) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET revision = ?2, json = ?3",
                rusqlite::params![
                    commit.stored.settings.id,
                    commit.stored.settings.revision as i64,
                    serde_json::to_string(&commit.stored).map_err(store_err)?
                ],
            )
            .map_err(store_err)?;
            tx.execute(
                "INSERT INTO audit (seq, campaign, json) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    seq as i64,
                    audit.campaign,
                    serde_json::to_string(&audit).map_err(store_err)?
                ],
            )
            .map_err(store_err)?;
            tx.execute(
                "DELETE FROM audit WHERE seq <= ?1",
                [seq as i64 - MAX_AUDIT as i64],
            )
            .map_err(store_err)?;
            tx.commit().map_err(store_err)?;
            Ok(audit)
        })
        .await
    }

    async fn audit(
        &self,
        campaign: Option<&str>,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<AuditEntry>, CampaignError> {
        let campaign = campaign.map(str::to_owned);
        let before = before_seq.map_or(i64::MAX, |b| b as i64);
        flatten(
            self.with(move |con| {
                let mut st = con
                    .prepare(
                        "SELECT json FROM audit WHERE (?1 IS NULL OR campaign = ?1) AND seq < ?2
                         ORDER BY seq DESC LIMIT ?3",
                    )
                    .map_err(store_err)?;
                let rows = st
                    .query_map(rusqlite::params![campaign, before, limit as i64], |r| {
                        r.get::<_, String>(0)
                    })
                    .map_err(store_err)?;
                let mut all = Vec::new();
                for json in rows {
                    let json = json.map_err(store_err)?;
                    all.push(serde_json::from_str(&json).map_err(store_err)?);
                }
                Ok(all)
            })
            .await,
        )
    }
}
