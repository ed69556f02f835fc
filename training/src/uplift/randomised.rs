//! The service's logs into randomised rows: one per session (see the module
//! docs of [`crate::uplift`] for which rows and why unweighted), what the
//! response is fitted on ([`super::selection`]) and policies are valued on
//! ([`super::value`]).

use crate::logs::{self, MissingOutcome};
use anyhow::{bail, Context as _, Result};
use nudge::decision_log::{DecisionRecord, LogRecord, OutcomeRecord};
use nudge::domain::features::Features;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One randomised session.
#[derive(Clone, Debug)]
pub struct RandomisedRow {
    pub session_id: String,
    pub at_ms: i64,
    pub features: Features,
    /// Arm: the voucher offered (0 = none: holdout or explored "none").
    pub amount_cents: i64,
    pub holdout: bool,
    pub converted: bool,
    /// The intent value the service decided with (cents).
    pub intent_value_cents: i64,
    /// The purchase probability the service logged at that decision.
    pub probability: f64,
    /// The session's order value (its outcome; 0 without one).
    pub order_value_cents: i64,
}

/// What the selection of randomised rows kept and dropped.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Selection {
    /// Sessions with at least one decision (and a label, see the log read).
    pub labelled_sessions: usize,
    /// Sessions with an eligible decision but no randomised one (greedy).
    pub greedy_sessions_excluded: usize,
    pub holdout_sessions: usize,
    pub explored_sessions: usize,
    /// Explored sessions whose drawn voucher was not delivered, by reason.
    pub explored_not_delivered: BTreeMap<String, usize>,
    /// Rows kept per arm (amount in cents).
    pub rows_per_arm: BTreeMap<i64, usize>,
}

/// Replays `records` and keeps one randomised row per session (see the
/// module docs).
pub fn randomised_rows(
    records: &[LogRecord],
    missing: MissingOutcome,
) -> Result<(Vec<RandomisedRow>, logs::LogSummary, Selection)> {
    let (rows, summary) = logs::replay(records, missing);
    // Decisions per session in replay order (stable sort by time).
    let mut decisions: HashMap<&str, Vec<&DecisionRecord>> = HashMap::new();
    let mut outcomes: HashMap<&str, &OutcomeRecord> = HashMap::new();
    for r in records {
        match r {
            LogRecord::Decision(d) => decisions.entry(d.session_id.as_str()).or_default().push(d),
            // With several, the last one (as in `logs`).
            LogRecord::Outcome(o) => {
                outcomes.insert(o.session_id.as_str(), o);
            }
            LogRecord::Events(_) => {}
        }
    }
    for v in decisions.values_mut() {
        v.sort_by_key(|d| d.at_ms);
    }
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut done: HashMap<String, ()> = HashMap::new();
    let mut eligible_seen: HashMap<String, ()> = HashMap::new();
    let mut sel = Selection::default();
    let mut out = Vec::new();
    for r in &rows {
        let list = decisions
            .get(r.session_id.as_str())
            .context("replayed row without a decision record")?;
        let k = next.entry(list[0].session_id.as_str()).or_insert(0);
        let d = list[*k];
        *k += 1;
        if d.at_ms != r.at_ms {
            bail!(
                "session {}: replayed decision at {} does not match the logged one at {}",
                r.session_id,
                r.at_ms,
                d.at_ms
            );
        }
        if *k == 1 {
            sel.labelled_sessions += 1;
        }
        if d.eligible {
            eligible_seen.insert(r.session_id.clone(), ());
        }
        if done.contains_key(&r.session_id) || !(d.holdout || d.explored) {
            continue;
        }
        done.insert(r.session_id.clone(), ());
        let amount = if d.holdout {
            sel.holdout_sessions += 1;
            0
        } else {
            sel.explored_sessions += 1;
            match d.reason.as_str() {
                "exploration_no_voucher" => 0,
                "offered" if d.action_cents > 0 => d.action_cents,
                other => {
                    *sel.explored_not_delivered
                        .entry(other.to_owned())
                        .or_default() += 1;
                    continue;
                }
            }
        };
        *sel.rows_per_arm.entry(amount).or_default() += 1;
        out.push(RandomisedRow {
            session_id: r.session_id.clone(),
            at_ms: r.at_ms,
            features: r.row.features,
            amount_cents: amount,
            holdout: d.holdout,
            converted: r.row.converted,
            intent_value_cents: d.intent_value_cents,
            probability: d.probability,
            order_value_cents: outcomes
                .get(r.session_id.as_str())
                .map_or(0, |o| o.order_value_cents),
        });
    }
    sel.greedy_sessions_excluded = eligible_seen
        .keys()
        .filter(|s| !done.contains_key(*s))
        .count();
    Ok((out, summary, sel))
}
