//! The ROI report as the engine serves it: the decision log folded into
//! the report's per-session state ([`crate::report::sessions`]), reading
//! only the bytes appended since the previous pass, joined to the ledger's
//! outcomes and captures.
//!
//! Concurrent calls share one pass (single flight); a pass's answer is
//! served again for `report_refresh` (`[log] report_refresh_ms`), so a
//! report is at most that stale, and however many callers ask, at most one
//! pass runs at a time. The fold runs on a blocking thread, never on the
//! request path's threads.

use crate::engine::error::ServiceError;
use crate::engine::Engine;
use crate::report::sessions::SessionFold;
use crate::report::{Captured, RoiReport};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A report, its JSON and its table.
pub type ReportAnswer = Arc<(RoiReport, String, String)>;

type Flight = watch::Receiver<Option<Result<ReportAnswer, ServiceError>>>;

/// Answers kept for reuse, one per `since_ms` asked most recently.
const KEPT_ANSWERS: usize = 8;

/// Reports are answered at most once per this interval (20 a second):
/// callers beyond it wait their turn. An answer is a large message, and
/// callers asking back to back would otherwise take the CPU Decide needs;
/// a dashboard polls every few seconds. With at most 16 Report calls in
/// flight (the transport's report pool) a turn comes within 0.8 s.
pub const REPORT_SPACING: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Slot {
    /// The pass running, and the `since_ms` it answers.
    flight: Option<(i64, Flight)>,
    /// Recent answers: `since_ms`, when their pass began, the answer.
    answers: VecDeque<(i64, Instant, ReportAnswer)>,
    /// When the next answer may go out ([`REPORT_SPACING`]).
    next_turn: Option<Instant>,
}

/// The report's maintained state and its single flight.
pub struct ReportState {
    slot: Mutex<Slot>,
    /// Only ever locked on a blocking thread, never across `.await`.
    fold: Arc<Mutex<SessionFold>>,
    refresh: Duration,
    max_sessions: usize,
    passes: AtomicU64,
    last_pass_bytes: AtomicU64,
}

impl ReportState {
    /// `refresh`: how long an answer is served again; `max_sessions`: the
    /// sessions the state keeps at most.
    pub fn new(refresh: Duration, max_sessions: usize) -> Self {
        ReportState {
            slot: Mutex::default(),
            fold: Arc::new(Mutex::new(SessionFold::new(max_sessions))),
            refresh,
            max_sessions,
            passes: AtomicU64::new(0),
            last_pass_bytes: AtomicU64::new(0),
        }
    }

    /// Passes over the log so far.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Log bytes the latest pass read.
    pub fn last_pass_bytes(&self) -> u64 {
        self.last_pass_bytes.load(Ordering::Relaxed)
    }

    /// Log bytes read so far (the state's, since it last started over).
    /// Waits for a running pass (blocking): for tests and diagnostics.
    pub fn bytes_read(&self) -> u64 {
        self.lock_fold().bytes_read()
    }

    /// Sessions the state keeps. Waits for a running pass (blocking).
    pub fn sessions(&self) -> usize {
        self.lock_fold().sessions()
    }

    fn lock_fold(&self) -> std::sync::MutexGuard<'_, SessionFold> {
        lock_or_reset(&self.fold, self.max_sessions)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        // The slot holds no invariant a panic could break half-way.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A fold left by a panicking pass may be half-updated: start it over.
fn lock_or_reset(
    fold: &Mutex<SessionFold>,
    max_sessions: usize,
) -> std::sync::MutexGuard<'_, SessionFold> {
    fold.lock().unwrap_or_else(|poisoned| {
        fold.clear_poison();
        let mut g = poisoned.into_inner();
        *g = SessionFold::new(max_sessions);
        g
    })
}

