//! The ROI report: what the vouchers *added*, measured against the holdout.
//! Pure computation and rendering; the caller reads the decision log and
//! the ledger.
//!
//! # Units and arms (intention-to-treat)
//!
//! The unit is an **eligible session**: a session with at least one decision
//! record with `eligible = true`. Its **first** eligible decision (earliest
//! `at_ms`, ties by input order) assigns it, once and for all, to
//!
//! - an **arm**: holdout when that decision has `holdout = true`, else
//!   treatment. Treatment sessions stay in treatment whatever happened next
//!   — no voucher because the budget ran out, pacing, exploration chose
//!   "none", the voucher was never redeemed. Dropping those would compare
//!   the holdout with a hand-picked subset of the treatment arm; keeping them
//!   (intention-to-treat) keeps the comparison randomised;
//! - a **cell**: campaign x `policy_tier_cents` x segment. The tier is the
//!   one the greedy policy *would* pick, which both arms log ("would have
//!   offered 10 EUR"), so each cell compares like with like. (Grouping the
//!   treatment by the tier actually offered would have no holdout
//!   counterpart.) The policy tier must be computed the same way for both
//!   arms, before the holdout split. Eligible sessions are hesitant by
//!   construction today; segment stays a dimension for future policies.
//!
//! `since_ms`: a session is reported when its first eligible decision is at
//! or after `since_ms`. A session assigned before the window belongs to the
//! earlier window even if it made more decisions later, so consecutive
//! windows never count a session twice.
//!
//! # Per-session values
//!
//! - converted / order value: the session's **latest** outcome record
//!   (greatest `at_ms`, ties: the later record in the input), so re-sent
//!   outcomes count once. No outcome record = not converted (the same rule
//!   for both arms, so it does not bias the difference). Outcomes of
//!   sessions the report does not count (no eligible or offered decision)
//!   are counted apart (`unmatched_outcomes`), never as conversions.
//! - revenue `r_i` = order value when converted, else 0.
//! - voucher cost `c_i` = the captured (redeemed) amounts joined by
//!   campaign + session id (summed if the ledger reports several).
//! - margin `g_i = margin_rate * r_i` (gross of the voucher), net margin
//!   `g_i - c_i`.
//!
//! # Per cell (and per campaign over all cells)
//!
//! For each arm: sessions `n`, sessions offered a voucher (any decision of
//! the session with `action_cents > 0`), conversions, conversion rate,
//! revenue `sum r_i` and captured cost `sum c_i` (integer cents), and the
//! means of `g_i` and `g_i - c_i` (f64 cents). With `T` = treatment and
//! `H` = holdout:
//!
//! ```text
//! incremental conversions  = n_T * (rate_T - rate_H)
//! incremental margin   M   = n_T * (mean_T(g) - mean_H(g))          (gross of vouchers)
//! 95 % interval of M       = n_T * (diff +- 1.96 * sqrt(var_T(g)/n_T + var_H(g)/n_H))
//! voucher cost         C   = sum of c_i over the treatment arm
//! net incremental margin   = M - C = n_T * (mean_T(g - c) - mean_H(g))
//! 95 % interval of net     = n_T * (diff_net +- 1.96 * sqrt(var_T(g - c)/n_T + var_H(g)/n_H))
//! ROI                      = M / C                                   (> 1: the vouchers paid for themselves)
//! ```
//!
//! `var` is the sample variance (divisor `n - 1`). The net interval uses the
//! per-session net margin so that the randomness of *which* vouchers were
//! redeemed is in the interval too. Point estimates are `None` when an arm
//! is empty, intervals when an arm has fewer than 2 sessions, ROI when
//! `C = 0`. The campaign total pools all its sessions with the same
//! formulas (valid when the holdout share is the same in every cell).
//!
//! Holdout sessions never get vouchers; a captured voucher joined to a
//! holdout session (a leak) is shown in the holdout's `voucher_cost_cents`
//! but not netted. Captured vouchers that join no reported session (assigned
//! before `since_ms`, not eligible, unknown) are shown per campaign as
//! `unattributed_cost_cents`, so the report's costs add up to the ledger's.
//!
//! # Learning cost
//!
//! Exploration vouchers are paid from the learning budget. Their captured
//! cost is part of the voucher cost above (exploration is part of the
//! treatment arm), and is also shown apart per campaign:
//! `learning_cost_cents` (captured learning vouchers) and `main_cost_cents`
//! (the rest), over every capture of the campaign, attributed or not, so
//! `main + learning = treatment + holdout voucher cost + unattributed`.

