//! "The report's numbers equal a hand-computed example in a test."
//!
//! A tiny log with every number worked out by hand below. Margin rate 0.30,
//! `since_ms = 1000`. Amounts in cents.
//!
//! Campaign `spring`, policy tier 1000, segment hesitant:
//!
//! | session | arm       | offered | outcome (latest)       | r_i    | c_i  | g_i = 0.3 r | g_i - c_i |
//! |---------|-----------|---------|------------------------|--------|------|-------------|-----------|
//! | t1      | treatment | 1000    | converted 10000        | 10000  | 1000 | 3000        | 2000      |
//! | t2      | treatment | 1000    | converted 20000 (*)    | 20000  | 1000 | 6000        | 5000      |
//! | t3      | treatment | 1000    | not converted          | 0      | 0    | 0           | 0         |
//! | t4      | treatment | none    | no outcome record      | 0      | 0    | 0           | 0         |
//! | h1      | holdout   | none    | converted 10000 (x2)   | 10000  | 0    | 3000        | 3000      |
//! | h2      | holdout   | none    | not converted          | 0      | 0    | 0           | 0         |
//! | h3      | holdout   | none    | not converted          | 0      | 0    | 0           | 0         |
//! | h4      | holdout   | none    | no outcome record      | 0      | 0    | 0           | 0         |
//!
//! (*) t2 first reported "not converted" at 2000, then "converted 20000" at
//! 3000: the latest wins. h1's outcome is sent twice: it counts once. t4 got
//! nothing (budget exhausted) and stays in treatment (intention-to-treat).
//! t1 has a second eligible decision with policy tier 2000: its first
//! eligible decision (tier 1000) defines its cell. h2 has an earlier
//! non-eligible decision: ignored.
//!
//! Treatment g: [3000, 6000, 0, 0], mean 2250,
//!   squared deviations 750² + 3750² + 2250² + 2250² = 562500 + 14062500 +
//!   5062500 + 5062500 = 24750000, sample var 24750000 / 3 = 8250000.
//! Holdout g: [3000, 0, 0, 0], mean 750,
//!   2250² + 3 * 750² = 5062500 + 1687500 = 6750000, var 2250000.
//! M = n_T (2250 - 750) = 4 * 1500 = 6000.
//! se = sqrt(8250000/4 + 2250000/4) = sqrt(2625000);
//!   CI = 4 * (1500 -+ 1.96 sqrt(2625000)).
//! C = 1000 + 1000 = 2000; net = 6000 - 2000 = 4000; ROI = 6000 / 2000 = 3.
//! Treatment g - c: [2000, 5000, 0, 0], mean 1750,
//!   250² + 3250² + 1750² + 1750² = 62500 + 10562500 + 3062500 + 3062500 =
//!   16750000, var 16750000 / 3.
//!   net CI = 4 * ((1750 - 750) -+ 1.96 sqrt((16750000/3)/4 + 2250000/4)).
//! Conversions: T 2/4 = 0.5, H 1/4 = 0.25; incremental 4 * 0.25 = 1.
//! Revenue T 30000, H 10000. Offered: T 3 (t1, t2, t3), H 0.
//!
//! Campaign `spring`, policy tier 2000, hesitant: t5 only (treatment,
//! offered 2000, converted 30000, captured 2000): g = 9000, net 7000. No
//! holdout: M, CI and ROI undefined; C = 2000.
//!
//! Campaign `spring` total (t1..t5 vs h1..h4):
//!   T g: [3000, 6000, 0, 0, 9000], sum 18000, mean 3600,
//!   600² + 2400² + 3600² + 3600² + 5400² = 360000 + 5760000 + 12960000 +
//!   12960000 + 29160000 = 61200000, var 61200000 / 4 = 15300000.
//!   M = 5 * (3600 - 750) = 14250; CI = 5 * (2850 -+ 1.96 sqrt(15300000/5 +
//!   2250000/4)) = 5 * (2850 -+ 1.96 sqrt(3622500)).
//!   C = 4000; net = 10250; ROI = 14250 / 4000 = 3.5625.
//!   T g - c: [2000, 5000, 0, 0, 7000], mean 2800, 800² + 2200² + 2800² +
//!   2800² + 4200² = 640000 + 4840000 + 7840000 + 7840000 + 17640000 =
//!   38800000, var 9700000; net CI = 5 * (2050 -+ 1.96 sqrt(9700000/5 +
//!   2250000/4)) = 5 * (2050 -+ 1.96 sqrt(2502500)).
//!   Conversions T 3/5 = 0.6, H 0.25: incremental 5 * 0.35 = 1.75.
//!   Revenue T 60000.
//!   x1 (spring, eligible, treatment, converted, captured 1000) decided at
//!   500 < since: excluded, its captured 1000 is unattributed.
//!   n1 (spring, not eligible, converted): ignored.
//!   Learning cost: t5's voucher was an exploration voucher (learning
//!   budget): learning 2000, main 1000 + 1000 + 1000 (x1) = 3000; together
//!   the voucher cost of both arms (4000) plus the unattributed 1000.
//!
//! Campaign `autumn`, policy tier 500:
//!   cell cold: a3 (treatment, eligible cold visitor, no outcome): T [0].
//!   cell hesitant: a1 (treatment, converted 15000, captured 500): g 4500,
//!   net 4000; a2 (holdout, not converted): g 0.
//!     M = 1 * (4500 - 0) = 4500, no CI (arms of 1), C = 500, net 4000,
//!     ROI 9.
//!   total: T g [4500, 0] mean 2250, H [0]: M = 2 * 2250 = 4500, no CI,
//!     C = 500, net 4000, ROI 9; conversions T 1/2, H 0/1: incremental
//!     2 * 0.5 = 1.

