//! The voucher ledger, with payment-authorisation semantics.
//!
//! - **Authorise** ([`Ledger::reserve`]): issuing an offer reserves its face
//!   value against the campaign's budget of the (local) day. One atomic step
//!   also enforces one offer per session and campaign: a session that holds
//!   an offer gets it back (`AlreadyOffered`).
//! - **Capture** ([`Ledger::redeem`]): a redemption turns the reserve into
//!   spend, exactly once.
//! - **Void** ([`Ledger::void_expired`]): an offer past its expiry releases
//!   its reserve.
//!
//! `remaining = cap - captured - reserved`, never below zero, for the day
//! cap and (when set) the campaign's lifetime cap. Reserve and capture are
//! booked on the day the offer was issued, so a redemption tomorrow never
//! takes today's budget over its cap.
//!
//! The bookkeeping lives in one place, [`LedgerCore`], a plain in-memory
//! state machine. [`MemoryLedger`] wraps it in a mutex (tests, simulation);
//! [`crate::ledger_sqlite::SqliteLedger`] (the embedded default) owns one on
//! a writer thread and persists every change in SQLite before answering.
//! [`crate::redis_backend::RedisLedger`] (several replicas) does the same
//! bookkeeping in Redis Lua scripts. All three run one conformance suite.

use crate::voucher::{self, VoucherKey};
use async_trait::async_trait;
use chrono::{Datelike, TimeZone};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Mutex;

/// An offer as the visitor sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Offer {
    pub voucher_code: String,
    pub amount_cents: i64,
    pub expires_at_ms: i64,
}

/// One atomic reservation attempt.
#[derive(Clone, Copy, Debug)]
pub struct ReserveRequest<'a> {
    pub campaign: &'a str,
    pub session_id: &'a str,
    /// Amounts in order of preference; the first that fits is reserved.
    pub candidates: &'a [i64],
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

#[derive(Clone, Copy, Debug)]
pub struct RedeemRequest<'a> {
    /// Canonical code (see [`voucher::normalise`]); its MAC was verified.
    pub code: &'a str,
    pub session_id: &'a str,
    pub order_value_cents: i64,
    pub min_order_cents: i64,
    pub now_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RedeemOutcome {
    Accepted {
        discount_cents: i64,
    },
    /// Unknown code, or a code of another session.
    Invalid,
    Expired,
    AlreadyRedeemed,
    OrderBelowMinimum {
        min_order_cents: i64,
    },
}

/// A campaign's budget, validated by the config.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignBudget {
    pub daily_cap_cents: i64,
    /// Lifetime cap across days, if any.
    pub total_cap_cents: Option<i64>,
}

impl CampaignBudget {
    /// What can still be reserved: the day cap less the day's reserved and
    /// captured cents, bounded by the lifetime cap less the lifetime's,
    /// never below zero. The one budget rule of every ledger.
    pub fn remaining_cents(&self, day_committed: i64, total_committed: i64) -> i64 {
        let mut rem = self.daily_cap_cents - day_committed;
        if let Some(total_cap) = self.total_cap_cents {
            rem = rem.min(total_cap - total_committed);
        }
        rem.max(0)
    }
}

/// All campaigns and the time zone their days are counted in.
#[derive(Clone, Debug, PartialEq)]
pub struct Budgets {
    pub timezone: chrono_tz::Tz,
    pub campaigns: HashMap<String, CampaignBudget>,
}

impl Budgets {
    /// One campaign named `default` with a daily cap, days in UTC.
    pub fn single(daily_cap_cents: i64) -> Self {
        Budgets {
            timezone: chrono_tz::UTC,
            campaigns: HashMap::from([(
                DEFAULT_CAMPAIGN.to_owned(),
                CampaignBudget {
                    daily_cap_cents,
                    total_cap_cents: None,
                },
            )]),
        }
    }

    /// The local calendar day of `now_ms`, as `YYYY-MM-DD`.
    pub fn day_of(&self, now_ms: i64) -> String {
        let t = self.local(now_ms);
        format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())
    }

    /// Share of the local day elapsed at `now_ms`, in [0, 1) (23- and 25-hour
    /// days of a DST change count as whole days).
    pub fn day_fraction(&self, now_ms: i64) -> f64 {
        let t = self.local(now_ms);
        let start = self
            .timezone
            .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
            .earliest();
        let next = t.date_naive().succ_opt().and_then(|d| {
            self.timezone
                .with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0)
                .earliest()
        });
        match (start, next) {
            (Some(s), Some(n)) => {
                let len = (n.timestamp_millis() - s.timestamp_millis()) as f64;
                ((now_ms - s.timestamp_millis()) as f64 / len).clamp(0.0, 1.0)
            }
            _ => (now_ms.rem_euclid(MS_PER_DAY)) as f64 / MS_PER_DAY as f64,
        }
    }

    fn local(&self, now_ms: i64) -> chrono::DateTime<chrono_tz::Tz> {
        let utc = chrono::Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_default();
        utc.with_timezone(&self.timezone)
    }
}

