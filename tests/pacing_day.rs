//! Acceptance test for budget pacing on a simulated day.
//!
//! "Pacing on a simulated day (generator traffic, virtual clock, demand above
//! budget): cumulative spend within +-10 % of the target curve at every hour
//! after the first, and the budget lasts until at least 95 % of the day."
//!
//! The simulation, in two stages:
//!
//! 1. **Decision moments** (independent of pacing, computed once): a seeded
//!    [`Generator`] produces 24 h of sessions starting at midnight; every
//!    decision point of every session is replayed through the serving path
//!    ([`synth::state_at`] + [`engine::assess`] with the shipped
//!    `models/default.json` and the default policy, offering on its priors).
//!    A moment is kept when
//!    the unpaced rule would offer something: a shadow price can only remove
//!    offers, never create them, so the others can never spend.
//! 2. **The day** (once per policy): the moments of all sessions in time
//!    order; before each, the pacer is fed the virtual clock and today's
//!    spend ([`Pacer::update`]), then [`policy::choose`] runs with
//!    [`Pacer::lambda`] and the best-ranked tier that fits under the cap is
//!    reserved (spend = face value at offer time, as the ledger authorises
//!    it). At most one offer per session.
//!
//! The cap is set from the measured unpaced demand (demand / cap = 2.5, see
//! [`DEMAND_OVER_CAP`]), so the test keeps its meaning if the model or the
//! generator changes.
//!
//! Run with `--nocapture` to see the hourly trajectories.

use nudge::config::RawConfig;
use nudge::domain::model::{ClientFeatures, Model};
use nudge::domain::pacing::{target_fraction, Pacer, PacingConfig};
use nudge::domain::policy::{self, Policy, Segment, Verdict};
use nudge::engine;
use nudge::sim::synth::{self, Generator, GeneratorConfig};
use std::path::Path;
use std::sync::OnceLock;

const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
/// 2024-01-01T00:00:00Z: the simulated day starts at (UTC = local) midnight.
const DAY_START_MS: i64 = 1_704_067_200_000;
const SESSIONS_PER_HOUR: f64 = 2_000.0;
const SEED: u64 = 20_240_101;
/// Unpaced demand over the cap: "demand clearly above budget".
const DEMAND_OVER_CAP: f64 = 2.5;

/// A decision moment at which the unpaced rule offers a voucher.
#[derive(Clone, Copy, Debug)]
struct Moment {
    at_ms: i64,
    session: u32,
    p0: f64,
    segment: Segment,
    intent_cents: i64,
}

struct Day {
    policy: Policy,
    moments: Vec<Moment>,
    sessions: usize,
    decision_points: usize,
}

fn day() -> &'static Day {
    static DAY: OnceLock<Day> = OnceLock::new();
    DAY.get_or_init(|| {
        let model = Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"))
            .expect("models/default.json");
        // Pacing is about spending a budget the rule wants to exceed: the
        // default policy with offers on the priors, as greedy offers on a
        // learned response would be.
        let mut policy = RawConfig::default().validate().expect("defaults").policy;
        policy.offer_on_priors = true;
        let client = ClientFeatures::default();
        let end_ms = DAY_START_MS + MS_PER_DAY;
        let mut moments = Vec::new();
        let (mut sessions, mut decision_points) = (0, 0);
        let generator = Generator::new(GeneratorConfig {
            seed: SEED,
            start_ms: DAY_START_MS,
            sessions_per_hour: SESSIONS_PER_HOUR,
            ..GeneratorConfig::default()
        });
        for (i, s) in generator
            .take_while(|s| s.events[0].at_ms < end_ms)
            .enumerate()
        {
            sessions += 1;
            for p in s.decision_points.iter().filter(|p| p.at_ms < end_ms) {
                decision_points += 1;
                let state = synth::state_at(&s, p.after_events);
                let a = engine::assess(&state, &client, None, p.at_ms, &model, &policy, 0.0)
                    .expect("session model scores");
                // assess with lambda = 0: the unpaced verdict.
                if matches!(a.verdict, Verdict::Offer { .. }) {
                    moments.push(Moment {
                        at_ms: p.at_ms,
                        session: u32::try_from(i).expect("few sessions"),
                        p0: a.score.probability,
                        segment: a.segment,
                        intent_cents: a.intent_value_cents,
                    });
                }
            }
        }
        moments.sort_by_key(|m| (m.at_ms, m.session));
        Day {
            policy,
            moments,
            sessions,
            decision_points,
        }
    })
}

/// What one simulated day did.
#[derive(Debug)]
struct DayRun {
    /// Cumulative spend at each hour boundary 0..=24.
    spent_at_hour: [i64; 25],
    /// Day fraction at which the remaining budget fell below the smallest
    /// tier (None: never).
    exhausted_at: Option<f64>,
    offers: u64,
    spent: i64,
    /// Sum of the model's expected net value (ENV) of the offers made.
    expected_net_value_cents: i64,
    /// lambda at each hour boundary 0..=24.
    lambda_at_hour: [f64; 25],
}