use nudge::decision_log::{DecisionRecord, OutcomeRecord, LOG_FORMAT_VERSION};
use nudge::report::{render_table, roi_report, Captured, CellReport, Interval, ReportInput};
use std::collections::BTreeMap;

#[allow(clippy::too_many_arguments)]
fn decision(
    session: &str,
    campaign: &str,
    at_ms: i64,
    eligible: bool,
    holdout: bool,
    segment: &str,
    policy_tier_cents: i64,
    action_cents: i64,
) -> DecisionRecord {
    DecisionRecord {
        v: LOG_FORMAT_VERSION,
        at_ms,
        session_id: session.into(),
        visitor_id: None,
        campaign: campaign.into(),
        model_version: "m".into(),
        features: BTreeMap::new(),
        client_features: BTreeMap::new(),
        client_categorical: BTreeMap::new(),
        probability: 0.3,
        segment: segment.into(),
        intent_value_cents: 15_000,
        eligible,
        policy_tier_cents,
        action_cents,
        propensity: 1.0,
        holdout,
        explored: false,
        learning: false,
        lambda: 0.0,
        reason: if action_cents > 0 {
            "offered"
        } else {
            "holdout"
        }
        .into(),
        voucher_code: None,
        last_exit_intent_ms: None,
    }
}

fn outcome(session: &str, at_ms: i64, converted: bool, order_value_cents: i64) -> OutcomeRecord {
    OutcomeRecord {
        v: LOG_FORMAT_VERSION,
        at_ms,
        session_id: session.into(),
        converted,
        order_value_cents,
    }
}

fn captured(campaign: &str, session: &str, amount_cents: i64) -> Captured {
    Captured {
        campaign: campaign.into(),
        session_id: session.into(),
        amount_cents,
        learning: false,
    }
}

struct Data {
    decisions: Vec<DecisionRecord>,
    outcomes: Vec<OutcomeRecord>,
    captured: Vec<Captured>,
}