pub const DEFAULT_CAMPAIGN: &str = "default";
pub const MS_PER_DAY: i64 = 86_400_000;

/// The budget as ops see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetSnapshot {
    pub campaign: String,
    /// Local day, `YYYY-MM-DD`.
    pub day: String,
    pub cap_cents: i64,
    pub reserved_cents: i64,
    pub captured_cents: i64,
    /// What can still be reserved today (also bounded by the lifetime cap).
    pub remaining_cents: i64,
    pub offers: u64,
    pub total_cap_cents: Option<i64>,
    pub total_reserved_cents: i64,
    pub total_captured_cents: i64,
}

/// A redeemed voucher (for the ROI report).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Captured {
    pub campaign: String,
    pub session_id: String,
    pub amount_cents: i64,
    pub captured_ms: i64,
}

/// The label of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub session_id: String,
    pub converted: bool,
    pub order_value_cents: i64,
    pub at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger unavailable: {0}")]
    Unavailable(String),
    #[error("unknown campaign {0:?}")]
    UnknownCampaign(String),
}

#[async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Authorise: see the module docs. Never reserves beyond a cap.
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError>;
    /// The session's offer in a campaign, if any.
    async fn offer_for(
        &self,
        campaign: &str,
        session_id: &str,
    ) -> Result<Option<Offer>, LedgerError>;
    /// Capture, exactly once.
    async fn redeem(&self, req: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError>;
    /// Void every reserved offer whose expiry is at or before `now_ms`;
    /// returns how many.
    async fn void_expired(&self, now_ms: i64) -> Result<u64, LedgerError>;
    /// Today's budget of a campaign.
    async fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError>;
    /// Records a session's outcome; idempotent. Returns true when it was new
    /// or changed (so callers log it once).
    async fn record_outcome(&self, outcome: Outcome) -> Result<bool, LedgerError>;
    /// Redemptions captured at or after `since_ms`.
    async fn captured(&self, since_ms: i64) -> Result<Vec<Captured>, LedgerError>;
    /// Outcomes recorded at or after `since_ms`.
    async fn outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError>;
}

/// State of one offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum OfferState {
    Reserved,
    Captured,
    Voided,
}

impl OfferState {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferState::Reserved => "reserved",
            OfferState::Captured => "captured",
            OfferState::Voided => "voided",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reserved" => Some(OfferState::Reserved),
            "captured" => Some(OfferState::Captured),
            "voided" => Some(OfferState::Voided),
            _ => None,
        }
    }
}

/// One row of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OfferRow {
    pub code: String,
    pub campaign: String,
    pub session_id: String,
    /// Local day the offer was issued (its budget day).
    pub day: String,
    pub amount_cents: i64,
    pub issued_ms: i64,
    pub expires_ms: i64,
    pub state: OfferState,
    pub settled_ms: Option<i64>,
    pub order_value_cents: Option<i64>,
}

