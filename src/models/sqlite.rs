//! The model history in SQLite (`models.sqlite3` in the data directory):
//! one row per kept model, its entry as JSON beside the file's text. Every
//! change is one immediate transaction, so `nudge model` on the command
//! line and the running service can change it side by side.

use super::{
    earlier_of, live_of, to_drop, ModelEntry, ModelRegistry, Publish, RegistryError, RolledBack,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A few models, read and changed rarely: one connection behind a mutex,
/// used on the blocking pool.
pub struct SqliteRegistry {
    con: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(format!("sqlite: {e}"))
}

fn entries(con: &Connection) -> Result<Vec<ModelEntry>, RegistryError> {
    let mut stmt = con
        .prepare_cached("SELECT entry FROM models ORDER BY seq DESC")
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let json = row.map_err(unavailable)?;
        out.push(serde_json::from_str(&json).map_err(unavailable)?);
    }
    Ok(out)
}

impl SqliteRegistry {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let con = Connection::open(path).map_err(unavailable)?;
        let _ = crate::files::set_mode(path, 0o600);
        con.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS models (
               seq INTEGER PRIMARY KEY, entry TEXT NOT NULL, body TEXT NOT NULL);",
        )
        .map_err(unavailable)?;
        Ok(SqliteRegistry {
            con: Arc::new(Mutex::new(con)),
        })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let con = Arc::clone(&self.con);
        tokio::task::spawn_blocking(move || {
            let mut con = con.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut con)
        })
        .await
        .map_err(unavailable)?
    }
}

#[async_trait]
impl ModelRegistry for SqliteRegistry {
    async fn live(&self) -> Result<Option<ModelEntry>, RegistryError> {
        self.with(|con| Ok(live_of(&entries(con)?).cloned())).await
    }

    async fn history(&self) -> Result<Vec<ModelEntry>, RegistryError> {
        self.with(|con| entries(con)).await
    }

    async fn body(&self, seq: u64) -> Result<Option<String>, RegistryError> {
        self.with(move |con| {
            con.query_row(
                "SELECT body FROM models WHERE seq = ?1",
                params![seq as i64],
                |r| r.get(0),
            )
            .optional()
            .map_err(unavailable)
        })
        .await
    }

    async fn publish(&self, p: Publish, in_service: usize) -> Result<ModelEntry, RegistryError> {
        self.with(move |con| {
            let tx = con
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let all = entries(&tx)?;
            let sha256 = p.sha256();
            if let Some(live) = live_of(&all).filter(|l| l.sha256 == sha256) {
                return Ok(live.clone());
            }
            let entry = ModelEntry {
                seq: all.iter().map(|e| e.seq).max().unwrap_or(0) + 1,
                version: p.version,
                sha256,
                published_at_ms: p.at_ms,
                published_by: p.by,
                reason: p.reason,
                rolled_back: None,
            };
            let json = serde_json::to_string(&entry).map_err(unavailable)?;
            tx.execute(
                "INSERT INTO models (seq, entry, body) VALUES (?1, ?2, ?3)",
                params![entry.seq as i64, json, p.body],
            )
            .map_err(unavailable)?;
            let mut all = all;
            all.push(entry.clone());
            for seq in to_drop(&all, in_service) {
                tx.execute("DELETE FROM models WHERE seq = ?1", params![seq as i64])
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(entry)
        })
        .await
    }

    async fn rollback(&self, r: super::Rollback) -> Result<ModelEntry, RegistryError> {
        self.with(move |con| {
            let tx = con
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(unavailable)?;
            let all = entries(&tx)?;
            let live = live_of(&all).ok_or(RegistryError::Empty)?.clone();
            if live.seq != r.expected {
                return Err(RegistryError::Conflict(live.seq));
            }
            let earlier = earlier_of(&all, live.seq)
                .ok_or(RegistryError::NoEarlier(all.len() - 1))?
                .clone();
            let mut out = live;
            out.rolled_back = Some(RolledBack {
                at_ms: r.at_ms,
                by: r.by,
                reason: r.reason,
            });
            let json = serde_json::to_string(&out).map_err(unavailable)?;
            tx.execute(
                "UPDATE models SET entry = ?1 WHERE seq = ?2",
                params![json, out.seq as i64],
            )
            .map_err(unavailable)?;
            tx.commit().map_err(unavailable)?;
            Ok(earlier)
        })
        .await
    }
}