fn data() -> Data {
    let (t, f) = (true, false);
    let decisions = vec![
        decision("x1", "spring", 500, t, f, "hesitant", 1_000, 1_000),
        decision("t1", "spring", 1_000, t, f, "hesitant", 1_000, 1_000),
        decision("t2", "spring", 1_010, t, f, "hesitant", 1_000, 1_000),
        decision("t3", "spring", 1_020, t, f, "hesitant", 1_000, 1_000),
        decision("t4", "spring", 1_030, t, f, "hesitant", 1_000, 0),
        decision("h1", "spring", 1_040, t, t, "hesitant", 1_000, 0),
        decision("h2", "spring", 1_045, f, t, "cold", 0, 0),
        decision("h2", "spring", 1_050, t, t, "hesitant", 1_000, 0),
        decision("h3", "spring", 1_060, t, t, "hesitant", 1_000, 0),
        decision("h4", "spring", 1_070, t, t, "hesitant", 1_000, 0),
        decision("t5", "spring", 1_080, t, f, "hesitant", 2_000, 2_000),
        decision("n1", "spring", 1_090, f, f, "hot", 0, 0),
        // t1 again, later, with another policy tier: the first one counts.
        decision("t1", "spring", 1_500, t, f, "hesitant", 2_000, 0),
        decision("a1", "autumn", 1_100, t, f, "hesitant", 500, 500),
        decision("a2", "autumn", 1_110, t, t, "hesitant", 500, 0),
        decision("a3", "autumn", 1_120, t, f, "cold", 500, 0),
    ];
    let outcomes = vec![
        outcome("x1", 900, true, 50_000),
        outcome("t1", 2_000, true, 10_000),
        outcome("t2", 2_000, false, 0),
        outcome("t2", 3_000, true, 20_000),
        outcome("t3", 2_000, false, 0),
        outcome("h1", 2_000, true, 10_000),
        outcome("h1", 2_000, true, 10_000),
        outcome("h2", 2_000, false, 0),
        outcome("h3", 2_000, false, 0),
        outcome("t5", 2_000, true, 30_000),
        outcome("n1", 2_000, true, 40_000),
        outcome("a1", 2_000, true, 15_000),
        outcome("a2", 2_000, false, 0),
    ];
    let captured = vec![
        captured("spring", "x1", 1_000),
        captured("spring", "t1", 1_000),
        captured("spring", "t2", 1_000),
        Captured {
            learning: true,
            ..captured("spring", "t5", 2_000)
        },
        captured("autumn", "a1", 500),
    ];
    Data {
        decisions,
        outcomes,
        captured,
    }
}

fn report() -> nudge::report::RoiReport {
    let d = data();
    roi_report(&ReportInput {
        decisions: &d.decisions,
        outcomes: &d.outcomes,
        captured: &d.captured,
        margin_rate: 0.30,
        since_ms: Some(1_000),
    })
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-9, "{a} != {b}");
}

fn close_ci(got: Option<Interval>, n: f64, diff: f64, se: f64) {
    let ci = got.expect("interval");
    close(ci.lo, n * (diff - 1.96 * se));
    close(ci.hi, n * (diff + 1.96 * se));
}

fn find<'a>(cells: &'a [CellReport], tier: i64, segment: &str) -> &'a CellReport {
    cells
        .iter()
        .find(|c| c.policy_tier_cents == Some(tier) && c.segment.as_deref() == Some(segment))
        .unwrap_or_else(|| panic!("cell {tier} {segment}"))
}