/// Runs the day with `cap_cents` and an optional pacer (None = unpaced).
fn run(d: &Day, cap_cents: i64, pacer: Option<&Pacer>) -> DayRun {
    let smallest = d
        .policy
        .tiers
        .iter()
        .map(|t| t.amount_cents)
        .min()
        .expect("tiers");
    let mut offered = vec![false; d.sessions];
    let mut r = DayRun {
        spent_at_hour: [0; 25],
        exhausted_at: None,
        offers: 0,
        spent: 0,
        expected_net_value_cents: 0,
        lambda_at_hour: [0.0; 25],
    };
    let mut next_hour = 1;
    for m in &d.moments {
        let t = (m.at_ms - DAY_START_MS) as f64 / MS_PER_DAY as f64;
        while next_hour <= 24 && m.at_ms >= DAY_START_MS + next_hour as i64 * MS_PER_HOUR {
            r.spent_at_hour[next_hour] = r.spent;
            r.lambda_at_hour[next_hour] = pacer.map_or(0.0, Pacer::lambda);
            next_hour += 1;
        }
        // The engine feeds the pacer on every decision (rate-limited inside).
        let lambda = pacer.map_or(0.0, |p| p.update(t, r.spent, cap_cents));
        if offered[m.session as usize] {
            continue;
        }
        let Verdict::Offer { ranked } =
            policy::choose(m.p0, m.segment, m.intent_cents, &d.policy, lambda)
        else {
            continue;
        };
        let remaining = cap_cents - r.spent;
        if let Some(c) = ranked
            .iter()
            .flatten()
            .find(|c| c.amount_cents <= remaining)
        {
            r.spent += c.amount_cents;
            r.offers += 1;
            r.expected_net_value_cents += c.net_value_cents;
            offered[m.session as usize] = true;
            if r.exhausted_at.is_none() && cap_cents - r.spent < smallest {
                r.exhausted_at = Some(t);
            }
        }
    }
    for h in next_hour..=24 {
        r.spent_at_hour[h] = r.spent;
        r.lambda_at_hour[h] = pacer.map_or(0.0, Pacer::lambda);
    }
    r
}

/// Unpaced demand (face value the greedy rule offers with no cap) and the
/// cap derived from it, rounded to whole euros.
fn demand_and_cap(d: &Day) -> (i64, i64) {
    let demand = run(d, i64::MAX / 4, None).spent;
    let cap = ((demand as f64 / DEMAND_OVER_CAP) / 100.0).round() as i64 * 100;
    (demand, cap)
}

fn print_run(name: &str, cfg: &PacingConfig, r: &DayRun, cap: i64) {
    println!(
        "{name}: {} offers, spent {} of {cap} cents, expected net value {} cents",
        r.offers, r.spent, r.expected_net_value_cents
    );
    println!("  hour  target  spent   dev     lambda");
    for h in 1..=24 {
        let target = target_fraction(cfg, h as f64 / 24.0);
        let share = r.spent_at_hour[h] as f64 / cap as f64;
        println!(
            "  {h:>4}  {target:>6.3}  {share:>6.3}  {:>+6.3}  {:>7.3}",
            share - target,
            r.lambda_at_hour[h]
        );
    }
    println!("  exhausted at {:?} of the day", r.exhausted_at);
}

