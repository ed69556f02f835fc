//! The replay report as text for a person at a terminal.

use super::options::Reward;
use super::report::{Estimates, ReplayReport};

/// The human-readable report.
pub fn render_text(r: &ReplayReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let c = &r.coverage;
    let scale = match r.reward {
        Reward::Net => 0.01,
        Reward::Conversion => 1.0,
    };
    let unit = match r.reward {
        Reward::Net => "EUR",
        Reward::Conversion => "conversions",
    };
    let _ = writeln!(s, "candidate  {}  (reward: {:?})", r.candidate, r.reward);
    let _ = writeln!(
        s,
        "sessions   {} evaluated of {} ({} holdout, {} never eligible of which {} unsupported, {} without outcome); {:.2} days",
        r.sessions,
        c.sessions,
        c.holdout_sessions,
        c.not_eligible_sessions,
        c.unsupported_sessions,
        c.sessions_without_outcome,
        c.days
    );
    let _ = writeln!(
        s,
        "logging    explore share {:.4} ({} explored sessions), propensity mismatches {}, paced decisions {}, budget-exhausted decisions {}",
        c.explore_share,
        c.explored_sessions,
        c.propensity_mismatches,
        c.paced_decisions,
        c.budget_exhausted_decisions
    );
    let _ = writeln!(
        s,
        "overlap    {} matching sessions, effective sample size {:.1}, max weight {:.2}",
        r.matches, r.effective_sample_size, r.max_weight
    );
    let _ = write!(s, "actions    (amount: logged / candidate)");
    for (a, l, k) in &r.actions {
        let _ = write!(s, "  {a}: {l} / {k}");
    }
    let _ = writeln!(s);
    let mut block = |title: &str, e: &Estimates| {
        let _ = writeln!(s, "{title}");
        for (name, i) in [
            ("IPS", &e.ips),
            ("SNIPS", &e.snips),
            ("DR", &e.dr),
            ("direct", &e.direct),
            ("logged", &e.logged),
        ] {
            let _ = writeln!(
                s,
                "  {name:<7} {:>12.4} {unit}  95 % [{:.4}, {:.4}]",
                i.estimate * scale,
                i.lo * scale,
                i.hi * scale
            );
        }
    };
    block("value per session", &r.per_session);
    if let (Some(d), Some(k)) = (&r.per_day, r.sessions_per_day) {
        block(&format!("value per day ({k:.1} sessions/day)"), d);
    }
    s
}