#[test]
fn numbers_equal_the_hand_computed_example() {
    let r = report();
    assert_eq!(r.since_ms, Some(1_000));
    let names: Vec<&str> = r.campaigns.iter().map(|c| c.campaign.as_str()).collect();
    assert_eq!(names, ["autumn", "spring"]);
    let spring = &r.campaigns[1];
    assert_eq!(spring.unattributed_cost_cents, 1_000); // x1, before since
    assert_eq!(
        (spring.main_cost_cents, spring.learning_cost_cents),
        (3_000, 2_000)
    );
    assert_eq!(
        spring.main_cost_cents + spring.learning_cost_cents,
        spring.total.treatment.voucher_cost_cents
            + spring.total.holdout.voucher_cost_cents
            + spring.unattributed_cost_cents
    );
    assert_eq!(spring.cells.len(), 2);
    assert_eq!(spring.cells[0].policy_tier_cents, Some(1_000));
    assert_eq!(spring.cells[1].policy_tier_cents, Some(2_000));

    // spring, tier 1000, hesitant.
    let c = find(&spring.cells, 1_000, "hesitant");
    let (t, h, i) = (&c.treatment, &c.holdout, &c.incremental);
    assert_eq!((t.sessions, t.offered, t.conversions), (4, 3, 2));
    assert_eq!((h.sessions, h.offered, h.conversions), (4, 0, 1));
    close(t.conversion_rate.unwrap(), 0.5);
    close(h.conversion_rate.unwrap(), 0.25);
    assert_eq!((t.revenue_cents, h.revenue_cents), (30_000, 10_000));
    assert_eq!((t.voucher_cost_cents, h.voucher_cost_cents), (2_000, 0));
    close(t.mean_margin_cents.unwrap(), 2_250.0);
    close(t.mean_net_margin_cents.unwrap(), 1_750.0);
    close(h.mean_margin_cents.unwrap(), 750.0);
    close(h.mean_net_margin_cents.unwrap(), 750.0);
    close(i.conversions.unwrap(), 1.0);
    close(i.margin_cents.unwrap(), 6_000.0);
    close_ci(i.margin_ci95, 4.0, 1_500.0, 2_625_000f64.sqrt());
    assert_eq!(i.voucher_cost_cents, 2_000);
    close(i.net_margin_cents.unwrap(), 4_000.0);
    close_ci(
        i.net_margin_ci95,
        4.0,
        1_000.0,
        ((16_750_000.0 / 3.0) / 4.0 + 2_250_000.0 / 4.0f64).sqrt(),
    );
    close(i.roi.unwrap(), 3.0);

    // spring, tier 2000: treatment only.
    let c = find(&spring.cells, 2_000, "hesitant");
    assert_eq!((c.treatment.sessions, c.holdout.sessions), (1, 0));
    assert_eq!(c.treatment.revenue_cents, 30_000);
    close(c.treatment.mean_net_margin_cents.unwrap(), 7_000.0);
    assert_eq!(c.holdout.conversion_rate, None);
    assert_eq!(c.incremental.voucher_cost_cents, 2_000);
    assert_eq!(c.incremental.margin_cents, None);
    assert_eq!(c.incremental.margin_ci95, None);
    assert_eq!(c.incremental.net_margin_cents, None);
    assert_eq!(c.incremental.roi, None);

    // spring total.
    let c = &spring.total;
    assert_eq!((c.policy_tier_cents, c.segment.as_deref()), (None, None));
    assert_eq!((c.treatment.sessions, c.holdout.sessions), (5, 4));
    assert_eq!((c.treatment.conversions, c.treatment.offered), (3, 4));
    assert_eq!(c.treatment.revenue_cents, 60_000);
    close(c.treatment.conversion_rate.unwrap(), 0.6);
    close(c.incremental.conversions.unwrap(), 1.75);
    close(c.treatment.mean_margin_cents.unwrap(), 3_600.0);
    close(c.incremental.margin_cents.unwrap(), 14_250.0);
    close_ci(c.incremental.margin_ci95, 5.0, 2_850.0, 3_622_500f64.sqrt());
    assert_eq!(c.incremental.voucher_cost_cents, 4_000);
    close(c.incremental.net_margin_cents.unwrap(), 10_250.0);
    close_ci(
        c.incremental.net_margin_ci95,
        5.0,
        2_050.0,
        2_502_500f64.sqrt(),
    );
    close(c.incremental.roi.unwrap(), 3.5625);

    // autumn.
    let autumn = &r.campaigns[0];
    assert_eq!(autumn.unattributed_cost_cents, 0);
    let segs: Vec<&str> = autumn
        .cells
        .iter()
        .map(|c| c.segment.as_deref().unwrap())
        .collect();
    assert_eq!(segs, ["cold", "hesitant"]);
    let cold = find(&autumn.cells, 500, "cold");
    assert_eq!((cold.treatment.sessions, cold.holdout.sessions), (1, 0));
    assert_eq!(cold.incremental.margin_cents, None);
    let c = find(&autumn.cells, 500, "hesitant");
    assert_eq!((c.treatment.sessions, c.holdout.sessions), (1, 1));
    close(c.incremental.margin_cents.unwrap(), 4_500.0);
    assert_eq!(c.incremental.margin_ci95, None);
    assert_eq!(c.incremental.net_margin_ci95, None);
    close(c.incremental.net_margin_cents.unwrap(), 4_000.0);
    close(c.incremental.roi.unwrap(), 9.0);
    let c = &autumn.total;
    assert_eq!((c.treatment.sessions, c.holdout.sessions), (2, 1));
    close(c.incremental.margin_cents.unwrap(), 4_500.0);
    close(c.incremental.net_margin_cents.unwrap(), 4_000.0);
    close(c.incremental.conversions.unwrap(), 1.0);
    assert_eq!(c.incremental.margin_ci95, None);
    close(c.incremental.roi.unwrap(), 9.0);
}

