//! The estimators run on a population into one report (per session and
//! per day), the numbers `nudge-train replay` prints or writes as JSON.

use super::candidate::Candidate;
use super::estimate::{self, Interval, Unit};
use super::options::{Options, Reward};
use super::population::{Coverage, Population};
use serde::Serialize;

/// The estimates, per session or per day.
#[derive(Clone, Debug, Serialize)]
pub struct Estimates {
    pub ips: Interval,
    pub snips: Interval,
    pub dr: Interval,
    /// Direct model alone (interval: spread of predictions only).
    pub direct: Interval,
    /// The logging policy's own value (observed mean reward).
    pub logged: Interval,
}

impl Estimates {
    fn scaled(&self, k: f64) -> Self {
        Estimates {
            ips: self.ips.scaled(k),
            snips: self.snips.scaled(k),
            dr: self.dr.scaled(k),
            direct: self.direct.scaled(k),
            logged: self.logged.scaled(k),
        }
    }
}

/// The result of `nudge-train replay`.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    pub candidate: String,
    pub reward: Reward,
    /// "cents" (net) or "conversions".
    pub unit: &'static str,
    pub sessions: usize,
    /// Sessions where the candidate's action equals the logged one.
    pub matches: usize,
    pub effective_sample_size: f64,
    pub max_weight: f64,
    pub per_session: Estimates,
    /// Per-session values times evaluated sessions per day (None when the
    /// logs span no time).
    pub per_day: Option<Estimates>,
    pub sessions_per_day: Option<f64>,
    /// `(amount_cents, logged sessions, candidate sessions)`.
    pub actions: Vec<(i64, usize, usize)>,
    pub coverage: Coverage,
    pub definitions: Vec<&'static str>,
    /// Why the estimates may be too thin to act on, with what to do
    /// ([`super::warnings`]); empty when none applies.
    pub warnings: Vec<String>,
}

const DEFINITIONS: &[&str] = &[
    "Unit: a non-holdout session with at least one eligible decision; action: the voucher it was offered (0 = none).",
    "Propensity: (1 - e) [a_log = g*] + e / (T + 1), g* the session's greedy tier, e the explore share, T the tiers.",
    "Candidate: the model's greedy rule (lambda 0, no budget, no holdout/exploration) at each logged moment; first positive tier.",
    "Reward net: margin_rate * order_value * converted - voucher * converted * [order_value >= min_order] (cents); conversion: converted.",
    "IPS: mean(w r), w = 1[a_cand = a_log] / propensity; SNIPS: sum(w r) / sum(w); DR: mean(q(x, a_cand) + w (r - q(x, a_log))).",
    "Intervals: estimate +- 1.96 se, se from the per-session terms (delta method for SNIPS).",
    "Per day: per-session value times evaluated sessions / days covered by the logs.",
];

/// Runs the estimators on a population.
pub fn evaluate(pop: &Population, candidate: &Candidate, o: &Options) -> ReplayReport {
    let units: Vec<Unit> = pop
        .units
        .iter()
        .map(|s| Unit {
            propensity: s.propensity,
            matched: s.candidate_action_cents == s.logged_action_cents,
            reward: s.reward,
            q_candidate: s.q_candidate,
            q_logged: s.q_logged,
        })
        .collect();
    let z = o.z;
    let per_session = Estimates {
        ips: estimate::ips(&units, z),
        snips: estimate::snips(&units, z),
        dr: estimate::dr(&units, z),
        direct: estimate::direct(&units, z),
        logged: estimate::on_policy(&units, z),
    };
    let days = pop.coverage.days;
    let spd = (days > 0.0).then(|| units.len() as f64 / days);
    let mut actions: Vec<(i64, usize, usize)> = std::iter::once(0)
        .chain(o.tiers.iter().copied())
        .map(|a| {
            (
                a,
                pop.units
                    .iter()
                    .filter(|s| s.logged_action_cents == a)
                    .count(),
                pop.units
                    .iter()
                    .filter(|s| s.candidate_action_cents == a)
                    .count(),
            )
        })
        .collect();
    actions.sort_by_key(|a| a.0);
    let ess = estimate::effective_sample_size(&units);
    let matches = units.iter().filter(|u| u.matched).count();
    ReplayReport {
        warnings: super::warnings::warnings(&per_session, ess, matches),
        candidate: candidate.name(),
        reward: o.reward,
        unit: match o.reward {
            Reward::Net => "cents",
            Reward::Conversion => "conversions",
        },
        sessions: units.len(),
        matches,
        effective_sample_size: ess,
        max_weight: units.iter().map(Unit::weight).fold(0.0, f64::max),
        per_day: spd.map(|k| per_session.scaled(k)),
        per_session,
        sessions_per_day: spd,
        actions,
        coverage: pop.coverage.clone(),
        definitions: DEFINITIONS.to_vec(),
    }
}
