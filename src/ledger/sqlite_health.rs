//! The SQLite writer's view of its storage: healthy, or failing since
//! when, with the backoff before the disk is tried again and the throttled
//! log lines of a failing and a recovering disk.

use super::{BACKOFF_MAX, BACKOFF_MIN, LOG_EVERY};
use crate::throttle::LogThrottle;
use std::time::{Duration, Instant};

/// The writer's view of its storage: healthy, or failing since when and
/// when the disk may be tried again.
pub(super) struct Health {
    /// Set while failing: writes before this instant are refused unattempted.
    pub(super) retry_at: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) down_since: Option<Instant>,
    pub(super) last_error: String,
    pub(super) failed_commits: u64,
    pub(super) refused: u64,
    pub(super) commit_failed: LogThrottle,
    /// A flapping disk recovers again and again: one line per interval too.
    pub(super) recovered: LogThrottle,
}

impl Health {
    pub(super) fn new() -> Self {
        Health {
            retry_at: None,
            backoff: BACKOFF_MIN,
            down_since: None,
            last_error: String::new(),
            failed_commits: 0,
            refused: 0,
            commit_failed: LogThrottle::new(LOG_EVERY),
            recovered: LogThrottle::new(LOG_EVERY),
        }
    }

    /// Whether a write may try the disk now.
    pub(super) fn may_write(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    /// Why `n` writes are refused while the storage is failing.
    pub(super) fn refusal(&mut self, n: usize) -> String {
        self.refused += n as u64;
        format!(
            "ledger storage failing, writes refused until it recovers: {}",
            self.last_error
        )
    }

    pub(super) fn failed(&mut self, error: &rusqlite::Error, batch: usize) {
        let now = Instant::now();
        if self.down_since.is_some() {
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        } else {
            self.down_since = Some(now);
            self.backoff = BACKOFF_MIN;
        }
        self.retry_at = Some(now + self.backoff);
        self.failed_commits += 1;
        self.last_error = error.to_string();
        if let Some(count) = self.commit_failed.hit() {
            tracing::error!(
                error = %error,
                count,
                batch,
                writes_refused = self.refused,
                retry_in_ms = self.backoff.as_millis() as u64,
                "ledger commit failed, batch undone, writes refused until the storage recovers"
            );
        }
    }

    pub(super) fn succeeded(&mut self) {
        if let Some(since) = self.down_since.take() {
            if let Some(count) = self.recovered.hit() {
                tracing::warn!(
                    count,
                    down_ms = since.elapsed().as_millis() as u64,
                    failed_commits = self.failed_commits,
                    writes_refused = self.refused,
                    "ledger storage recovered"
                );
            }
        }
        self.retry_at = None;
        self.backoff = BACKOFF_MIN;
        self.failed_commits = 0;
        self.refused = 0;
    }
}