#[test]
fn without_since_the_early_session_counts() {
    let d = data();
    let r = roi_report(&ReportInput {
        decisions: &d.decisions,
        outcomes: &d.outcomes,
        captured: &d.captured,
        margin_rate: 0.30,
        since_ms: None,
    });
    let spring = r.campaigns.iter().find(|c| c.campaign == "spring").unwrap();
    assert_eq!(spring.unattributed_cost_cents, 0);
    // x1 joins the tier-1000 cell's treatment: 5 sessions, revenue +50000.
    let c = find(&spring.cells, 1_000, "hesitant");
    assert_eq!(c.treatment.sessions, 5);
    assert_eq!(c.treatment.revenue_cents, 80_000);
    assert_eq!(c.incremental.voucher_cost_cents, 3_000);
}

#[test]
fn report_is_independent_of_input_order() {
    let mut d = data();
    let a = report();
    d.decisions.reverse();
    d.outcomes.reverse();
    d.captured.reverse();
    let b = roi_report(&ReportInput {
        decisions: &d.decisions,
        outcomes: &d.outcomes,
        captured: &d.captured,
        margin_rate: 0.30,
        since_ms: Some(1_000),
    });
    assert_eq!(a, b);
}

#[test]
fn json_round_trip() {
    let r = report();
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: nudge::report::RoiReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
    assert!(json.contains("\"campaign\": \"spring\""));
    assert!(json.contains("\"roi\": 3.5625"));
}

#[test]
fn table_shows_campaigns_and_roi() {
    let table = render_table(&report());
    println!("{table}");
    assert!(table.contains("campaign spring"));
    assert!(table.contains("campaign autumn"));
    assert!(table.contains("ROI 3.56"), "spring total ROI");
    assert!(table.contains("ROI 3.00"), "spring tier 10 EUR ROI");
    assert!(
        table.contains("ROI n/a"),
        "no holdout in spring tier 20 EUR"
    );
    assert!(
        table.contains("main budget 30.00 EUR, learning budget 20.00 EUR; unattributed 10.00 EUR"),
        "learning cost apart"
    );
    // Fixed width: every cell line of a campaign block has the same length.
    let widths: Vec<usize> = table
        .lines()
        .filter(|l| l.starts_with("  ") && (l.contains(" treatment ") || l.contains(" holdout ")))
        .map(str::len)
        .collect();
    assert!(
        widths.len() >= 10 && widths.iter().all(|w| *w == widths[0]),
        "{widths:?}"
    );
}

/// A session with no outcome recorded counts as not converted; the report
/// says how many there are, so that a shop that never records outcomes
/// sees why its conversions are zero.
#[test]
fn sessions_without_outcome_are_counted() {
    let r = report();
    let count = |name: &str| {
        r.campaigns
            .iter()
            .find(|c| c.campaign == name)
            .unwrap()
            .sessions_without_outcome
    };
    // spring: t4 and h4 of 9; autumn: a3 of 3 (x1 is before `since`).
    assert_eq!((count("spring"), count("autumn")), (2, 1));
    assert_eq!(r.sessions_without_outcome, 3);
    let table = render_table(&r);
    assert!(
        table.contains("sessions without a recorded outcome: 3 of 12 (counted as not converted)"),
        "{table}"
    );
    assert!(table.contains("sessions without a recorded outcome: 2 of 9"));
    let json = serde_json::to_string_pretty(&r).unwrap();
    assert!(json.contains("\"sessions_without_outcome\": 3"));

    // No outcome recorded at all: every session is counted.
    let d = data();
    let none = roi_report(&ReportInput {
        decisions: &d.decisions,
        outcomes: &[],
        captured: &d.captured,
        margin_rate: 0.30,
        since_ms: Some(1_000),
    });
    assert_eq!(none.sessions_without_outcome, 12);
    assert!(render_table(&none).contains("sessions without a recorded outcome: 12 of 12"));
}
