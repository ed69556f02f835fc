//! Sessions in memory (moka): bounded in count, expired after the idle TTL.

use super::{SessionStore, SessionUpdate, StoreError};
use crate::domain::session::SessionState;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Clone, Debug)]
struct Stored {
    state: SessionState,
    touched_ms: i64,
}

/// The embedded default: a moka cache.
pub struct MemorySessionStore {
    cache: moka::sync::Cache<String, Stored>,
    idle_ttl_ms: i64,
}

impl MemorySessionStore {
    pub fn new(idle_ttl: Duration, max_sessions: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_sessions)
            // Memory reclamation only; expiry semantics use the injected clock.
            .time_to_idle(idle_ttl + Duration::from_secs(60))
            .build();
        MemorySessionStore {
            cache,
            idle_ttl_ms: i64::try_from(idle_ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn live(&self, s: &Stored, now_ms: i64) -> bool {
        now_ms.saturating_sub(s.touched_ms) <= self.idle_ttl_ms
    }

    /// Live sessions currently held (approximate; for metrics and benches).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    fn len_hint(&self) -> Option<u64> {
        Some(self.cache.entry_count())
    }

    async fn apply(
        &self,
        session_id: &str,
        update: SessionUpdate<'_>,
    ) -> Result<SessionState, StoreError> {
        let mut out = None;
        self.cache
            .entry_by_ref(session_id)
            .and_compute_with(|existing| {
                let state = update.fold(match existing {
                    Some(e) if self.live(e.value(), update.now_ms) => e.into_value().state,
                    _ => SessionState::default(),
                });
                out = Some(state.clone());
                moka::ops::compute::Op::Put(Stored {
                    state,
                    touched_ms: update.now_ms,
                })
            });
        out.ok_or_else(|| StoreError::Unavailable("cache update did not run".into()))
    }

    async fn get_many(
        &self,
        session_ids: &[&str],
        now_ms: i64,
    ) -> Result<Vec<Option<SessionState>>, StoreError> {
        Ok(session_ids
            .iter()
            .map(|id| {
                self.cache
                    .get(*id)
                    .filter(|s| self.live(s, now_ms))
                    .map(|s| s.state)
            })
            .collect())
    }
}
