//! The bookkeeping, in one place: a plain in-memory state machine over
//! offers and outcomes that the memory and SQLite ledgers wrap (and the
//! Redis scripts mirror).
//!
//! Caps may change at run time ([`LedgerCore::set_budget`]). A lowered cap
//! can leave a day's spend above it, legitimately (no offer is cancelled),
//! so the invariant checks each day against the higher of its cap and the
//! spend it had when the cap last changed (or when the state was loaded):
//! what matters is that no reservation after the change goes over the cap.

use super::{
    day_range, BudgetSnapshot, Budgets, CampaignBudget, Captured, DaySpend, LedgerError, Offer,
    Outcome, RedeemOutcome, RedeemRequest, ReserveOutcome, ReserveRequest, REDEEM_REPLAY_MS,
};
use crate::domain::voucher::{self, VoucherKey};
use serde::Serialize;
use std::collections::HashMap;

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
    /// Paid from the learning budget (an exploration voucher).
    pub learning: bool,
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
    /// The learning part of `reserved` and `captured`.
    learning_reserved: i64,
    learning_captured: i64,
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
    /// The revision of each campaign's caps in force (absent: 0, the
    /// configured caps).
    revisions: HashMap<String, u64>,
    /// Spend a day (main, learning) or a lifetime already had when its cap
    /// last changed or the state was loaded: the invariant's allowance over
    /// a cap lowered under it.
    day_allowance: HashMap<(String, String), (i64, i64)>,
    total_allowance: HashMap<String, i64>,
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
            revisions: HashMap::new(),
            day_allowance: HashMap::new(),
            total_allowance: HashMap::new(),
        }
    }

    /// Adds or replaces a campaign's caps (see `Ledger::set_budget`), unless
    /// `revision` is lower than the one in force (the configured caps are
    /// revision 0); the same revision again applies again (idempotent).
    /// Returns whether it was applied. Offers are never touched: a cap
    /// lowered under the day's spend refuses the next reservation only.
    pub fn set_budget(&mut self, campaign: &str, budget: CampaignBudget, revision: u64) -> bool {
        if revision < self.revision(campaign) {
            return false;
        }
        self.revisions.insert(campaign.to_owned(), revision);
        self.budgets.campaigns.insert(campaign.to_owned(), budget);
        self.allow_current(Some(campaign));
        debug_assert!(self.invariant_holds());
        true
    }

    /// The revision of a campaign's caps in force (0: the configured ones).
    pub fn revision(&self, campaign: &str) -> u64 {
        self.revisions.get(campaign).copied().unwrap_or(0)
    }

    /// Records the current spend of a campaign's days and lifetime (or of
    /// every campaign) as legitimately there, whatever the caps now say.
    fn allow_current(&mut self, campaign: Option<&str>) {
        let wanted = |c: &str| campaign.is_none_or(|w| w == c);
        for (key, t) in &self.day {
            if wanted(&key.0) {
                let a = self.day_allowance.entry(key.clone()).or_default();
                a.0 = a.0.max(t.reserved + t.captured);
                a.1 = a.1.max(t.learning_reserved + t.learning_captured);
            }
        }
        for (c, t) in &self.total {
            if wanted(c) {
                let a = self.total_allowance.entry(c.clone()).or_default();
                *a = (*a).max(t.reserved + t.captured);
            }
        }
    }

    /// Spend per budget day of a campaign (see `Ledger::spend_by_day`):
    /// the days of `from_day..=to_day` with any offer, oldest first.
    pub fn spend_by_day(
        &self,
        campaign: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DaySpend>, LedgerError> {
        let days = day_range(from_day, to_day)?;
        if !self.budgets.campaigns.contains_key(campaign) {
            return Err(LedgerError::UnknownCampaign(campaign.to_owned()));
        }
        let mut key = (campaign.to_owned(), String::new());
        let mut v = Vec::new();
        for day in days {
            key.1 = day;
            if let Some(t) = self.day.get(&key).filter(|t| t.offers > 0) {
                v.push(DaySpend {
                    day: key.1.clone(),
                    reserved_cents: t.reserved,
                    captured_cents: t.captured,
                    offers: t.offers,
                    learning_reserved_cents: t.learning_reserved,
                    learning_captured_cents: t.learning_captured,
                });
            }
        }
        Ok(v)
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
            let key = (row.campaign.clone(), row.session_id.clone());
            // A session re-offered after a voided offer has several rows:
            // the live one (not voided) is its offer, else the latest
            // issued (a clock stepped back must not hide a live offer).
            let rank = |r: &OfferRow| (r.state != OfferState::Voided, r.issued_ms, r.code.clone());
            let newer = match self.by_session.get(&key).and_then(|c| self.offers.get(c)) {
                Some(held) => rank(&row) > rank(held),
                None => true,
            };
            if newer {
                self.by_session.insert(key, row.code.clone());
            }
            self.offers.insert(row.code.clone(), row);
        }
        // What was committed is there, whatever the caps now are (they may
        // have been lowered, or raised at run time and not applied yet).
        self.day_allowance.clear();
        self.total_allowance.clear();
        self.allow_current(None);
    }

    /// Reverts effects this core made that a durable backend could not
    /// persist, newest first, so that memory equals the disk again without
    /// reloading it. Every update is a transition out of `Reserved` (redeem,
    /// expiry), so its row goes back to reserved and unsettled; an insert is
    /// removed with its session's entry and its count.
    pub fn undo(&mut self, effects: &[Effect]) {
        for effect in effects.iter().rev() {
            match effect {
                Effect::Insert(row) => {
                    if let Some(r) = self.offers.remove(&row.code) {
                        self.book(&r, -1, true);
                        self.by_session
                            .remove(&(r.campaign.clone(), r.session_id.clone()));
                    }
                }
                Effect::Update(row) => {
                    if let Some(current) = self.offers.get(&row.code).cloned() {
                        self.book(&current, -1, false);
                        let back = OfferRow {
                            state: OfferState::Reserved,
                            settled_ms: None,
                            order_value_cents: None,
                            ..current
                        };
                        self.book(&back, 1, false);
                        // A void undone: the offer is its session's live
                        // one again (the newer offer's undo removed the key).
                        self.by_session
                            .entry((back.campaign.clone(), back.session_id.clone()))
                            .or_insert_with(|| back.code.clone());
                        self.offers.insert(back.code.clone(), back);
                    }
                }
            }
        }
        // A cap lowered while the undone batch was open may be below what
        // is back now, which the disk held all along.
        self.allow_current(None);
        debug_assert!(self.invariant_holds());
    }

    /// Adds (`sign = 1`) or removes (`-1`) a row's amount in its state's
    /// counters; `count` also counts (or uncounts) it as an offer.
    fn book(&mut self, row: &OfferRow, sign: i64, count: bool) {
        let d = self
            .day
            .entry((row.campaign.clone(), row.day.clone()))
            .or_default();
        let t = self.total.entry(row.campaign.clone()).or_default();
        let learning = if row.learning { 1 } else { 0 };
        for x in [d, t] {
            match row.state {
                OfferState::Reserved => {
                    x.reserved += sign * row.amount_cents;
                    x.learning_reserved += learning * sign * row.amount_cents;
                }
                OfferState::Captured => {
                    x.captured += sign * row.amount_cents;
                    x.learning_captured += learning * sign * row.amount_cents;
                }
                OfferState::Voided => {}
            }
            if count {
                x.offers = x.offers.saturating_add_signed(sign);
            }
        }
    }

    /// The main and the learning remainder of a campaign's day.
    fn remaining(&self, campaign: &str, day: &str) -> Result<(i64, i64), LedgerError> {
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
        let (day_committed, total_committed) = (d.reserved + d.captured, t.reserved + t.captured);
        Ok((
            b.remaining_cents(day_committed, total_committed),
            b.remaining_learning_cents(
                day_committed,
                total_committed,
                d.learning_reserved + d.learning_captured,
            ),
        ))
    }

    /// The session's offer, unless it was voided (a voided offer frees the
    /// session for a new one).
    pub fn offer_for(&self, campaign: &str, session_id: &str) -> Option<Offer> {
        self.session_row(campaign, session_id)
            .filter(|r| r.state != OfferState::Voided)
            .map(OfferRow::offer)
    }

    fn session_row(&self, campaign: &str, session_id: &str) -> Option<&OfferRow> {
        self.by_session
            .get(&(campaign.to_owned(), session_id.to_owned()))
            .and_then(|code| self.offers.get(code))
    }

    /// Reserves for a session that holds no live offer. A reserved offer
    /// past its expiry is voided first (its reserve released, once, as the
    /// sweeper would), so an expired offer never blocks a new one.
    pub fn reserve(
        &mut self,
        req: &ReserveRequest<'_>,
    ) -> Result<(ReserveOutcome, Vec<Effect>), LedgerError> {
        let mut effects = Vec::new();
        match self.reserve_steps(req, &mut effects) {
            Ok(outcome) => Ok((outcome, effects)),
            Err(e) => {
                // A void made before a later step failed is undone, so the
                // state stays what the disk holds.
                self.undo(&effects);
                Err(e)
            }
        }
    }

    fn reserve_steps(
        &mut self,
        req: &ReserveRequest<'_>,
        effects: &mut Vec<Effect>,
    ) -> Result<ReserveOutcome, LedgerError> {
        if let Some(row) = self.session_row(req.campaign, req.session_id).cloned() {
            match row.state {
                OfferState::Voided => {}
                OfferState::Reserved if row.expires_ms <= req.now_ms => {
                    effects.push(self.transition(&row.code, OfferState::Voided, req.now_ms, None));
                }
                OfferState::Reserved | OfferState::Captured => {
                    return Ok(ReserveOutcome::AlreadyOffered(row.offer()));
                }
            }
        }
        let day = self.budgets.day_of(req.now_ms);
        let (remaining, learning_remaining) = self.remaining(req.campaign, &day)?;
        let fits = if req.learning {
            learning_remaining
        } else {
            remaining
        };
        let Some(&amount) = req.candidates.iter().find(|a| **a > 0 && **a <= fits) else {
            let outcome = if req.learning {
                ReserveOutcome::LearningExhausted {
                    remaining_cents: remaining,
                    learning_remaining_cents: learning_remaining,
                }
            } else {
                ReserveOutcome::Exhausted {
                    remaining_cents: remaining,
                }
            };
            return Ok(outcome);
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
            learning: req.learning,
        };
        self.book(&row, 1, true);
        self.by_session
            .insert((row.campaign.clone(), row.session_id.clone()), code.clone());
        self.offers.insert(code, row.clone());
        debug_assert!(self.invariant_holds());
        let offer = row.offer();
        effects.push(Effect::Insert(row));
        Ok(ReserveOutcome::Reserved(offer))
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
            OfferState::Captured => {
                // A retry of the same redemption is answered again, once
                // captured (see `REDEEM_REPLAY_MS`).
                let replay = row.order_value_cents == Some(req.order_value_cents)
                    && row
                        .settled_ms
                        .is_some_and(|t| req.now_ms < t.saturating_add(REDEEM_REPLAY_MS));
                if replay {
                    return (
                        RedeemOutcome::Accepted {
                            discount_cents: row.amount_cents,
                            replayed: true,
                        },
                        None,
                    );
                }
                return (RedeemOutcome::AlreadyRedeemed, None);
            }
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
        (
            RedeemOutcome::Accepted {
                discount_cents,
                replayed: false,
            },
            Some(eff),
        )
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
        let (remaining_cents, learning_remaining_cents) = self.remaining(campaign, &day)?;
        Ok(BudgetSnapshot {
            campaign: campaign.to_owned(),
            remaining_cents,
            day,
            cap_cents: b.daily_cap_cents,
            reserved_cents: d.reserved,
            captured_cents: d.captured,
            offers: d.offers,
            total_cap_cents: b.total_cap_cents,
            total_reserved_cents: t.reserved,
            total_captured_cents: t.captured,
            learning_cap_cents: b.learning_cap_cents,
            learning_reserved_cents: d.learning_reserved,
            learning_captured_cents: d.learning_captured,
            learning_remaining_cents,
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
                learning: r.learning,
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

    /// captured + reserved <= cap for every campaign day (and lifetime),
    /// the learning part <= the learning cap for every day, and the
    /// counters equal the sums over the rows. A day whose cap was lowered
    /// under its spend may keep that spend (see the module docs), never
    /// more.
    pub fn invariant_holds(&self) -> bool {
        self.check(true)
    }

    /// Whether every day and lifetime is within its cap in force, with no
    /// allowance for a lowered cap (a warning at open: the caps given are
    /// below what the ledger already holds).
    pub fn within_caps(&self) -> bool {
        self.check(false)
    }

    fn check(&self, allowance: bool) -> bool {
        // (reserved, captured, learning reserved, learning captured)
        let mut sums: HashMap<(String, String), (i64, i64, i64, i64)> = HashMap::new();
        for r in self.offers.values() {
            let e = sums.entry((r.campaign.clone(), r.day.clone())).or_default();
            let learning = if r.learning { r.amount_cents } else { 0 };
            match r.state {
                OfferState::Reserved => {
                    e.0 += r.amount_cents;
                    e.2 += learning;
                }
                OfferState::Captured => {
                    e.1 += r.amount_cents;
                    e.3 += learning;
                }
                OfferState::Voided => {}
            }
        }
        for ((campaign, day), (res, cap, lres, lcap)) in &sums {
            let t = self
                .day
                .get(&(campaign.clone(), day.clone()))
                .copied()
                .unwrap_or_default();
            if (
                t.reserved,
                t.captured,
                t.learning_reserved,
                t.learning_captured,
            ) != (*res, *cap, *lres, *lcap)
            {
                return false;
            }
            if let Some(b) = self.budgets.campaigns.get(campaign) {
                let (allowed, learning_allowed) = match allowance {
                    true => self
                        .day_allowance
                        .get(&(campaign.clone(), day.clone()))
                        .copied()
                        .unwrap_or_default(),
                    false => (0, 0),
                };
                if res + cap > b.daily_cap_cents.max(allowed)
                    || lres + lcap > b.learning_cap_cents.max(learning_allowed)
                {
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
                let allowed = match allowance {
                    true => self.total_allowance.get(campaign).copied().unwrap_or(0),
                    false => 0,
                };
                if t.reserved + t.captured > total.max(allowed) {
                    return false;
                }
            }
        }
        true
    }
}

/// What recording an outcome did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeRecorded {
    /// New, or a "not converted" turned "converted" (a delayed order).
    New,
    /// The same outcome again: nothing changed.
    Unchanged,
    /// Refused: the session already converted, and a converted outcome is
    /// final; `current` is what stays recorded.
    Refused { current: Outcome },
}

impl OutcomeRecorded {
    pub fn is_new(&self) -> bool {
        *self == OutcomeRecorded::New
    }
}

/// The one outcome rule, for every ledger: a session's first outcome is
/// recorded; "not converted" may later become "converted" (an order placed
/// after the session ended), once; a converted outcome is final (a
/// different one is refused, the same one is a no-op). So a session changes
/// at most once, and the report, reading the latest, counts it once.
pub fn outcome_change(old: Option<&Outcome>, new: &Outcome) -> OutcomeRecorded {
    match old {
        None => OutcomeRecorded::New,
        Some(o) if upsert_outcome_key(o) == upsert_outcome_key(new) => OutcomeRecorded::Unchanged,
        Some(o) if !o.converted => OutcomeRecorded::New,
        Some(o) => OutcomeRecorded::Refused { current: o.clone() },
    }
}

/// What makes two outcomes of a session the same (`converted:order`); a
/// repeat with the same key is not a change.
pub fn upsert_outcome_key(o: &Outcome) -> String {
    format!("{}:{}", u8::from(o.converted), o.order_value_cents)
}

/// Applies an outcome to a map by [`outcome_change`].
pub fn upsert_outcome(map: &mut HashMap<String, Outcome>, o: Outcome) -> OutcomeRecorded {
    let r = outcome_change(map.get(&o.session_id), &o);
    if r.is_new() {
        map.insert(o.session_id.clone(), o);
    }
    r
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