impl OfferRow {
    pub fn offer(&self) -> Offer {
        Offer {
            voucher_code: self.code.clone(),
            amount_cents: self.amount_cents,
            expires_at_ms: self.expires_ms,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    reserved: i64,
    captured: i64,
    offers: u64,
}

/// A change the core made, for a durable backend to persist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Insert(OfferRow),
    Update(OfferRow),
}

/// The in-memory bookkeeping shared by every ledger implementation.
pub struct LedgerCore {
    budgets: Budgets,
    key: VoucherKey,
    offers: HashMap<String, OfferRow>,
    by_session: HashMap<(String, String), String>,
    day: HashMap<(String, String), Totals>,
    total: HashMap<String, Totals>,
}

/// How many nonces to try before giving up on a code collision (each try
/// collides with probability offers-per-hour / 2^20).
const MINT_TRIES: usize = 16;

impl LedgerCore {
    pub fn new(budgets: Budgets, key: VoucherKey) -> Self {
        LedgerCore {
            budgets,
            key,
            offers: HashMap::new(),
            by_session: HashMap::new(),
            day: HashMap::new(),
            total: HashMap::new(),
        }
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Rebuilds the state from persisted rows (restart).
    pub fn load(&mut self, rows: impl IntoIterator<Item = OfferRow>) {
        self.offers.clear();
        self.by_session.clear();
        self.day.clear();
        self.total.clear();
        for row in rows {
            self.book(&row, 1, true);
            self.by_session.insert(
                (row.campaign.clone(), row.session_id.clone()),
                row.code.clone(),
            );
            self.offers.insert(row.code.clone(), row);
        }
    }

    /// Adds (`sign = 1`) or removes (`-1`) a row's amount in its state's
    /// counters; `count` also counts it as an offer (new rows only).
    fn book(&mut self, row: &OfferRow, sign: i64, count: bool) {
        let d = self
            .day
            .entry((row.campaign.clone(), row.day.clone()))
            .or_default();
        let t = self.total.entry(row.campaign.clone()).or_default();
        for x in [d, t] {
            match row.state {
                OfferState::Reserved => x.reserved += sign * row.amount_cents,
                OfferState::Captured => x.captured += sign * row.amount_cents,
                OfferState::Voided => {}
            }
            if count {
                x.offers += 1;
            }
        }
    }

    fn remaining(&self, campaign: &str, day: &str) -> Result<i64, LedgerError> {
        let b = self
            .budgets
            .campaigns
            .get(campaign)
            .ok_or_else(|| LedgerError::UnknownCampaign(campaign.to_owned()))?;
        let d = self
            .day
            .get(&(campaign.to_owned(), day.to_owned()))
            .copied()
            .unwrap_or_default();
        let t = self.total.get(campaign).copied().unwrap_or_default();
        Ok(b.remaining_cents(d.reserved + d.captured, t.reserved + t.captured))
    }

    pub fn offer_for(&self, campaign: &str, session_id: &str) -> Option<Offer> {
        self.by_session
            .get(&(campaign.to_owned(), session_id.to_owned()))
            .and_then(|code| self.offers.get(code))
            .map(OfferRow::offer)
    }

    pub fn reserve(
        &mut self,
        req: &ReserveRequest<'_>,
    ) -> Result<(ReserveOutcome, Option<Effect>), LedgerError> {
        if let Some(o) = self.offer_for(req.campaign, req.session_id) {
            return Ok((ReserveOutcome::AlreadyOffered(o), None));
        }
        let day = self.budgets.day_of(req.now_ms);
        let remaining = self.remaining(req.campaign, &day)?;
        let Some(&amount) = req.candidates.iter().find(|a| **a > 0 && **a <= remaining) else {
            return Ok((
                ReserveOutcome::Exhausted {
                    remaining_cents: remaining,
                },
                None,
            ));
        };
        let mut code = None;
        for _ in 0..MINT_TRIES {
            let nonce = rand::random::<u32>();
            let c = voucher::mint(&self.key, req.session_id, amount, req.expires_at_ms, nonce)
                .map_err(|e| LedgerError::Unavailable(format!("cannot mint a code: {e}")))?;
            if !self.offers.contains_key(&c) {
                code = Some(c);
                break;
            }
        }
        let code =
            code.ok_or_else(|| LedgerError::Unavailable("voucher code space exhausted".into()))?;
        let row = OfferRow {
            code: code.clone(),
            campaign: req.campaign.to_owned(),
            session_id: req.session_id.to_owned(),
            day,
            amount_cents: amount,
            issued_ms: req.now_ms,
            expires_ms: req.expires_at_ms,
            state: OfferState::Reserved,
            settled_ms: None,
            order_value_cents: None,
        };
        self.book(&row, 1, true);
        self.by_session
            .insert((row.campaign.clone(), row.session_id.clone()), code.clone());
        self.offers.insert(code, row.clone());
        debug_assert!(self.invariant_holds());
        Ok((
            ReserveOutcome::Reserved(row.offer()),
            Some(Effect::Insert(row)),
        ))
    }

    fn transition(
        &mut self,
        code: &str,
        state: OfferState,
        now_ms: i64,
        order: Option<i64>,
    ) -> Effect {
        let mut row = self.offers.get(code).cloned().expect("known code");
        // Move the amount from the old state's counter to the new one's (the
        // offer count is unchanged).
        self.book(&row, -1, false);
        row.state = state;
        row.settled_ms = Some(now_ms);
        row.order_value_cents = order;
        self.book(&row, 1, false);
        self.offers.insert(code.to_owned(), row.clone());
        Effect::Update(row)
    }

    pub fn redeem(&mut self, req: &RedeemRequest<'_>) -> (RedeemOutcome, Option<Effect>) {
        let Some(row) = self.offers.get(req.code) else {
            return (RedeemOutcome::Invalid, None);
        };
        if row.session_id != req.session_id {
            return (RedeemOutcome::Invalid, None);
        }
        match row.state {
            OfferState::Captured => return (RedeemOutcome::AlreadyRedeemed, None),
            OfferState::Voided => return (RedeemOutcome::Expired, None),
            OfferState::Reserved => {}
        }
        if row.expires_ms <= req.now_ms {
            let eff = self.transition(req.code, OfferState::Voided, req.now_ms, None);
            return (RedeemOutcome::Expired, Some(eff));
        }
        if req.order_value_cents < req.min_order_cents {
            return (
                RedeemOutcome::OrderBelowMinimum {
                    min_order_cents: req.min_order_cents,
                },
                None,
            );
        }
        let discount_cents = row.amount_cents;
        let eff = self.transition(
            req.code,
            OfferState::Captured,
            req.now_ms,
            Some(req.order_value_cents),
        );
        debug_assert!(self.invariant_holds());
        (RedeemOutcome::Accepted { discount_cents }, Some(eff))
    }

    pub fn void_expired(&mut self, now_ms: i64) -> Vec<Effect> {
        let expired: Vec<String> = self
            .offers
            .values()
            .filter(|r| r.state == OfferState::Reserved && r.expires_ms <= now_ms)
            .map(|r| r.code.clone())
            .collect();
        expired
            .into_iter()
            .map(|code| self.transition(&code, OfferState::Voided, now_ms, None))
            .collect()
    }

    pub fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError> {
        let b = self
            .budgets
            .campaigns
            .get(campaign)
            .ok_or_else(|| LedgerError::UnknownCampaign(campaign.to_owned()))?;
        let day = self.budgets.day_of(now_ms);
        let d = self
            .day
            .get(&(campaign.to_owned(), day.clone()))
            .copied()
            .unwrap_or_default();
        let t = self.total.get(campaign).copied().unwrap_or_default();
        Ok(BudgetSnapshot {
            campaign: campaign.to_owned(),
            remaining_cents: self.remaining(campaign, &day)?,
            day,
            cap_cents: b.daily_cap_cents,
            reserved_cents: d.reserved,
            captured_cents: d.captured,
            offers: d.offers,
            total_cap_cents: b.total_cap_cents,
            total_reserved_cents: t.reserved,
            total_captured_cents: t.captured,
        })
    }

    pub fn captured(&self, since_ms: i64) -> Vec<Captured> {
        let mut v: Vec<Captured> = self
            .offers
            .values()
            .filter(|r| r.state == OfferState::Captured && r.settled_ms.unwrap_or(0) >= since_ms)
            .map(|r| Captured {
                campaign: r.campaign.clone(),
                session_id: r.session_id.clone(),
                amount_cents: r.amount_cents,
                captured_ms: r.settled_ms.unwrap_or(0),
            })
            .collect();
        v.sort_by(|a, b| (a.captured_ms, &a.session_id).cmp(&(b.captured_ms, &b.session_id)));
        v
    }

    /// Every row (for audits and tests).
    pub fn rows(&self) -> Vec<OfferRow> {
        let mut v: Vec<OfferRow> = self.offers.values().cloned().collect();
        v.sort_by(|a, b| (a.issued_ms, &a.code).cmp(&(b.issued_ms, &b.code)));
        v
    }

    /// captured + reserved <= cap for every campaign day (and lifetime), and
    /// the counters equal the sums over the rows.
    pub fn invariant_holds(&self) -> bool {
        let mut sums: HashMap<(String, String), (i64, i64)> = HashMap::new();
        for r in self.offers.values() {
            let e = sums.entry((r.campaign.clone(), r.day.clone())).or_default();
            match r.state {
                OfferState::Reserved => e.0 += r.amount_cents,
                OfferState::Captured => e.1 += r.amount_cents,
                OfferState::Voided => {}
            }
        }
        for ((campaign, day), (res, cap)) in &sums {
            let t = self
                .day
                .get(&(campaign.clone(), day.clone()))
                .copied()
                .unwrap_or_default();
            if (t.reserved, t.captured) != (*res, *cap) {
                return false;
            }
            if let Some(b) = self.budgets.campaigns.get(campaign) {
                if res + cap > b.daily_cap_cents {
                    return false;
                }
            }
        }
        for (campaign, t) in &self.total {
            if let Some(total) = self
                .budgets
                .campaigns
                .get(campaign)
                .and_then(|b| b.total_cap_cents)
            {
                if t.reserved + t.captured > total {
                    return false;
                }
            }
        }
        true
    }
}

/// In-memory ledger: the core behind a mutex, held only for the in-memory
/// step (never across an `.await`).
pub struct MemoryLedger {
    core: Mutex<LedgerCore>,
    outcomes: Mutex<HashMap<String, Outcome>>,
}

impl MemoryLedger {
    pub fn new(budgets: Budgets, key: VoucherKey) -> Self {
        MemoryLedger {
            core: Mutex::new(LedgerCore::new(budgets, key)),
            outcomes: Mutex::new(HashMap::new()),
        }
    }

