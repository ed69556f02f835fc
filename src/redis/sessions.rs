//! Session state in Redis: folded in Rust (the one feature path), stored
//! with compare-and-set, redone on a lost race.
//!
//! One round trip per update in the usual case: each replica remembers the
//! value it last wrote or read for a session (a bounded cache), folds onto
//! it and sends the write with that value as the expected one. A session
//! this replica has not seen is expected absent. When the guess is wrong
//! (another replica wrote since, the key expired, a new replica) the script
//! refuses the write and answers the current value in the same reply, and
//! the fold is redone on it. The guess only saves the read: what is
//! written is always folded onto what Redis holds, so no update is lost.

use super::RedisConn;
use crate::domain::session::SessionState;
use crate::store::{SessionStore, SessionUpdate, StoreError};
use async_trait::async_trait;
use redis::Script;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// KEYS: session. ARGV: expected old value ('' = absent), new value, px.
/// Answers {1, ''} when written, else {0, the current value ('' = absent)}.
const CAS: &str = r#"
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return {0, cur} end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {1, ''}
"#;

/// The bytes of session values a replica remembers (keys and values):
/// about 40,000 sessions at their usual size. Beyond it the least used
/// are forgotten, which costs their next update one more round trip.
const KNOWN_BYTES: u64 = 32 << 20;

/// How often a session update is redone after losing a race.
const CAS_TRIES: usize = 200;
/// Redis keeps an idle session this much longer than the TTL (memory
/// reclamation only; expiry semantics use the injected clock, as in memory).
const RECLAIM_SLACK: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct StoredSession {
    state: SessionState,
    touched_ms: i64,
}

/// Session state in Redis, shared by every replica.
pub struct RedisSessionStore {
    conn: RedisConn,
    idle_ttl_ms: i64,
    cas: Script,
    /// Session key -> the value this replica last wrote or read there.
    known: moka::sync::Cache<String, String>,
}

impl RedisSessionStore {
    pub fn new(conn: RedisConn, idle_ttl: Duration) -> Self {
        let known = moka::sync::Cache::builder()
            .max_capacity(KNOWN_BYTES)
            .weigher(|k: &String, v: &String| u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX))
            // A session idle this long has expired in Redis too.
            .time_to_idle(idle_ttl + RECLAIM_SLACK)
            .build();
        RedisSessionStore {
            conn,
            idle_ttl_ms: i64::try_from(idle_ttl.as_millis()).unwrap_or(i64::MAX),
            cas: Script::new(CAS),
            known,
        }
    }

    /// The live state in a stored value. A value that does not parse (a
    /// format from another release, a hand edit) is logged and treated as
    /// no session: the session starts afresh instead of failing every
    /// request until the key expires.
    fn live(&self, session_id: &str, raw: &str, now_ms: i64) -> Option<SessionState> {
        match serde_json::from_str::<StoredSession>(raw) {
            Ok(s) => (now_ms.saturating_sub(s.touched_ms) <= self.idle_ttl_ms).then_some(s.state),
            Err(e) => {
                tracing::warn!(session = %session_id, error = %e, "unreadable session state in redis, starting afresh");
                None
            }
        }
    }
}

fn store_unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn apply(
        &self,
        session_id: &str,
        update: SessionUpdate<'_>,
    ) -> Result<SessionState, StoreError> {
        let key = self.conn.key(&["sess", session_id]);
        let px = u64::try_from(self.idle_ttl_ms)
            .unwrap_or(u64::MAX / 2)
            .saturating_add(RECLAIM_SLACK.as_millis() as u64);
        let mut con = self.conn.con();
        // The value expected in Redis: the one last seen here, else none.
        let mut old: Option<String> = self.known.get(&key);
        for _ in 0..CAS_TRIES {
            let base = match &old {
                Some(raw) => self
                    .live(session_id, raw, update.now_ms)
                    .unwrap_or_default(),
                None => SessionState::default(),
            };
            let state = update.fold(base);
            let new = serde_json::to_string(&StoredSession {
                state: state.clone(),
                touched_ms: update.now_ms,
            })
            .map_err(|e| StoreError::Unavailable(format!("session encode: {e}")))?;
            let (ok, current): (i64, String) = self
                .cas
                .key(&key)
                .arg(old.as_deref().unwrap_or(""))
                .arg(&new)
                .arg(px)
                .invoke_async(&mut con)
                .await
                .map_err(|e| {
                    // The write may or may not have landed: guess nothing.
                    self.known.invalidate(&key);
                    store_unavailable(e)
                })?;
            if ok == 1 {
                self.known.insert(key, new);
                return Ok(state);
            }
            old = (!current.is_empty()).then_some(current);
        }
        self.known.invalidate(&key);
        Err(StoreError::Unavailable(format!(
            "redis: session {session_id:?} changed under {CAS_TRIES} updates in a row"
        )))
    }

    async fn get_many(
        &self,
        session_ids: &[&str],
        now_ms: i64,
    ) -> Result<Vec<Option<SessionState>>, StoreError> {
        if session_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = session_ids
            .iter()
            .map(|id| self.conn.key(&["sess", id]))
            .collect();
        let mut con = self.conn.con();
        let raws: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .map_err(store_unavailable)?;
        Ok(raws
            .iter()
            .zip(session_ids)
            .map(|(r, id)| r.as_deref().and_then(|raw| self.live(id, raw, now_ms)))
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.conn.ping().await.map_err(StoreError::Unavailable)
    }
}
