//! The voucher budget: reserving a voucher's face value is atomic and never
//! takes the day's total over the cap.
//!
//! The trait is shaped like a payment authorisation so that the durable
//! ledger (SQLite, Redis) can implement it without changing callers:
//! - [`Ledger::reserve`] is one atomic step that (a) returns the session's
//!   existing offer if it has one (at most one offer per session), else (b)
//!   reserves the first candidate amount that still fits under the cap and
//!   records the offer. Taking the whole candidate list in one call lets a
//!   Redis implementation do it in one Lua script and a SQL one in one
//!   transaction.
//! - Capture (redemption) and void (expiry) come with the durable ledger; the
//!   in-memory version counts every reservation as spent for the day, which
//!   errs on the side of never overspending.
//!
//! Days are UTC calendar days of the injected clock; the cap resets at
//! midnight. The in-memory ledger holds one mutex for the whole check-and-
//! reserve and never across an `.await`.

use async_trait::async_trait;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

pub const MS_PER_DAY: i64 = 86_400_000;

/// An offer as the visitor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub voucher_code: String,
    pub amount_cents: i64,
    pub expires_at_ms: i64,
}

/// One atomic reservation attempt.
#[derive(Clone, Debug)]
pub struct ReserveRequest<'a> {
    pub session_id: &'a str,
    /// Amounts in order of preference; the first that fits is reserved.
    pub candidates: &'a [i64],
    pub voucher_code: String,
    pub now_ms: i64,
    pub expires_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved(Offer),
    /// The session already holds this offer; nothing new was reserved.
    AlreadyOffered(Offer),
    /// No candidate fits under the remaining budget.
    Exhausted {
        remaining_cents: i64,
    },
}

/// The budget as ops see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetSnapshot {
    /// UTC day number (days since the epoch).
    pub day: i64,
    pub cap_cents: i64,
    pub reserved_cents: i64,
    pub remaining_cents: i64,
    pub offers: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// See the module docs. Never reserves more than the cap.
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError>;
    /// The session's offer, if any.
    async fn offer_for(&self, session_id: &str) -> Result<Option<Offer>, LedgerError>;
    /// Today's budget (for `now_ms`).
    async fn snapshot(&self, now_ms: i64) -> Result<BudgetSnapshot, LedgerError>;
}

#[derive(Default)]
struct DayState {
    day: i64,
    reserved_cents: i64,
    offers_today: u64,
}

/// In-memory ledger for one process (the embedded default of this version).
pub struct MemoryLedger {
    cap_cents: i64,
    inner: Mutex<(DayState, HashMap<String, Offer>)>,
}

impl MemoryLedger {
    /// `cap_cents` is the daily cap (validated >= 0 by the config).
    pub fn new(cap_cents: i64) -> Self {
        MemoryLedger {
            cap_cents,
            inner: Mutex::new((DayState::default(), HashMap::new())),
        }
    }

    fn roll(&self, day_state: &mut DayState, offers: &mut HashMap<String, Offer>, now_ms: i64) {
        let day = now_ms.div_euclid(MS_PER_DAY);
        if day != day_state.day {
            *day_state = DayState {
                day,
                ..DayState::default()
            };
            // Keep only offers still valid: they bind their session.
            offers.retain(|_, o| o.expires_at_ms > now_ms);
        }
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Unavailable("ledger lock poisoned".into()))?;
        let (day, offers) = &mut *guard;
        self.roll(day, offers, req.now_ms);
        if let Some(o) = offers.get(req.session_id) {
            return Ok(ReserveOutcome::AlreadyOffered(o.clone()));
        }
        let remaining = self.cap_cents - day.reserved_cents;
        let Some(&amount) = req.candidates.iter().find(|a| **a > 0 && **a <= remaining) else {
            return Ok(ReserveOutcome::Exhausted {
                remaining_cents: remaining,
            });
        };
        day.reserved_cents += amount;
        day.offers_today += 1;
        debug_assert!(day.reserved_cents <= self.cap_cents);
        let offer = Offer {
            voucher_code: req.voucher_code,
            amount_cents: amount,
            expires_at_ms: req.expires_at_ms,
        };
        offers.insert(req.session_id.to_owned(), offer.clone());
        Ok(ReserveOutcome::Reserved(offer))
    }

    async fn offer_for(&self, session_id: &str) -> Result<Option<Offer>, LedgerError> {
        let guard = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Unavailable("ledger lock poisoned".into()))?;
        Ok(guard.1.get(session_id).cloned())
    }

    async fn snapshot(&self, now_ms: i64) -> Result<BudgetSnapshot, LedgerError> {
        let mut guard = self
            .inner
            .lock()
            .map_err(|_| LedgerError::Unavailable("ledger lock poisoned".into()))?;
        let (day, offers) = &mut *guard;
        self.roll(day, offers, now_ms);
        Ok(BudgetSnapshot {
            day: day.day,
            cap_cents: self.cap_cents,
            reserved_cents: day.reserved_cents,
            remaining_cents: self.cap_cents - day.reserved_cents,
            offers: day.offers_today,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(session: &'a str, candidates: &'a [i64], now_ms: i64) -> ReserveRequest<'a> {
        ReserveRequest {
            session_id: session,
            candidates,
            voucher_code: format!("C-{session}"),
            now_ms,
            expires_at_ms: now_ms + MS_PER_DAY * 2,
        }
    }

    #[tokio::test]
    async fn reserves_first_fitting_candidate_and_never_exceeds_cap() {
        let l = MemoryLedger::new(1_500);
        let r = l.reserve(req("a", &[1_000, 500], 0)).await.unwrap();
        assert!(matches!(r, ReserveOutcome::Reserved(ref o) if o.amount_cents == 1_000));
        let r = l.reserve(req("b", &[1_000, 500], 0)).await.unwrap();
        assert!(matches!(r, ReserveOutcome::Reserved(ref o) if o.amount_cents == 500));
        let r = l.reserve(req("c", &[500], 0)).await.unwrap();
        assert_eq!(r, ReserveOutcome::Exhausted { remaining_cents: 0 });
        let again = l.reserve(req("a", &[500], 0)).await.unwrap();
        assert!(
            matches!(again, ReserveOutcome::AlreadyOffered(ref o) if o.amount_cents == 1_000 && o.voucher_code == "C-a")
        );
    }

    #[tokio::test]
    async fn cap_resets_at_utc_midnight_but_offers_still_bind_sessions() {
        let l = MemoryLedger::new(500);
        l.reserve(req("a", &[500], MS_PER_DAY - 1)).await.unwrap();
        let s = l.snapshot(MS_PER_DAY - 1).await.unwrap();
        assert_eq!(s.remaining_cents, 0);
        let next = l.reserve(req("b", &[500], MS_PER_DAY)).await.unwrap();
        assert!(matches!(next, ReserveOutcome::Reserved(_)));
        let a = l.reserve(req("a", &[500], MS_PER_DAY)).await.unwrap();
        assert!(matches!(a, ReserveOutcome::AlreadyOffered(_)));
    }
}
