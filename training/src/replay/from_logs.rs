//! From log records to the evaluation population: the sessions, their
//! logged and candidate actions, propensities and rewards (see the module
//! docs of [`crate::replay`] for the definitions).

use super::candidate::Candidate;
use super::direct::fit_direct;
use super::options::{Options, Reward};
use super::population::{Coverage, Population, SessionUnit};
use crate::logs::MissingOutcome;
use anyhow::{bail, Result};
use nudge::decision_log::{DecisionRecord, LogRecord};
use std::collections::HashMap;

const MS_PER_DAY: f64 = 86_400_000.0;

fn is_randomised(d: &Dec) -> bool {
    d.eligible
        && !d.holdout
        && !matches!(
            &*d.reason,
            "already_offered" | "session_store_unavailable" | "budget_unavailable"
        )
}

/// The budget (main or learning) refused the voucher the decision chose.
fn refused_by_budget(reason: &str) -> bool {
    matches!(reason, "budget_exhausted" | "learning_budget_exhausted")
}

/// What the population needs of one decision (the full record, with its
/// feature map, is only needed for the candidate's action).
#[derive(Clone, Debug)]
struct Dec {
    at_ms: i64,
    eligible: bool,
    holdout: bool,
    explored: bool,
    policy_tier_cents: i64,
    action_cents: i64,
    propensity: f64,
    probability: f64,
    intent_value_cents: i64,
    reason: Box<str>,
}

impl Dec {
    fn of(d: &DecisionRecord) -> Dec {
        Dec {
            at_ms: d.at_ms,
            eligible: d.eligible,
            holdout: d.holdout,
            explored: d.explored,
            policy_tier_cents: d.policy_tier_cents,
            action_cents: d.action_cents,
            propensity: d.propensity,
            probability: d.probability,
            intent_value_cents: d.intent_value_cents,
            reason: d.reason.as_str().into(),
        }
    }
}

/// One session's decisions (in time order), reduced to what the population
/// needs, with the candidate's action already taken.
#[derive(Clone, Debug)]
struct Sess {
    id: String,
    decs: Vec<Dec>,
    /// The candidate's action; `None` for holdout sessions (never needed).
    cand: Option<i64>,
}

/// Reduces one session's decisions (sorted here, stably, by time) and
/// takes the candidate's action on them.
fn reduce(id: &str, mut ds: Vec<&DecisionRecord>, candidate: &Candidate) -> Result<Sess> {
    ds.sort_by_key(|d| d.at_ms);
    let cand = if ds.iter().any(|d| d.holdout) {
        None
    } else {
        Some(match candidate {
            Candidate::Rule { model, policy } => Candidate::rule_action(model, policy, &ds)?,
            Candidate::Fixed { amount_cents } => *amount_cents,
        })
    };
    Ok(Sess {
        id: id.to_owned(),
        decs: ds.iter().map(|d| Dec::of(d)).collect(),
        cand,
    })
}

/// What the grouping counts on the way.
#[derive(Default)]
struct Tally {
    min_at: Option<i64>,
    max_at: Option<i64>,
    decisions: usize,
    paced: usize,
    budget_exhausted: usize,
}

impl Tally {
    fn decision(&mut self, d: &DecisionRecord) {
        self.min_at = Some(self.min_at.map_or(d.at_ms, |m| m.min(d.at_ms)));
        self.max_at = Some(self.max_at.map_or(d.at_ms, |m| m.max(d.at_ms)));
        self.decisions += 1;
        if d.lambda > 0.0 {
            self.paced += 1;
        }
        if refused_by_budget(&d.reason) {
            self.budget_exhausted += 1;
        }
    }
}