impl Engine {
    /// The ROI report over the decision log and the ledger's outcomes and
    /// captures, at most `[log] report_refresh_ms` stale. Returns (report,
    /// JSON, table).
    pub async fn report(&self, since_ms: i64) -> Result<ReportAnswer, ServiceError> {
        let Some(dir) = self.log.dir().map(std::path::Path::to_owned) else {
            return Err(ServiceError::FailedPrecondition(
                "the decision log is disabled ([log] enabled = false): no report".into(),
            ));
        };
        let state = &self.report_state;
        let wait = {
            let mut slot = state.slot();
            let now = Instant::now();
            let turn = slot.next_turn.map_or(now, |t| t.max(now));
            slot.next_turn = Some(turn + REPORT_SPACING);
            turn - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        loop {
            let (mine, mut flight) = {
                let mut slot = state.slot();
                if let Some((_, _, a)) = slot
                    .answers
                    .iter()
                    .find(|(s, at, _)| *s == since_ms && at.elapsed() < state.refresh)
                {
                    return Ok(a.clone());
                }
                match &slot.flight {
                    Some((s, rx)) => (*s == since_ms, rx.clone()),
                    None => {
                        let rx = self.start_pass(dir.clone(), since_ms);
                        slot.flight = Some((since_ms, rx.clone()));
                        (true, rx)
                    }
                }
            };
            let result = flight
                .wait_for(Option::is_some)
                .await
                .map_err(|_| ServiceError::Internal("the report pass stopped".into()))?
                .clone()
                .expect("waited for an answer");
            if mine {
                return result;
            }
            // A pass for another window ran: ask again.
        }
    }

    /// Starts one pass in the background: it finishes (and frees the slot)
    /// even if every caller went away.
    fn start_pass(&self, dir: std::path::PathBuf, since_ms: i64) -> Flight {
        let (tx, rx) = watch::channel(None);
        let state = self.report_state.clone();
        let log = self.log.clone();
        let ledger = self.ledger.clone();
        let margin_rate = self.base.load().policy.margin_rate;
        tokio::spawn(async move {
            // Frees the slot however the pass ends (a panic included), so a
            // failed pass never leaves every later Report waiting on it.
            let mut free = FreeSlot(Some(state.clone()));
            let began = Instant::now();
            let result = pass(&state, log, ledger, dir, margin_rate, since_ms).await;
            {
                let mut slot = state.slot();
                slot.flight = None;
                free.0 = None;
                if let Ok(a) = &result {
                    slot.answers.retain(|(s, _, _)| *s != since_ms);
                    if slot.answers.len() >= KEPT_ANSWERS {
                        slot.answers.pop_front();
                    }
                    slot.answers.push_back((since_ms, began, a.clone()));
                }
            }
            let _ = tx.send(Some(result));
        });
        rx
    }
}

/// Clears the running pass from the slot when dropped still armed (the
/// pass did not reach its end).
struct FreeSlot(Option<Arc<ReportState>>);

impl Drop for FreeSlot {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            state.slot().flight = None;
        }
    }
}

/// One pass: flush the log, read the ledger's outcomes and captures, fold
/// the log's new bytes and compute the report, off the async threads.
async fn pass(
    state: &Arc<ReportState>,
    log: crate::decision_log::writer::DecisionLog,
    ledger: Arc<dyn crate::ledger::Ledger>,
    dir: std::path::PathBuf,
    margin_rate: f64,
    since_ms: i64,
) -> Result<ReportAnswer, ServiceError> {
    log.flush().await;
    let outcomes = ledger
        .outcomes(0)
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
    let captured: Vec<Captured> = ledger
        .captured(0)
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))?
        .into_iter()
        .map(|c| Captured {
            campaign: c.campaign,
            session_id: c.session_id,
            amount_cents: c.amount_cents,
            learning: c.learning,
        })
        .collect();
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let latest = crate::report::latest_outcomes(outcomes.iter().map(|o| {
            (
                o.session_id.as_str(),
                o.at_ms,
                o.converted,
                o.order_value_cents,
            )
        }));
        let report = {
            let mut fold = lock_or_reset(&state.fold, state.max_sessions);
            state.passes.fetch_add(1, Ordering::Relaxed);
            let done = fold
                .pass(&dir)
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            state.last_pass_bytes.store(done.bytes, Ordering::Relaxed);
            fold.report(
                &latest,
                &captured,
                margin_rate,
                (since_ms > 0).then_some(since_ms),
            )
        };
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let table = crate::report::render_table(&report);
        Ok(Arc::new((report, json, table)))
    })
    .await
    .map_err(|e| ServiceError::Internal(e.to_string()))?
}
