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
//! ([`crate::redis::RedisSessionStore`]) folds in Rust and writes
//! back with a compare-and-set script, redoing the fold when it lost a race.

use crate::domain::session::{Context, Event, SessionState};
pub mod memory;

pub use memory::MemorySessionStore;

use async_trait::async_trait;

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

    /// A cheap probe that the store answers (readiness). In memory it
    /// always does.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Sessions held, when the store can tell cheaply (the memory store;
    /// a Redis instance is watched with Redis's own tools).
    fn len_hint(&self) -> Option<u64> {
        None
    }
}
