//! What `retrain` reports: the decision and its reasons, both models' values
//! on the evaluation sessions, and the settings the response was chosen
//! from. Its JSON form (`--json`, format `nudge-retrain/1`) is what the
//! nightly loop reads; its fields are listed in the README.

use super::{Comparison, Options};
use crate::replay::estimate::Interval;
use crate::uplift::{PolicyValue, SettingResult};
use serde::Serialize;
use std::collections::BTreeMap;

/// Format tag of the JSON report.
pub const FORMAT: &str = "nudge-retrain/1";

/// The replace rule, as the report states it.
pub const RULE: &str = "replace when the candidate's doubly robust value per session on the evaluation sessions is higher than the serving model's and its lower 95 % bound is not below the serving model's";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Replaced,
    Kept,
}

/// What was written to `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Written {
    /// The candidate model file.
    Candidate,
    /// Nothing: the serving model stays, `out` is left as it was.
    Nothing,
}

/// One model's value on the evaluation sessions (cents per session).
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub version: String,
    /// The response setting chosen for the candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setting: Option<String>,
    pub dr: Interval,
    pub ips: Interval,
    /// Sessions the rule would offer a voucher.
    pub offers: usize,
    /// `(amount_cents, sessions)` per action.
    pub actions: Vec<(i64, usize)>,
}

impl Side {
    pub fn new(version: &str, v: &PolicyValue) -> Self {
        Side {
            version: version.to_owned(),
            setting: None,
            dr: v.dr,
            ips: v.ips,
            offers: crate::uplift::value::offers(v),
            actions: v.actions.clone(),
        }
    }
}

/// The sessions the comparison reads.
#[derive(Clone, Debug, Serialize)]
pub struct EvaluationSet {
    pub sessions: usize,
    /// Sessions per logged action (amount in cents, 0 = none).
    pub rows_per_arm: BTreeMap<i64, usize>,
    pub share: f64,
    pub seed: u64,
    /// Randomised sessions in the logs (evaluation + training).
    pub randomised_sessions: usize,
}

/// The result of `nudge-train retrain`.
#[derive(Clone, Debug, Serialize)]
pub struct RetrainReport {
    pub format: &'static str,
    /// The candidate was written to `out` (`decision` is `replaced`).
    pub promoted: bool,
    pub decision: Decision,
    pub reasons: Vec<String>,
    pub rule: &'static str,
    pub out: String,
    pub written: Written,
    /// The serving model's version and DR value (cents per session): the
    /// headline numbers, also under `current`.
    pub current_version: String,
    pub current_value: f64,
    /// The candidate's, `null` when none could be fitted.
    pub candidate_version: Option<String>,
    pub candidate_value: Option<f64>,
    /// The values' unit.
    pub unit: &'static str,
    pub evaluation: EvaluationSet,
    pub current: Side,
    /// `None` when no candidate could be fitted.
    pub candidate: Option<Side>,
    pub no_voucher: Side,
    /// Candidate minus current, paired per session.
    pub difference: Option<Interval>,
    /// Candidate minus no voucher, paired per session: whether its
    /// vouchers pay at all.
    pub gain_over_no_voucher: Option<Interval>,
    /// The response settings tried (values on the fit's own validation
    /// rows, not the evaluation sessions).
    pub selection: Vec<SettingResult>,
}

impl RetrainReport {
    pub(super) fn new(
        decision: Decision,
        reasons: Vec<String>,
        o: &Options,
        written: Written,
        evaluation: EvaluationSet,
        comparison: Result<Comparison, (Side, Side)>,
        selection: Vec<SettingResult>,
    ) -> Self {
        let (current, candidate, no_voucher, difference, gain) = match comparison {
            Ok(c) => (
                c.current,
                Some(c.candidate),
                c.no_voucher,
                Some(c.difference),
                Some(c.gain_over_no_voucher),
            ),
            Err((current, none)) => (current, None, none, None, None),
        };
        RetrainReport {
            format: FORMAT,
            promoted: written == Written::Candidate,
            current_version: current.version.clone(),
            current_value: current.dr.estimate,
            candidate_version: candidate.as_ref().map(|c| c.version.clone()),
            candidate_value: candidate.as_ref().map(|c| c.dr.estimate),
            decision,
            reasons,
            rule: RULE,
            out: o.out.display().to_string(),
            written,
            unit: "cents per session",
            evaluation,
            current,
            candidate,
            no_voucher,
            difference,
            gain_over_no_voucher: gain,
            selection,
        }
    }

    /// The report for a person at a terminal (EUR per session).
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let eur = |i: &Interval| {
            format!(
                "{:>9.4} [{:>9.4}, {:>9.4}]",
                i.estimate / 100.0,
                i.lo / 100.0,
                i.hi / 100.0
            )
        };
        let _ = match self.written {
            Written::Candidate => writeln!(
                s,
                "retrain   promoted: candidate {} written to {}",
                self.candidate_version.as_deref().unwrap_or(""),
                self.out
            ),
            Written::Nothing => writeln!(
                s,
                "retrain   kept: the serving model {} stays, nothing written to {}",
                self.current_version, self.out
            ),
        };
        let _ = writeln!(
            s,
            "evaluated on {} of {} randomised sessions (share {}, seed {}), per logged action {:?}",
            self.evaluation.sessions,
            self.evaluation.randomised_sessions,
            self.evaluation.share,
            self.evaluation.seed,
            self.evaluation.rows_per_arm
        );
        let _ = writeln!(
            s,
            "  policy                                   DR value per session, EUR [95 % CI]   offers"
        );
        let mut row = |name: String, side: &Side| {
            let _ = writeln!(s, "  {name:<40} {}  {:>6}", eur(&side.dr), side.offers);
        };
        row(format!("serving {}", self.current.version), &self.current);
        if let Some(c) = &self.candidate {
            row(
                format!(
                    "candidate {} ({})",
                    c.version,
                    c.setting.as_deref().unwrap_or("")
                ),
                c,
            );
        }
        row("no voucher".into(), &self.no_voucher);
        if let Some(d) = &self.difference {
            let _ = writeln!(s, "  {:<40} {}", "candidate - serving (paired)", eur(d));
        }
        if let Some(d) = &self.gain_over_no_voucher {
            let _ = writeln!(s, "  {:<40} {}", "candidate - no voucher (paired)", eur(d));
        }
        for r in &self.reasons {
            let _ = writeln!(s, "  - {r}");
        }
        s
    }
}