/// Largest |spent/cap - target| over hours 1..=24.
fn max_deviation(cfg: &PacingConfig, r: &DayRun, cap: i64) -> (f64, usize) {
    (1..=24)
        .map(|h| {
            let target = target_fraction(cfg, h as f64 / 24.0);
            ((r.spent_at_hour[h] as f64 / cap as f64 - target).abs(), h)
        })
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Largest |spent/cap - target| / target over hours 1..=24.
fn max_relative_deviation(cfg: &PacingConfig, r: &DayRun, cap: i64) -> (f64, usize) {
    (1..=24)
        .map(|h| {
            let target = target_fraction(cfg, h as f64 / 24.0);
            let dev = (r.spent_at_hour[h] as f64 / cap as f64 - target).abs();
            (if target > 0.0 { dev / target } else { dev }, h)
        })
        .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
}

/// Demand, cap and the traffic, printed once per test.
fn setup() -> (&'static Day, i64) {
    let d = day();
    let (demand, cap) = demand_and_cap(d);
    println!(
        "{} sessions, {} decision points, {} moments with an unpaced offer; \
         unpaced demand {demand} cents/day, cap {cap} cents/day: demand/cap = {:.2}",
        d.sessions,
        d.decision_points,
        d.moments.len(),
        demand as f64 / cap as f64
    );
    assert!(
        demand as f64 / cap as f64 > 2.0,
        "demand must be clearly above the budget"
    );
    (d, cap)
}

// "Within +-10 % of the target curve" is read as an absolute band of 10 %
// of the daily budget around the curve: |spent(h)/cap - target(h)| <= 0.10.
// That is how a budget owner reads a spend curve (a point on a 0-100 %
// chart), and it is why the issue exempts the first hour: relative to a
// target of 4.2 % of the budget, 10 % would be 0.4 % of the budget, i.e. a
// couple of vouchers on a small cap, and a cold-started controller (lambda =
// 0 at midnight) spends at the full unpaced rate until it has seen enough
// to react. The stricter relative reading is checked on the warm-started
// day below, which is what production runs (new_day() keeps yesterday's
// lambda).
const BAND: f64 = 0.10;

#[test]
fn paced_day_follows_the_even_curve_and_the_budget_lasts() {
    let (d, cap) = setup();
    let cfg = PacingConfig::default();
    let pacer = Pacer::new(cfg.clone());
    let r = run(d, cap, Some(&pacer));
    print_run("paced, cold start (lambda = 0 at midnight)", &cfg, &r, cap);
    let (dev, hour) = max_deviation(&cfg, &r, cap);
    println!("max |spent/cap - target| = {dev:.4} at hour {hour}");
    assert!(dev <= BAND, "deviation {dev:.4} at hour {hour}");
    assert!(
        r.exhausted_at.is_none_or(|t| t >= 0.95),
        "ran out at {:?}",
        r.exhausted_at
    );
    // Pacing must not strand the budget either.
    assert!(r.spent as f64 >= 0.95 * cap as f64, "spent {}", r.spent);
}

#[test]
fn unpaced_day_runs_out_before_noon() {
    let (d, cap) = setup();
    let cfg = PacingConfig {
        enabled: false,
        ..PacingConfig::default()
    };
    let pacer = Pacer::new(cfg.clone());
    let r = run(d, cap, Some(&pacer));
    print_run("pacing disabled", &cfg, &r, cap);
    let t = r
        .exhausted_at
        .expect("an unpaced day at 2.5x demand runs out");
    println!("unpaced budget exhausted at {t:.3} of the day");
    assert!(t < 0.5, "unpaced ran out at {t}");
    // Disabled pacing is exactly the greedy rule.
    let greedy = run(d, cap, None);
    assert_eq!(greedy.spent_at_hour, r.spent_at_hour);
}

#[test]
fn warm_started_day_tracks_the_curve_within_10_percent_relative() {
    let (d, cap) = setup();
    let cfg = PacingConfig::default();
    let pacer = Pacer::new(cfg.clone());
    run(d, cap, Some(&pacer));
    pacer.new_day();
    println!("warm start lambda {:.3}", pacer.lambda());
    // Same traffic again (demand is similar day to day).
    let r = run(d, cap, Some(&pacer));
    print_run("paced, second day (warm start)", &cfg, &r, cap);
    let (dev, hour) = max_deviation(&cfg, &r, cap);
    let (rel, rel_hour) = max_relative_deviation(&cfg, &r, cap);
    println!(
        "max |spent/cap - target| = {dev:.4} at hour {hour}; relative {rel:.4} at hour {rel_hour}"
    );
    assert!(
        rel <= 0.10,
        "relative deviation {rel:.4} at hour {rel_hour}"
    );
    assert!(r.exhausted_at.is_none_or(|t| t >= 0.95));
}

#[test]
fn paced_day_follows_a_custom_curve() {
    let (d, cap) = setup();
    // Quiet night, busy evening (the curve has to stay below demand: the
    // peak weight 1.8 / mean 0.975 < 2.5).
    let mut w = [1.0; 24];
    for (h, v) in w.iter_mut().enumerate() {
        *v = match h {
            0..=6 => 0.4,
            7..=16 => 1.0,
            17..=21 => 1.8,
            _ => 0.8,
        };
    }
    let cfg = PacingConfig {
        hourly_weights: w,
        ..PacingConfig::default()
    };
    cfg.validate().unwrap();
    let pacer = Pacer::new(cfg.clone());
    let r = run(d, cap, Some(&pacer));
    print_run("paced, custom curve, cold start", &cfg, &r, cap);
    let (dev, hour) = max_deviation(&cfg, &r, cap);
    println!("max |spent/cap - target| = {dev:.4} at hour {hour}");
    assert!(dev <= BAND, "deviation {dev:.4} at hour {hour}");
    assert!(r.exhausted_at.is_none_or(|t| t >= 0.95));
}

#[test]
fn pacing_buys_more_expected_value_with_the_same_budget() {
    let (d, cap) = setup();
    let paced = run(d, cap, Some(&Pacer::new(PacingConfig::default())));
    let greedy = run(d, cap, None);
    println!(
        "expected net value: paced {} cents ({} offers), unpaced {} cents ({} offers)",
        paced.expected_net_value_cents,
        paced.offers,
        greedy.expected_net_value_cents,
        greedy.offers
    );
    // Both spend (almost) the whole budget; the shadow price spends it on
    // the offers that earn most per euro instead of the morning's.
    assert!(paced.expected_net_value_cents > greedy.expected_net_value_cents);
}