use crate::decision_log::{DecisionRecord, OutcomeRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

pub mod sessions;

/// z for a two-sided 95 % normal interval.
pub const Z95: f64 = 1.96;

/// A redeemed voucher, from the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    pub campaign: String,
    pub session_id: String,
    pub amount_cents: i64,
    /// Paid from the learning budget (an exploration voucher).
    #[serde(default)]
    pub learning: bool,
}

/// What the report is computed from.
#[derive(Clone, Copy, Debug)]
pub struct ReportInput<'a> {
    pub decisions: &'a [DecisionRecord],
    pub outcomes: &'a [OutcomeRecord],
    pub captured: &'a [Captured],
    /// Gross margin rate `m` applied to revenue.
    pub margin_rate: f64,
    /// Only sessions whose first eligible decision is at or after this.
    pub since_ms: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RoiReport {
    pub since_ms: Option<i64>,
    pub margin_rate: f64,
    /// By campaign name.
    pub campaigns: Vec<CampaignReport>,
    /// Sessions with an outcome but no decision in the log (an id nudge
    /// never saw, or a decision whose log was lost): counted here, never as
    /// a conversion of either arm.
    #[serde(default)]
    pub unmatched_outcomes: u64,
    /// Reported sessions with no outcome recorded (RecordOutcome never
    /// called for them), all campaigns: counted as not converted, so a
    /// large share here means the conversion figures are understated.
    #[serde(default)]
    pub sessions_without_outcome: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CampaignReport {
    pub campaign: String,
    /// All the campaign's sessions pooled (tier and segment are `None`).
    pub total: CellReport,
    /// By policy tier, then segment.
    pub cells: Vec<CellReport>,
    /// Captured voucher cost of this campaign not joined to a reported session.
    pub unattributed_cost_cents: i64,
    /// Captured cost of exploration vouchers (the learning budget), every
    /// capture of the campaign: also counted in the costs above.
    #[serde(default)]
    pub learning_cost_cents: i64,
    /// Captured cost of the other vouchers (the main budget).
    #[serde(default)]
    pub main_cost_cents: i64,
    /// The campaign's reported sessions with no outcome recorded, counted
    /// as not converted.
    #[serde(default)]
    pub sessions_without_outcome: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CellReport {
    /// Tier the greedy policy would offer (0 = none); `None` in totals.
    pub policy_tier_cents: Option<i64>,
    /// "hot" | "hesitant" | "cold"; `None` in totals.
    pub segment: Option<String>,
    pub treatment: ArmStats,
    pub holdout: ArmStats,
    pub incremental: Incremental,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ArmStats {
    pub sessions: u64,
    /// Sessions with any decision that offered a voucher.
    pub offered: u64,
    pub conversions: u64,
    /// `conversions / sessions`; `None` when empty.
    pub conversion_rate: Option<f64>,
    /// Sum of order values of converted sessions.
    pub revenue_cents: i64,
    /// Captured (redeemed) voucher cost.
    pub voucher_cost_cents: i64,
    /// Mean of `margin_rate * revenue_i`.
    pub mean_margin_cents: Option<f64>,
    /// Mean of `margin_rate * revenue_i - cost_i`.
    pub mean_net_margin_cents: Option<f64>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Incremental {
    /// `n_T * (rate_T - rate_H)`.
    pub conversions: Option<f64>,
    /// `M = n_T * (mean_T(g) - mean_H(g))`, cents, gross of vouchers.
    pub margin_cents: Option<f64>,
    pub margin_ci95: Option<Interval>,
    /// `C`: captured voucher cost of the treatment arm.
    pub voucher_cost_cents: i64,
    /// `M - C`.
    pub net_margin_cents: Option<f64>,
    pub net_margin_ci95: Option<Interval>,
    /// `M / C`; `None` when `C = 0` or `M` is undefined.
    pub roi: Option<f64>,
}

/// One reported session.
#[derive(Clone, Debug)]
struct Unit {
    holdout: bool,
    offered: bool,
    converted: bool,
    revenue_cents: i64,
    cost_cents: i64,
}

/// Mean and sample variance (two-pass).
fn mean_var(xs: &[f64]) -> (Option<f64>, Option<f64>) {
    if xs.is_empty() {
        return (None, None);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (Some(mean), None);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (Some(mean), Some(var))
}

fn arm_stats(units: &[&Unit], margin_rate: f64) -> ArmStats {
    let n = units.len() as u64;
    let conversions = units.iter().filter(|u| u.converted).count() as u64;
    let g: Vec<f64> = units
        .iter()
        .map(|u| margin_rate * u.revenue_cents as f64)
        .collect();
    let net: Vec<f64> = units
        .iter()
        .zip(&g)
        .map(|(u, g)| g - u.cost_cents as f64)
        .collect();
    ArmStats {
        sessions: n,
        offered: units.iter().filter(|u| u.offered).count() as u64,
        conversions,
        conversion_rate: (n > 0).then(|| conversions as f64 / n as f64),
        revenue_cents: units.iter().map(|u| u.revenue_cents).sum(),
        voucher_cost_cents: units.iter().map(|u| u.cost_cents).sum(),
        mean_margin_cents: mean_var(&g).0,
        mean_net_margin_cents: mean_var(&net).0,
    }
}

/// `n_T * (mean_T - mean_H)` and its 95 % interval.
fn diff_estimate(t: &[f64], h: &[f64]) -> (Option<f64>, Option<Interval>) {
    let n_t = t.len() as f64;
    let ((Some(mt), vt), (Some(mh), vh)) = (mean_var(t), mean_var(h)) else {
        return (None, None);
    };
    let diff = mt - mh;
    let ci = match (vt, vh) {
        (Some(vt), Some(vh)) => {
            let half = Z95 * (vt / n_t + vh / h.len() as f64).sqrt();
            Some(Interval {
                lo: n_t * (diff - half),
                hi: n_t * (diff + half),
            })
        }
        _ => None,
    };
    (Some(n_t * diff), ci)
}

fn cell(
    units: &[&Unit],
    margin_rate: f64,
    policy_tier_cents: Option<i64>,
    segment: Option<String>,
) -> CellReport {
    let t: Vec<&Unit> = units.iter().copied().filter(|u| !u.holdout).collect();
    let h: Vec<&Unit> = units.iter().copied().filter(|u| u.holdout).collect();
    let treatment = arm_stats(&t, margin_rate);
    let holdout = arm_stats(&h, margin_rate);
    let g = |us: &[&Unit]| -> Vec<f64> {
        us.iter()
            .map(|u| margin_rate * u.revenue_cents as f64)
            .collect()
    };
    let (g_t, g_h) = (g(&t), g(&h));
    let net_t: Vec<f64> = t
        .iter()
        .zip(&g_t)
        .map(|(u, g)| g - u.cost_cents as f64)
        .collect();
    let (margin_cents, margin_ci95) = diff_estimate(&g_t, &g_h);
    let (net_margin_cents, net_margin_ci95) = diff_estimate(&net_t, &g_h);
    let voucher_cost_cents = treatment.voucher_cost_cents;
    let conversions = match (treatment.conversion_rate, holdout.conversion_rate) {
        (Some(a), Some(b)) => Some(treatment.sessions as f64 * (a - b)),
        _ => None,
    };
    let roi = margin_cents
        .filter(|_| voucher_cost_cents != 0)
        .map(|m| m / voucher_cost_cents as f64);
    CellReport {
        policy_tier_cents,
        segment,
        treatment,
        holdout,
        incremental: Incremental {
            conversions,
            margin_cents,
            margin_ci95,
            voucher_cost_cents,
            net_margin_cents,
            net_margin_ci95,
            roi,
        },
    }
}

/// A reported session's assignment: its first eligible decision, and
/// whether any decision of the session offered a voucher.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Assigned<'a> {
    pub session_id: &'a str,
    pub campaign: &'a str,
    pub policy_tier_cents: i64,
    pub segment: &'a str,
    pub holdout: bool,
    pub at_ms: i64,
    pub offered: bool,
}

/// Each session's latest outcome (greatest `at_ms`, ties: the later one)
/// from (session, at_ms, converted, order value): (converted, order value).
pub fn latest_outcomes<'a>(
    outcomes: impl Iterator<Item = (&'a str, i64, bool, i64)>,
) -> HashMap<&'a str, (bool, i64)> {
    let mut latest: HashMap<&str, (i64, bool, i64)> = HashMap::new();
    for (session, at_ms, converted, value) in outcomes {
        match latest.get(session) {
            Some(prev) if prev.0 > at_ms => {}
            _ => {
                latest.insert(session, (at_ms, converted, value));
            }
        }
    }
    latest
        .into_iter()
        .map(|(s, (_, c, v))| (s, (c, v)))
        .collect()
}

/// Computes the report; see the module docs for every rule and formula.
pub fn roi_report(input: &ReportInput) -> RoiReport {
    let outcome = latest_outcomes(input.outcomes.iter().map(|o| {
        (
            o.session_id.as_str(),
            o.at_ms,
            o.converted,
            o.order_value_cents,
        )
    }));
    // First eligible decision per session; sessions with any offer.
    // (Ordered, so that sums run in the same order on every run.)
    let mut first: BTreeMap<&str, &DecisionRecord> = BTreeMap::new();
    let mut offered: HashSet<&str> = HashSet::new();
    for d in input.decisions {
        if d.action_cents > 0 {
            offered.insert(&d.session_id);
        }
        if !d.eligible {
            continue;
        }
        match first.get(d.session_id.as_str()) {
            Some(prev) if prev.at_ms <= d.at_ms => {}
            _ => {
                first.insert(&d.session_id, d);
            }
        }
    }
    let sessions = first.iter().map(|(session, d)| Assigned {
        session_id: session,
        campaign: &d.campaign,
        policy_tier_cents: d.policy_tier_cents,
        segment: &d.segment,
        holdout: d.holdout,
        at_ms: d.at_ms,
        offered: offered.contains(session),
    });
    // Outcomes of sessions the report does not count (no eligible or
    // offered decision: never decided, or only while not eligible).
    let counted: HashSet<&str> = input
        .decisions
        .iter()
        .filter(|d| d.eligible || d.action_cents > 0)
        .map(|d| d.session_id.as_str())
        .collect();
    let unmatched_outcomes = outcome
        .keys()
        .filter(|session| !counted.contains(*session))
        .count() as u64;
    assemble(
        sessions,
        |s| outcome.get(s).copied(),
        input.captured,
        input.margin_rate,
        input.since_ms,
        unmatched_outcomes,
    )
}

/// The report from each session's assignment (in session id order, so that
/// sums run in the same order on every run), its latest outcome
/// (converted, order value) and the ledger's captures.
pub(crate) fn assemble<'a>(
    sessions: impl Iterator<Item = Assigned<'a>>,
    outcome: impl Fn(&str) -> Option<(bool, i64)>,
    captured: &'a [Captured],
    margin_rate: f64,
    since_ms: Option<i64>,
    unmatched_outcomes: u64,
) -> RoiReport {
    // Captured cost by (campaign, session), and by campaign and budget
    // (main, learning).
    let mut cost: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut by_budget: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for c in captured {
        *cost.entry((&c.campaign, &c.session_id)).or_default() += c.amount_cents;
        let e = by_budget.entry(&c.campaign).or_default();
        if c.learning {
            e.1 += c.amount_cents;
        } else {
            e.0 += c.amount_cents;
        }
    }

    // campaign -> (tier, segment) -> units
    type Cells<'a> = BTreeMap<(i64, &'a str), Vec<Unit>>;
    let mut campaigns: BTreeMap<&str, Cells> = BTreeMap::new();
    let mut attributed: HashSet<(&str, &str)> = HashSet::new();
    let mut without_outcome: BTreeMap<&str, u64> = BTreeMap::new();
    for a in sessions {
        if since_ms.is_some_and(|s| a.at_ms < s) {
            continue;
        }
        let (converted, revenue_cents) = match outcome(a.session_id) {
            Some((true, value)) => (true, value),
            Some((false, _)) => (false, 0),
            None => {
                *without_outcome.entry(a.campaign).or_default() += 1;
                (false, 0)
            }
        };
        let key = (a.campaign, a.session_id);
        attributed.insert(key);
        campaigns
            .entry(a.campaign)
            .or_default()
            .entry((a.policy_tier_cents, a.segment))
            .or_default()
            .push(Unit {
                holdout: a.holdout,
                offered: a.offered,
                converted,
                revenue_cents,
                cost_cents: cost.get(&key).copied().unwrap_or(0),
            });
    }
    let mut unattributed: BTreeMap<&str, i64> = BTreeMap::new();
    for (key, c) in &cost {
        if !attributed.contains(key) {
            *unattributed.entry(key.0).or_default() += c;
            campaigns.entry(key.0).or_default();
        }
    }

    let m = margin_rate;
    let campaigns = campaigns
        .into_iter()
        .map(|(campaign, cells)| {
            let all: Vec<&Unit> = cells.values().flatten().collect();
            let (main_cost_cents, learning_cost_cents) =
                by_budget.get(campaign).copied().unwrap_or_default();
            CampaignReport {
                campaign: campaign.to_owned(),
                total: cell(&all, m, None, None),
                cells: cells
                    .iter()
                    .map(|((tier, seg), units)| {
                        let us: Vec<&Unit> = units.iter().collect();
                        cell(&us, m, Some(*tier), Some((*seg).to_owned()))
                    })
                    .collect(),
                unattributed_cost_cents: unattributed.get(campaign).copied().unwrap_or(0),
                learning_cost_cents,
                main_cost_cents,
                sessions_without_outcome: without_outcome.get(campaign).copied().unwrap_or(0),
            }
        })
        .collect();
    RoiReport {
        since_ms,
        margin_rate: m,
        campaigns,
        unmatched_outcomes,
        sessions_without_outcome: without_outcome.values().sum(),
    }
}

fn eur(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let a = cents.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

fn eur_f(cents: Option<f64>) -> String {
    match cents {
        Some(c) if c.is_finite() => format!("{:.2}", c / 100.0),
        _ => "n/a".into(),
    }
}

fn ci(i: Option<Interval>) -> String {
    match i {
        Some(i) => format!("[95% {}, {}]", eur_f(Some(i.lo)), eur_f(Some(i.hi))),
        None => "[95% n/a]".into(),
    }
}

fn pct(r: Option<f64>) -> String {
    r.map_or("n/a".into(), |r| format!("{:.1}%", 100.0 * r))
}

fn write_cell(out: &mut String, c: &CellReport) {
    let tier = c.policy_tier_cents.map_or("all".to_owned(), |t| {
        if t == 0 {
            "none".into()
        } else {
            eur(t)
        }
    });
    let seg = c.segment.as_deref().unwrap_or("all");
    for (i, (arm, s)) in [("treatment", &c.treatment), ("holdout", &c.holdout)]
        .into_iter()
        .enumerate()
    {
        let (tier, seg) = if i == 0 {
            (tier.as_str(), seg)
        } else {
            ("", "")
        };
        let _ = writeln!(
            out,
            "  {tier:<8} {seg:<9} {arm:<9} {:>9} {:>8} {:>6} {:>7} {:>12} {:>12} {:>12}",
            s.sessions,
            s.offered,
            s.conversions,
            pct(s.conversion_rate),
            eur(s.revenue_cents),
            eur(s.voucher_cost_cents),
            eur_f(s.mean_margin_cents),
        );
    }
    let inc = &c.incremental;
    let roi = inc.roi.map_or("n/a".into(), |r| format!("{r:.2}"));
    let _ = writeln!(
        out,
        "  {:<18} incremental margin {} {}  voucher cost {}  net {} {}  ROI {roi}",
        "",
        eur_f(inc.margin_cents),
        ci(inc.margin_ci95),
        eur(inc.voucher_cost_cents),
        eur_f(inc.net_margin_cents),
        ci(inc.net_margin_ci95),
    );
}

/// A fixed-width table for the terminal (amounts in EUR, intervals 95 %).
pub fn render_table(r: &RoiReport) -> String {
    let mut out = String::new();
    let since = r
        .since_ms
        .map_or("all decisions".to_owned(), |s| format!("since {s} ms"));
    let _ = writeln!(
        out,
        "ROI report ({since}; margin rate {}; amounts in EUR): incremental = treatment vs holdout, intention-to-treat; ROI = incremental margin / voucher cost",
        r.margin_rate
    );
    if r.campaigns.is_empty() {
        out.push_str("no eligible sessions\n");
    }
    if r.unmatched_outcomes > 0 {
        let _ = writeln!(
            out,
            "outcomes of sessions without an eligible decision (not counted): {}",
            r.unmatched_outcomes
        );
    }
    if !r.campaigns.is_empty() {
        let sessions: u64 = r.campaigns.iter().map(campaign_sessions).sum();
        let _ = writeln!(
            out,
            "{}",
            without_outcome_line(r.sessions_without_outcome, sessions)
        );
    }
    for c in &r.campaigns {
        let _ = writeln!(
            out,
            "\ncampaign {}  (voucher cost: main budget {} EUR, learning budget {} EUR; unattributed {} EUR)",
            c.campaign,
            eur(c.main_cost_cents),
            eur(c.learning_cost_cents),
            eur(c.unattributed_cost_cents)
        );
        let _ = writeln!(
            out,
            "  {:<8} {:<9} {:<9} {:>9} {:>8} {:>6} {:>7} {:>12} {:>12} {:>12}",
            "tier",
            "segment",
            "arm",
            "sessions",
            "offered",
            "conv",
            "rate",
            "revenue EUR",
            "voucher EUR",
            "margin/sess"
        );
        for cell in &c.cells {
            write_cell(&mut out, cell);
        }
        write_cell(&mut out, &c.total);
        let _ = writeln!(
            out,
            "  {}",
            without_outcome_line(c.sessions_without_outcome, campaign_sessions(c))
        );
    }
    out
}

/// Every reported session of a campaign, both arms.
fn campaign_sessions(c: &CampaignReport) -> u64 {
    c.total.treatment.sessions + c.total.holdout.sessions
}

fn without_outcome_line(without: u64, sessions: u64) -> String {
    format!(
        "sessions without a recorded outcome: {} of {} (counted as not converted)",
        thousands(without),
        thousands(sessions)
    )
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_variance() {
        assert_eq!(mean_var(&[]), (None, None));
        assert_eq!(mean_var(&[3.0]), (Some(3.0), None));
        let (m, v) = mean_var(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, Some(2.5));
        assert!((v.unwrap() - 5.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn difference_needs_both_arms() {
        assert_eq!(diff_estimate(&[1.0, 2.0], &[]), (None, None));
        let (d, ci) = diff_estimate(&[4.0], &[1.0, 3.0]);
        assert_eq!(d, Some(2.0));
        assert_eq!(ci, None);
        let (d, ci) = diff_estimate(&[4.0, 6.0], &[1.0, 3.0]);
        assert_eq!(d, Some(6.0));
        // var 2 each: half-width 1.96 * sqrt(2/2 + 2/2), times n_T = 2.
        let half = 2.0 * 1.96 * 2f64.sqrt();
        let ci = ci.unwrap();
        assert!((ci.lo - (6.0 - half)).abs() < 1e-12 && (ci.hi - (6.0 + half)).abs() < 1e-12);
    }

    #[test]
    fn empty_input_is_an_empty_report() {
        let r = roi_report(&ReportInput {
            decisions: &[],
            outcomes: &[],
            captured: &[],
            margin_rate: 0.3,
            since_ms: None,
        });
        assert!(r.campaigns.is_empty());
        assert!(render_table(&r).contains("no eligible sessions"));
    }

    #[test]
    fn money_formats_in_euros() {
        assert_eq!(eur(0), "0.00");
        assert_eq!(eur(1_234_567), "12345.67");
        assert_eq!(eur(-5), "-0.05");
        assert_eq!(eur_f(Some(-150.0)), "-1.50");
        assert_eq!(eur_f(None), "n/a");
    }
}
