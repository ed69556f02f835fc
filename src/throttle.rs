//! Repeating errors are logged once per interval with a count, not once per
//! request: a full disk or a flood would otherwise write a line per record
//! and bury the one line an operator needs. Also: background writer threads
//! log under the subscriber of whoever started them ([`current_dispatch`],
//! [`with_dispatch`]).
//!
//! ```
//! use nudge::throttle::LogThrottle;
//! use std::time::Duration;
//! static WRITE_FAILED: LogThrottle = LogThrottle::new(Duration::from_secs(10));
//! if let Some(count) = WRITE_FAILED.hit() {
//!     tracing::error!(count, "decision log write failed");
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts occurrences and says when one line should be written.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    /// When the last line was written, and occurrences counted since then.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence. Returns `Some(count)` when a line is due: the
    /// first occurrence, then at most once per interval; `count` is how many
    /// occurrences the line stands for (this one included).
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1 += 1;
        let due = match state.0 {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.interval,
        };
        if due {
            let count = state.1;
            *state = (Some(now), 0);
            Some(count)
        } else {
            None
        }
    }

    /// Occurrences counted since the last line (0 when none are pending).
    pub fn pending(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Runs `body` (a background writer thread's loop) under the subscriber
/// that was current where `dispatch` was captured with [`current_dispatch`],
/// so a writer logs where its starter logs (a test's scoped subscriber
/// included); with none captured, under the global one.
pub fn with_dispatch<T>(dispatch: &Option<tracing::Dispatch>, body: impl FnOnce() -> T) -> T {
    match dispatch {
        Some(d) => tracing::dispatcher::with_default(d, body),
        None => body(),
    }
}

/// The current subscriber, unless there is none yet (then a thread started
/// now follows the global one, even if it is set later).
pub fn current_dispatch() -> Option<tracing::Dispatch> {
    tracing::dispatcher::get_default(|d| {
        (!d.is::<tracing::subscriber::NoSubscriber>()).then(|| d.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_hit_logs_then_once_per_interval_with_the_count() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.hit_at(t0), Some(1));
        for i in 1..=99 {
            assert_eq!(t.hit_at(t0 + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(t.pending(), 99);
        assert_eq!(t.hit_at(t0 + Duration::from_secs(10)), Some(100));
        assert_eq!(t.pending(), 0);
        assert_eq!(t.hit_at(t0 + Duration::from_secs(11)), None);
    }
}
