//! Session state storage behind an async, fallible, batch-friendly trait.
//!
//! The in-memory default keeps sessions in a moka cache (a kept concurrent
//! cache with bounded capacity and idle eviction), so memory is reclaimed
//! without a sweeper of our own. The idle TTL itself is enforced against the
//! injected clock on every access (a session idle for longer than the TTL
//! starts afresh), which makes it exact and testable; moka's own
//! time-to-idle only frees the memory.
//!
//! [`SessionStore::apply`] is atomic per session: concurrent updates to one
//! session are serialised, never lost. The Redis implementation
//! ([`crate::redis_backend::RedisSessionStore`]) folds in Rust and writes
//! back with a compare-and-set script, redoing the fold when it lost a race.

use crate::session::{Context, Event, SessionState};
use async_trait::async_trait;
use std::time::Duration;

/// One update: optionally replace the context, then fold the events in order.
#[derive(Clone, Copy, Debug)]
pub struct SessionUpdate<'a> {
    pub context: Option<Context>,
    pub events: &'a [Event],
    /// Server time of the update (drives the idle TTL).
    pub now_ms: i64,
}

impl SessionUpdate<'_> {
    /// The update applied to `state`: every store folds through this one
    /// function (and so through `SessionState::apply`, the feature path).
    pub fn fold(&self, mut state: SessionState) -> SessionState {
        if let Some(ctx) = self.context {
            state.context = ctx;
        }
        for ev in self.events {
            state.apply(ev);
        }
        state
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Atomically applies `update` to the session (creating it, or starting
    /// afresh when it was idle past the TTL) and returns the new state.
    async fn apply(
        &self,
        session_id: &str,
        update: SessionUpdate<'_>,
    ) -> Result<SessionState, StoreError>;

    /// Current states (None for unknown or expired sessions), in order.
    async fn get_many(
        &self,
        session_ids: &[&str],
        now_ms: i64,
    ) -> Result<Vec<Option<SessionState>>, StoreError>;
}

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