/// Builds the evaluation population from log records.
pub fn build(records: &[LogRecord], candidate: &Candidate, o: &Options) -> Result<Population> {
    check_candidate(candidate, o)?;
    // Group by session, first-seen order (of decisions).
    let mut order: Vec<&str> = Vec::new();
    let mut decisions: HashMap<&str, Vec<&DecisionRecord>> = HashMap::new();
    let mut outcomes: HashMap<&str, (bool, i64)> = HashMap::new();
    let mut tally = Tally::default();
    for r in records {
        match r {
            LogRecord::Decision(d) => {
                let e = decisions.entry(d.session_id.as_str()).or_default();
                if e.is_empty() {
                    order.push(d.session_id.as_str());
                }
                e.push(d);
                tally.decision(d);
            }
            LogRecord::Outcome(x) => {
                // With several, the last one (as in `logs`).
                outcomes.insert(x.session_id.as_str(), (x.converted, x.order_value_cents));
            }
            LogRecord::Events(_) => {}
        }
    }
    let sessions = order
        .iter()
        .map(|sid| reduce(sid, decisions.remove(sid).unwrap_or_default(), candidate))
        .collect::<Result<Vec<_>>>()?;
    let outcomes: Vec<Option<(bool, i64)>> =
        order.iter().map(|sid| outcomes.get(sid).copied()).collect();
    build_sessions(sessions, outcomes, tally, candidate, o)
}

fn check_candidate(candidate: &Candidate, o: &Options) -> Result<()> {
    if o.tiers.is_empty() {
        bail!("no tiers configured");
    }
    if let Candidate::Fixed { amount_cents } = candidate {
        if *amount_cents != 0 && !o.tiers.contains(amount_cents) {
            bail!(
                "fixed amount {amount_cents} is not a configured tier ({:?}): the logs have no support for it",
                o.tiers
            );
        }
    }
    Ok(())
}

/// A decision line, read without the tagged enum's intermediate tree (the
/// `type` field is checked first).
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    v: u32,
    #[serde(borrow)]
    session_id: std::borrow::Cow<'a, str>,
    #[serde(default)]
    converted: bool,
    #[serde(default)]
    order_value_cents: i64,
}