    /// A single `default` campaign with a daily cap and a random key.
    pub fn with_daily_cap(cap_cents: i64) -> Self {
        Self::new(Budgets::single(cap_cents), VoucherKey::random())
    }

    fn core(&self) -> Result<std::sync::MutexGuard<'_, LedgerCore>, LedgerError> {
        self.core
            .lock()
            .map_err(|_| LedgerError::Unavailable("ledger lock poisoned".into()))
    }

    pub fn rows(&self) -> Result<Vec<OfferRow>, LedgerError> {
        Ok(self.core()?.rows())
    }
}

/// What makes two outcomes of a session the same (`converted:order`); a
/// repeat with the same key is not a change.
pub fn upsert_outcome_key(o: &Outcome) -> String {
    format!("{}:{}", u8::from(o.converted), o.order_value_cents)
}

/// Applies an outcome to a map; true when new or changed.
pub fn upsert_outcome(map: &mut HashMap<String, Outcome>, o: Outcome) -> bool {
    match map.get(&o.session_id) {
        Some(old)
            if old.converted == o.converted && old.order_value_cents == o.order_value_cents =>
        {
            false
        }
        _ => {
            map.insert(o.session_id.clone(), o);
            true
        }
    }
}

#[async_trait]
impl Ledger for MemoryLedger {
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError> {
        Ok(self.core()?.reserve(&req)?.0)
    }

