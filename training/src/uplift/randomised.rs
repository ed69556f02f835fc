//! The service's logs into randomised rows: one per session (see the module
//! docs of [`crate::uplift`] for which rows and why unweighted), what the
//! response is fitted on ([`super::selection`]) and policies are valued on
//! ([`super::value`]).

use crate::logs::{self, MissingOutcome, ReplayedSession};
use anyhow::{bail, Context as _, Result};
use nudge::decision_log::{DecisionRecord, LogRecord, OutcomeRecord};
use nudge::domain::features::Features;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

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

/// The randomised row of each session handed over (see the module docs),
/// built one finished session at a time: what [`randomised_rows_from_logs`]
/// and `retrain` keep of the logs instead of their records.
#[derive(Default)]
pub struct Randomiser {
    rows: Vec<(usize, RandomisedRow)>,
    sel: Selection,
}

impl Randomiser {
    /// Takes one session's row, if randomised (the rules of
    /// [`randomised_rows`]: its first holdout or explored decision).
    pub fn add(&mut self, s: &ReplayedSession<'_>) {
        if s.decisions.is_empty() {
            return;
        }
        let sel = &mut self.sel;
        sel.labelled_sessions += 1;
        let mut eligible = false;
        let mut done = false;
        for d in s.decisions {
            let f = &d.facts;
            eligible |= f.eligible;
            if done || !(f.holdout || f.explored) {
                continue;
            }
            done = true;
            let amount = if f.holdout {
                sel.holdout_sessions += 1;
                0
            } else {
                sel.explored_sessions += 1;
                match f.reason.as_str() {
                    "exploration_no_voucher" => 0,
                    "offered" if f.action_cents > 0 => f.action_cents,
                    other => {
                        *sel.explored_not_delivered
                            .entry(other.to_owned())
                            .or_default() += 1;
                        continue;
                    }
                }
            };
            *sel.rows_per_arm.entry(amount).or_default() += 1;
            self.rows.push((
                s.session,
                RandomisedRow {
                    session_id: s.session_id.to_owned(),
                    at_ms: d.at_ms,
                    features: d.features,
                    amount_cents: amount,
                    holdout: f.holdout,
                    converted: s.converted,
                    intent_value_cents: f.intent_value_cents,
                    probability: f.probability,
                    order_value_cents: s.order_value_cents,
                },
            ));
        }
        if eligible && !done {
            sel.greedy_sessions_excluded += 1;
        }
    }

    /// The rows in the sessions' first-seen order (as [`randomised_rows`]).
    pub fn finish(mut self) -> (Vec<RandomisedRow>, Selection) {
        self.rows.sort_by_key(|(k, _)| *k);
        (self.rows.into_iter().map(|(_, r)| r).collect(), self.sel)
    }
}

/// [`randomised_rows`] of the logs at `path` (file or folder), streamed by
/// [`logs::stream_sessions`]: memory is the sessions open at a time and one
/// row per randomised session, not the folder's records.
pub fn randomised_rows_from_logs(
    path: &Path,
    missing: MissingOutcome,
) -> Result<(Vec<RandomisedRow>, logs::Streamed, Selection)> {
    let mut r = Randomiser::default();
    let streamed = logs::stream_sessions(path, missing, |s| r.add(s))?;
    let (rows, sel) = r.finish();
    Ok((rows, streamed, sel))
}

/// When the randomised sessions are too few to learn the response: every
/// arm needs `min_arm_rows` training rows, i.e. about `min_arm_rows / (1 -
/// holdout)` randomised sessions before the held-out split. `days`: the
/// time the logs cover (0 when unknown). `None` when every arm has enough.
/// The message says how many there are, how many are needed and roughly
/// how many days of the logged traffic that is.
pub fn shortfall(sel: &Selection, min_arm_rows: usize, holdout: f64, days: f64) -> Option<String> {
    let need = (min_arm_rows as f64 / (1.0 - holdout).max(1e-9)).ceil() as usize;
    let mut short: Vec<(i64, usize)> = sel
        .rows_per_arm
        .iter()
        .filter(|(_, n)| **n < need)
        .map(|(a, n)| (*a, *n))
        .collect();
    if !sel.rows_per_arm.contains_key(&0) {
        short.insert(0, (0, 0));
    }
    if short.is_empty() {
        return None;
    }
    let total: usize = sel.rows_per_arm.values().sum();
    let arms: Vec<String> = short
        .iter()
        .map(|(a, n)| {
            let name = if *a == 0 {
                "no voucher".to_owned()
            } else {
                format!("{a} cents")
            };
            format!("{name}: {n}")
        })
        .collect();
    // The arm furthest from its need sets the time: traffic and shares
    // staying as logged, an arm grows in proportion to the days.
    let worst = short.iter().map(|(_, n)| *n).min().unwrap_or(0);
    let more_days = if days > 0.0 && worst > 0 {
        format!(
            "about {:.1} days of the current traffic (the logs cover {days:.2} days)",
            days * need as f64 / worst as f64
        )
    } else if days > 0.0 {
        format!("an arm has no session in {days:.2} days of logs: more days will not fill it at the current shares")
    } else {
        "logs over a longer time".to_owned()
    };
    Some(format!(
        "too few randomised sessions to learn the voucher response: {total} in the logs, and each arm needs about {need} ({min_arm_rows} training rows with {:.0} % held out); short: {}; that takes {more_days}; or raise experiment.explore_share to randomise more sessions a day",
        100.0 * holdout,
        arms.join(", ")
    ))
}

#[cfg(test)]
mod shortfall_tests {
    use super::*;

    #[test]
    fn shortfall_names_counts_needs_and_days() {
        let mut sel = Selection::default();
        sel.rows_per_arm.insert(0, 400);
        sel.rows_per_arm.insert(500, 300);
        assert!(shortfall(&sel, 100, 0.3, 1.0).is_none());
        sel.rows_per_arm.insert(1000, 50);
        let m = shortfall(&sel, 100, 0.3, 1.0).unwrap();
        assert!(m.contains("750 in the logs"), "{m}");
        assert!(m.contains("needs about 143"), "{m}");
        assert!(m.contains("1000 cents: 50"), "{m}");
        assert!(m.contains("about 2.9 days"), "{m}");
        assert!(m.contains("explore_share"), "{m}");
    }
}