/// [`build`] on the logs at `path`, streamed in two passes (one line in
/// memory at a time): the first counts each session's decision records;
/// the second keeps a session's decision records only until its last one
/// has been read, then reduces them to the few numbers the estimators use
/// and takes the candidate's action. Outcomes are two numbers per session,
/// kept whenever they come: the service writes them when the shop reports
/// the order, often long after the session's last decision (at the end of
/// a simulated day, all of them), and waiting for them would hold every
/// session's decisions, feature maps included. Events records are never
/// kept. Memory: the sessions open at a time in read order plus a small
/// record per session.
pub fn build_from_logs(
    path: &std::path::Path,
    candidate: &Candidate,
    o: &Options,
) -> Result<Population> {
    use nudge::decision_log::reader;
    check_candidate(candidate, o)?;
    let (files, total) = crate::logs::log_files_and_size(path)?;
    struct Known {
        remaining: u32,
        /// Index in first-decision order.
        slot: Option<u32>,
    }
    let mut index: HashMap<Box<str>, u32> = HashMap::new();
    let mut known: Vec<Known> = Vec::new();
    let mut n_slots = 0u32;
    let bar = crate::progress::bytes(total, "scan");
    let seen = std::cell::Cell::new(0u64);
    let mut lines = 0usize;
    let lengths = reader::each_line(
        &files,
        None,
        |b| seen.set(seen.get() + b.len() as u64),
        |line| {
            let h: Head = reader::parse_line(line, |h: &Head| h.v)?;
            lines += 1;
            if lines.is_multiple_of(4096) {
                bar.set_position(seen.get());
            }
            let dec = match h.kind {
                "decision" => true,
                "outcome" => false,
                _ => return Ok(()),
            };
            let k = match index.get(h.session_id.as_ref()) {
                Some(&k) => k as usize,
                None => {
                    index.insert(h.session_id.as_ref().into(), known.len() as u32);
                    known.push(Known {
                        remaining: 0,
                        slot: None,
                    });
                    known.len() - 1
                }
            };
            let s = &mut known[k];
            if dec {
                s.remaining += 1;
                if s.slot.is_none() {
                    s.slot = Some(n_slots);
                    n_slots += 1;
                }
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();

    let bar = crate::progress::bytes(lengths.iter().sum(), "replay");
    let mut sessions: Vec<Option<Sess>> = (0..n_slots).map(|_| None).collect();
    let mut outcomes: Vec<Option<(bool, i64)>> = vec![None; n_slots as usize];
    let mut open: HashMap<u32, Vec<DecisionRecord>> = HashMap::new();
    let mut tally = Tally::default();
    let mut failed: Option<anyhow::Error> = None;
    let seen = std::cell::Cell::new(0u64);
    let mut lines = 0usize;
    let mut finish = |id: &str, slot: u32, recs: Vec<DecisionRecord>| -> Result<()> {
        let s = reduce(id, recs.iter().collect(), candidate)?;
        sessions[slot as usize] = Some(s);
        Ok(())
    };
    reader::each_line(
        &files,
        Some(&lengths),
        |b| seen.set(seen.get() + b.len() as u64),
        |line| {
            lines += 1;
            if lines.is_multiple_of(4096) {
                bar.set_position(seen.get());
            }
            if failed.is_some() {
                return Ok(());
            }
            let h: Head = reader::parse_line(line, |h: &Head| h.v)?;
            let dec = match h.kind {
                "decision" => true,
                "outcome" => false,
                _ => return Ok(()),
            };
            let Some(&k) = index.get(h.session_id.as_ref()) else {
                return Ok(());
            };
            let s = &mut known[k as usize];
            // A session with only an outcome has no slot: not evaluated.
            let Some(slot) = s.slot else {
                return Ok(());
            };
            if !dec {
                outcomes[slot as usize] = Some((h.converted, h.order_value_cents));
                return Ok(());
            }
            s.remaining = s.remaining.saturating_sub(1);
            let done = s.remaining == 0;
            let d: DecisionRecord = reader::parse_line(line, |d: &DecisionRecord| d.v)?;
            tally.decision(&d);
            open.entry(slot).or_default().push(d);
            if done {
                let recs = open.remove(&slot).unwrap_or_default();
                if let Err(e) = finish(&h.session_id, slot, recs) {
                    failed = Some(e);
                }
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    if let Some(e) = failed {
        return Err(e);
    }
    // Sessions whose last counted record never came (a file shrank between
    // the passes): reduced with what was read.
    let mut rest: Vec<(u32, Vec<DecisionRecord>)> = open.into_iter().collect();
    rest.sort_by_key(|(k, _)| *k);
    for (slot, recs) in rest {
        let id = recs[0].session_id.clone();
        finish(&id, slot, recs)?;
    }
    // `finish` borrows `sessions` mutably until here.
    let _ = finish;
    let sessions: Vec<Sess> = sessions.into_iter().flatten().collect();
    if sessions.len() != outcomes.len() {
        bail!("the logs changed while they were read: run again");
    }
    build_sessions(sessions, outcomes, tally, candidate, o)
}

/// The population of reduced sessions (in first-decision order) and their
/// outcomes.
fn build_sessions(
    sessions: Vec<Sess>,
    outcomes: Vec<Option<(bool, i64)>>,
    tally: Tally,
    candidate: &Candidate,
    o: &Options,
) -> Result<Population> {
    let t = o.tiers.len();
    let action_index = |cents: i64| -> Result<usize> {
        if cents == 0 {
            return Ok(0);
        }
        match o.tiers.iter().position(|x| *x == cents) {
            Some(i) => Ok(i + 1),
            None => bail!(
                "logged amount {cents} is not a configured tier ({:?}): pass the logging config",
                o.tiers
            ),
        }
    };
    let mut cov = Coverage {
        decisions: tally.decisions,
        paced_decisions: tally.paced,
        budget_exhausted_decisions: tally.budget_exhausted,
        sessions: sessions.len(),
        ..Coverage::default()
    };
    let (min_at, max_at) = (
        tally.min_at.unwrap_or(i64::MAX),
        tally.max_at.unwrap_or(i64::MIN),
    );

    // Explore share: from the non-explored randomised decisions, whose
    // propensity is 1 - e T / (T + 1).
    let e = match o.explore_share {
        Some(e) => e,
        None => {
            let qs: Vec<f64> = sessions
                .iter()
                .flat_map(|s| s.decs.iter())
                .filter(|d| is_randomised(d) && !d.explored)
                .map(|d| d.propensity)
                .collect();
            let explored_any = sessions
                .iter()
                .flat_map(|s| s.decs.iter())
                .any(|d| is_randomised(d) && d.explored);
            match qs.first() {
                Some(&q) => {
                    if let Some(other) = qs.iter().find(|x| (**x - q).abs() > 1e-9) {
                        bail!(
                            "non-explored decisions carry different propensities ({q} and {other}): \
                             the logs mix explore shares; evaluate them separately or pass --explore-share"
                        );
                    }
                    ((1.0 - q) * (t + 1) as f64 / t as f64).clamp(0.0, 1.0)
                }
                None if explored_any => 1.0,
                None => bail!("no eligible non-holdout decisions in the logs: nothing to evaluate"),
            }
        }
    };
    cov.explore_share = e;
    let u = e / (t + 1) as f64;
    let mixture = |a: usize, g: usize| if a == g { 1.0 - e + u } else { u };

    let mut units = Vec::new();
    for (sess, outcome) in sessions.iter().zip(outcomes) {
        let ds = &sess.decs;
        let Some(cand) = sess.cand else {
            cov.holdout_sessions += 1;
            continue;
        };
        let randomised: Vec<&Dec> = ds.iter().filter(|d| is_randomised(d)).collect();
        if randomised.is_empty() {
            cov.not_eligible_sessions += 1;
            if matches!(candidate, Candidate::Rule { .. }) && cand != 0 {
                cov.unsupported_sessions += 1;
            }
            continue;
        }
        action_index(cand)?;
        // Check every randomised decision's logged propensity.
        for d in &randomised {
            let g = action_index(d.policy_tier_cents)?;
            let expected = if !d.explored {
                Some(mixture(g, g))
            } else if refused_by_budget(&d.reason) {
                // An explored voucher the budget refused: logged as "none"
                // with its probability given the budget at that moment,
                // which the log alone does not tell.
                None
            } else {
                Some(mixture(action_index(d.action_cents)?, g))
            };
            if let Some(x) = expected {
                if (x - d.propensity).abs() > 1e-9 {
                    cov.propensity_mismatches += 1;
                }
            }
        }
        let a_log = ds
            .iter()
            .find(|d| &*d.reason == "offered")
            .map_or(0, |d| d.action_cents);
        let explored = randomised.iter().any(|d| d.explored);
        if explored {
            cov.explored_sessions += 1;
        }
        let g_star = ds
            .iter()
            .filter(|d| d.eligible && !d.holdout && &*d.reason != "session_store_unavailable")
            .map(|d| d.policy_tier_cents)
            .find(|c| *c != 0)
            .unwrap_or(0);
        let propensity = if explored {
            mixture(action_index(a_log)?, action_index(g_star)?)
        } else {
            // Greedy (including a budget fallback): the greedy share.
            mixture(0, 0)
        };
        let (converted, order_value_cents) = match (outcome, o.missing) {
            (Some(x), _) => x,
            (None, MissingOutcome::Negative) => (false, 0),
            (None, MissingOutcome::Skip) => {
                cov.sessions_without_outcome += 1;
                continue;
            }
        };
        let y = f64::from(u8::from(converted));
        let reward = match o.reward {
            Reward::Conversion => y,
            Reward::Net => {
                let redeemable = order_value_cents >= o.min_order_cents;
                o.margin_rate * order_value_cents as f64 * y
                    - if converted && redeemable {
                        a_log as f64
                    } else {
                        0.0
                    }
            }
        };
        units.push(SessionUnit {
            session_id: sess.id.clone(),
            first_at_ms: ds[0].at_ms,
            logged_action_cents: a_log,
            candidate_action_cents: cand,
            propensity,
            explored,
            converted,
            order_value_cents,
            reward,
            logged_probability: randomised[0].probability,
            value_hint_cents: ds.last().map_or(0, |d| d.intent_value_cents),
            q_candidate: f64::NAN,
            q_logged: f64::NAN,
        });
    }
    cov.evaluated = units.len();
    cov.days = o.days.unwrap_or(if max_at > min_at {
        (max_at - min_at) as f64 / MS_PER_DAY
    } else {
        0.0
    });
    fit_direct(&mut units, o);
    Ok(Population {
        units,
        coverage: cov,
    })
}