    async fn offer_for(
        &self,
        campaign: &str,
        session_id: &str,
    ) -> Result<Option<Offer>, LedgerError> {
        Ok(self.core()?.offer_for(campaign, session_id))
    }

    async fn redeem(&self, req: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError> {
        Ok(self.core()?.redeem(&req).0)
    }

    async fn void_expired(&self, now_ms: i64) -> Result<u64, LedgerError> {
        Ok(self.core()?.void_expired(now_ms).len() as u64)
    }

    async fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError> {
        self.core()?.snapshot(campaign, now_ms)
    }

    async fn record_outcome(&self, outcome: Outcome) -> Result<bool, LedgerError> {
        let mut map = self
            .outcomes
            .lock()
            .map_err(|_| LedgerError::Unavailable("outcome lock poisoned".into()))?;
        Ok(upsert_outcome(&mut map, outcome))
    }

    async fn captured(&self, since_ms: i64) -> Result<Vec<Captured>, LedgerError> {
        Ok(self.core()?.captured(since_ms))
    }

    async fn outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError> {
        let map = self
            .outcomes
            .lock()
            .map_err(|_| LedgerError::Unavailable("outcome lock poisoned".into()))?;
        let mut v: Vec<Outcome> = map
            .values()
            .filter(|o| o.at_ms >= since_ms)
            .cloned()
            .collect();
        v.sort_by(|a, b| (a.at_ms, &a.session_id).cmp(&(b.at_ms, &b.session_id)));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_follow_the_configured_time_zone() {
        let mut b = Budgets::single(100);
        // 2026-11-22T23:30:00Z is already the 23rd in Berlin (UTC+1).
        let t = 1_795_390_200_000;
        assert_eq!(b.day_of(t), "2026-11-22");
        b.timezone = chrono_tz::Europe::Berlin;
        assert_eq!(b.day_of(t), "2026-11-23");
        assert!((b.day_fraction(t) - 0.5 / 24.0).abs() < 1e-9);
        // DST change day (2026-03-29 in Berlin has 23 hours): noon local is
        // 11/23 of the day.
        let noon_local = 1_774_778_400_000; // 2026-03-29T10:00:00Z = 12:00 CEST
        assert!((b.day_fraction(noon_local) - 11.0 / 23.0).abs() < 1e-9);
    }
}
