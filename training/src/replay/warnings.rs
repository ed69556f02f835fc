//! When the estimates are too thin to act on: what `nudge-train replay`
//! warns about, with what to do. The thresholds are rules of thumb, not
//! tests: they flag a report a person should not take at face value.
//!
//! - **Zero-width interval**: IPS, SNIPS or DR with a standard error of 0
//!   (no matching session, one, or all matching sessions with the same
//!   reward): the interval claims a certainty the data cannot give.
//! - **Effective sample size** (Kish, of the importance weights) under
//!   [`MIN_EFFECTIVE_SAMPLE_SIZE`]: the estimate rests on fewer than that
//!   many sessions' worth of evidence, however many were read.
//! - **Disagreement**: IPS, SNIPS and DR estimate the same value; when the
//!   largest magnitude is more than [`DISAGREEMENT_FACTOR`] times the
//!   smallest, or their signs differ, the weights or the direct model are
//!   not to be trusted on this data.

use super::estimate::Interval;
use super::report::Estimates;

/// Below this Kish effective sample size the estimates are flagged.
pub const MIN_EFFECTIVE_SAMPLE_SIZE: f64 = 100.0;

/// IPS, SNIPS and DR further apart than this factor are flagged.
pub const DISAGREEMENT_FACTOR: f64 = 2.0;

const ADVICE: &str =
    "evaluate more days of logs, or raise experiment.explore_share so more sessions are randomised";

/// The warnings for per-session estimates with `ess` effective sessions
/// and `matches` sessions where the candidate agrees with the log.
pub fn warnings(e: &Estimates, ess: f64, matches: usize) -> Vec<String> {
    let mut out = Vec::new();
    let named = [("IPS", &e.ips), ("SNIPS", &e.snips), ("DR", &e.dr)];
    let zero: Vec<&str> = named
        .iter()
        .filter(|(_, i)| i.se.is_nan() || i.se <= 0.0)
        .map(|(n, _)| *n)
        .collect();
    if !zero.is_empty() {
        out.push(format!(
            "the {} interval has zero width ({matches} sessions where the candidate matches the log): it is not a measure of certainty; {ADVICE}",
            zero.join(", ")
        ));
    }
    if ess < MIN_EFFECTIVE_SAMPLE_SIZE {
        out.push(format!(
            "effective sample size {ess:.1} is under {MIN_EFFECTIVE_SAMPLE_SIZE}: the estimates rest on too few sessions; {ADVICE}"
        ));
    }
    if let Some((lo, hi)) = disagreement(&[&e.ips, &e.snips, &e.dr]) {
        out.push(format!(
            "IPS {:.4}, SNIPS {:.4} and DR {:.4} disagree (|largest| / |smallest| = {}, more than {DISAGREEMENT_FACTOR}, or opposite signs): the weights or the direct model do not fit this data; {ADVICE}",
            e.ips.estimate,
            e.snips.estimate,
            e.dr.estimate,
            if lo > 0.0 { format!("{:.2}", hi / lo) } else { "inf".into() }
        ));
    }
    out
}

/// `Some((smallest, largest magnitude))` when the estimates disagree.
fn disagreement(xs: &[&Interval]) -> Option<(f64, f64)> {
    let v: Vec<f64> = xs.iter().map(|i| i.estimate).collect();
    if v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let lo = v.iter().map(|x| x.abs()).fold(f64::INFINITY, f64::min);
    let hi = v.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let mixed = v.iter().any(|x| *x > 0.0) && v.iter().any(|x| *x < 0.0);
    (mixed || hi > DISAGREEMENT_FACTOR * lo).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(ips: f64, snips: f64, dr: f64, se: f64) -> Estimates {
        let i = |x| Interval::new(x, se, 1.96);
        Estimates {
            ips: i(ips),
            snips: i(snips),
            dr: i(dr),
            direct: i(dr),
            logged: i(dr),
        }
    }

    #[test]
    fn thin_data_is_flagged_and_solid_data_is_not() {
        assert!(warnings(&est(100.0, 110.0, 105.0, 3.0), 500.0, 400).is_empty());
        let w = warnings(&est(100.0, 110.0, 105.0, 0.0), 500.0, 1);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("zero width") && w[0].contains("explore_share"));
        let w = warnings(&est(100.0, 110.0, 105.0, 3.0), 42.0, 50);
        assert!(w[0].contains("effective sample size 42.0") && w[0].contains("more days"));
        let w = warnings(&est(100.0, 310.0, 105.0, 3.0), 500.0, 400);
        assert!(w[0].contains("disagree") && w[0].contains("3.10"), "{w:?}");
        let w = warnings(&est(-1.0, 1.0, 1.0, 3.0), 500.0, 400);
        assert!(w[0].contains("inf") || w[0].contains("disagree"));
    }
}
