//! The policy simulator (`nudge simulate`): the same generated visitors, one
//! virtual day (or more), five voucher policies, one table.
//!
//! # Traffic and time
//!
//! One seeded [`Generator`] run: sessions arrive at
//! [`SimulateArgs::sessions_per_hour`] for [`SimulateArgs::hours`] starting
//! at local midnight (of 2024-01-01 in the configured budget time zone). A
//! session belongs to the run when its first event is inside the window; its
//! decision moments ([`GeneratedSession::decision_points`]) inside the window
//! are the moments every policy may act on, in global time order. Every
//! policy sees exactly the same visitors and moments.
//!
//! # Outcomes: common random numbers
//!
//! A session offered `v` cents converts iff [`Truth::converts_with`]`(v)`:
//! the session's own uniform draw against its true purchase probability with
//! the voucher's true lift. Offering nothing reproduces the generated outcome
//! exactly, and a voucher can only turn a non-buyer into a buyer, so the
//! differences between policies are the vouchers' doing, not noise from
//! different draws.
//!
//! - **Order value** (`V`): the generator's own rule, whether or not the
//!   generated session converted: the final cart value, else the price of the
//!   most-considered product, else the basket budget `B`. (For a session that
//!   converts without a voucher this is exactly `outcome.order_value_cents`;
//!   for one that converts only thanks to a voucher it is what it would have
//!   bought.) Revenue is counted at the full order value; the voucher is a
//!   separate cost.
//! - **Minimum order**: a voucher is only redeemable on an order of at least
//!   `voucher.min_order_cents` (default 9900). A voucher that can never be
//!   redeemed on the session's order does nothing: no lift, no cost (it is
//!   still offered and still uses budget).
//! - **Cost**: the face value of a voucher is paid only when it is redeemed,
//!   i.e. when the visitor converts (with an order above the minimum).
//! - **Budget**: the daily budget is consumed by the face value of every
//!   voucher *offered* (the ledger authorises the full amount at offer time
//!   and releases it only on expiry, 48 h later), per local day. So
//!   `budget_used <= budget` always, and `cost <= budget_used`.
//!
//! # Policies
//!
//! - **none**: no vouchers; the baseline.
//! - **blanket**: at a session's first moment with intent value >=
//!   `policy.min_intent_cents` (99 EUR), offer 10 EUR
//!   ([`SimulateArgs::blanket_voucher_cents`]) if the day's remaining budget
//!   allows; first come, first served, no pacing, at most one voucher per
//!   session.
//! - **heat-tier** (the published case: undecided, high-intent visitors get
//!   5/10/20 EUR by heat score): the heat score is the model's purchase
//!   probability; at a session's first moment that is hesitant (the model's
//!   segment thresholds `cold_below <= p < hot_at_or_above`) with intent >=
//!   99 EUR, the band is split in thirds of probability: the coldest third
//!   gets 20 EUR, the middle 10 EUR, the warmest 5 EUR (the exact bounds are
//!   in the report). Same budget rule as blanket.
//! - **nudge**: the real [`Engine`] (in-memory ledger and session store,
//!   [`ManualClock`]): every moment is a `decide` with the session's events
//!   since its previous decision (the context with the first), the clock set
//!   to the moment, and [`Engine::update_pacing`] at every simulated minute.
//!   Holdout and exploration run as configured (defaults 10 % / 5 %): the
//!   holdout gets nothing, which costs nudge margin; that is the honest
//!   comparison. **nudge-no-holdout** (optional) is the same with
//!   `holdout_share = 0` (exploration unchanged). **nudge-exit-intent**
//!   (optional, when the config offers at any decision) is the same with
//!   `policy.offer_on = "exit_intent"` (10 s window): it offers only at an
//!   exit-intent signal, where `p0` is close to how the session ends.
//! - **oracle**: an upper-bound benchmark, not a feasible online policy. It
//!   knows every session's true purchase probabilities and its order value
//!   and chooses, in hindsight for each day, at most one tier per session
//!   (tiers of the policy config) to maximise the true expected net value
//!   `ENV(v) = p_v (m V - v) - p_0 m V` subject to the offered face values
//!   summing to at most the day's budget (multiple-choice knapsack solved by
//!   its Lagrangian: each session takes `argmax ENV(v) - mu v` if positive,
//!   `mu` bisected to the smallest budget-feasible value, then the leftover
//!   budget is filled greedily by value per euro). Its realised outcomes use
//!   the same common random numbers.
//! - **oracle-in-rule**: the same oracle, restricted to the visits the
//!   product rule lets nudge treat (hesitant by the served model with intent
//!   value >= `policy.min_intent_cents` at some decision moment). The gap
//!   from **oracle** to it is the value the rule itself leaves (profitable
//!   vouchers for visitors the model calls hot or cold); the gap from it to
//!   **nudge** is what nudge does not know (the final purchase probability
//!   and each visitor's response) within the rule.
//!
//! # Metrics (per policy and budget)
//!
//! `vouchers_offered`, `vouchers_redeemed`, `budget_used_cents` (face value
//! offered), `cost_cents` (face value redeemed), `conversions`,
//! `revenue_cents`, `margin_cents = m * revenue - cost`, and against
//! **none**:
//!
//! ```text
//! incremental_margin      M   = m * (revenue - revenue_none)   (gross of vouchers, as in the ROI report)
//! net_incremental_margin      = M - cost                       (what the shop keeps)
//! roi                         = M / cost                       (None when cost = 0)
//! ```
//!
//! The same three are also given in expectation under the true probabilities
//! (`expected`), which removes the purchase-draw noise. The acceptance
//! comparisons use the realised **net** incremental margin.

use crate::clock::ManualClock;
use crate::config::{RawConfig, Settings};
use crate::engine::{self, Engine};
use crate::ledger::CampaignBudget;
use crate::model::{ClientFeatures, Input, Model};
use crate::policy::{OfferTrigger, Segment};
use crate::session::SessionState;
use crate::synth::{GeneratedSession, Generator, GeneratorConfig};
use crate::validate::DecideInput;
use chrono::TimeZone;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// Format tag of the JSON document.
pub const FORMAT: &str = "nudge-simulate/1";
/// 2024-01-01: the simulated days start at this date's local midnight.
const START_DATE: (i32, u32, u32) = (2024, 1, 1);
const MS_PER_MINUTE: i64 = 60_000;
const MS_PER_HOUR: i64 = 3_600_000;

/// Policy names, in table order.
pub const NONE: &str = "none";
pub const BLANKET: &str = "blanket";
pub const HEAT_TIER: &str = "heat-tier";
pub const NUDGE: &str = "nudge";
pub const NUDGE_NO_HOLDOUT: &str = "nudge-no-holdout";
pub const NUDGE_EXIT_INTENT: &str = "nudge-exit-intent";
pub const ORACLE: &str = "oracle";
pub const ORACLE_IN_RULE: &str = "oracle-in-rule";

/// What `nudge simulate` takes. Every field has the documented default
/// ([`Default`]); the CLI maps one flag to each field.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulateArgs {
    /// Generator seed. Default 42.
    pub seed: u64,
    /// Session arrival rate. Default 2000.
    pub sessions_per_hour: f64,
    /// Simulated hours from local midnight, in (0, 168]. Default 24.
    pub hours: f64,
    /// Daily budgets to sweep, whole EUR, each > 0. Default 500, 1000, 5000.
    pub budgets_eur: Vec<i64>,
    /// TOML config (policy, voucher minimum order, experiment, pacing, budget
    /// time zone, model). The budget caps are replaced by the sweep and the
    /// ledger is in memory. Default: none (the documented defaults).
    pub config: Option<PathBuf>,
    /// Model file, overriding the config. Default: the config's, else
    /// `models/default.json`, else the embedded default.
    pub model: Option<PathBuf>,
    /// Directory to write `simulate.json`, `simulate.txt`, `simulate.svg`
    /// and `simulate.html` into (created). Default `simulation`; `None`
    /// writes nothing.
    pub out_dir: Option<PathBuf>,
    /// Return the JSON document instead of the table. Default false.
    pub json: bool,
    /// Also run nudge with `holdout_share = 0`. Default true.
    pub nudge_without_holdout: bool,
    /// Also run nudge offering only at exit intent
    /// (`policy.offer_on = "exit_intent"`, 10 s window) when the config
    /// offers at any decision. Default true.
    pub nudge_exit_intent: bool,
    /// Blanket's voucher, cents. Default 1000.
    pub blanket_voucher_cents: i64,
    /// When set, the nudge run at the first budget writes the service's
    /// decision log (events, decisions, and each session's outcome under
    /// the voucher it got) into this directory: nudge-train's input, for
    /// retraining and off-policy evaluation. Default none.
    pub log_dir: Option<PathBuf>,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        SimulateArgs {
            seed: 42,
            sessions_per_hour: 2_000.0,
            hours: 24.0,
            budgets_eur: vec![500, 1_000, 5_000],
            config: None,
            model: None,
            out_dir: Some(PathBuf::from("simulation")),
            json: false,
            nudge_without_holdout: true,
            nudge_exit_intent: true,
            blanket_voucher_cents: 1_000,
            log_dir: None,
        }
    }
}

/// The whole simulation.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    pub format: &'static str,
    pub seed: u64,
    pub sessions_per_hour: f64,
    pub hours: f64,
    pub start_ms: i64,
    pub timezone: String,
    pub model_version: String,
    pub margin_rate: f64,
    pub min_intent_cents: i64,
    pub min_order_cents: i64,
    /// `(amount_cents, prior lift)` of the configured tiers.
    pub tiers: Vec<(i64, f64)>,
    pub holdout_share: f64,
    pub explore_share: f64,
    pub pacing_enabled: bool,
    pub blanket_voucher_cents: i64,
    pub heat_tier_bands: Vec<HeatBand>,
    pub traffic: Traffic,
    pub runs: Vec<BudgetRun>,
    /// How each acceptance bar came out, per budget.
    pub acceptance: Vec<Acceptance>,
    /// Definitions, for a reader of the JSON alone.
    pub definitions: Vec<&'static str>,
}

/// A heat-tier band: model probability in `[from, to)` gets `voucher_cents`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HeatBand {
    pub from: f64,
    pub to: f64,
    pub voucher_cents: i64,
}

/// The generated traffic.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    pub sessions: u64,
    pub decision_moments: u64,
    /// Sessions with at least one moment at intent >= min intent.
    pub sessions_high_intent: u64,
    /// Sessions with at least one hesitant moment at intent >= min intent.
    pub sessions_hesitant_high_intent: u64,
    /// Sessions whose order value reaches the voucher minimum order.
    pub sessions_redeemable: u64,
    pub conversions_without_vouchers: u64,
    pub revenue_without_vouchers_cents: i64,
    /// Days (local) the run touches.
    pub days: u32,
    /// Over the sessions hesitant at intent >= min intent (nudge's eligible
    /// population), at their first such moment: `(tier cents, mean true
    /// log-odds lift)`, to compare with the configured prior lifts.
    pub eligible_true_mean_lift: Vec<(i64, f64)>,
    /// Same population: mean model probability at that moment and mean true
    /// purchase probability without a voucher (model calibration).
    pub eligible_mean_model_p: f64,
    pub eligible_mean_true_p0: f64,
    /// Same population: share with a positive true expected net value for
    /// some tier (what a perfect targeter would treat).
    pub eligible_share_true_env_positive: f64,
}

/// Every policy at one daily budget.
#[derive(Clone, Debug, Serialize)]
pub struct BudgetRun {
    pub budget_eur: i64,
    /// Daily cap times the days simulated.
    pub total_budget_cents: i64,
    pub policies: Vec<PolicyResult>,
    /// Oracle's shadow price of budget (net value per cent of face value at
    /// the margin; > 0: the budget binds the hindsight optimum), per day.
    pub oracle_mu: Vec<f64>,
}

impl BudgetRun {
    pub fn policy(&self, name: &str) -> Option<&PolicyResult> {
        self.policies.iter().find(|p| p.policy == name)
    }
}

/// One policy's day(s).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PolicyResult {
    pub policy: String,
    pub vouchers_offered: u64,
    pub vouchers_redeemed: u64,
    /// Face value offered (what the ledger authorised against the budget).
    pub budget_used_cents: i64,
    /// Face value redeemed.
    pub cost_cents: i64,
    pub conversions: u64,
    pub revenue_cents: i64,
    /// `margin_rate * revenue - cost`.
    pub margin_cents: f64,
    pub incremental_conversions: i64,
    pub incremental_revenue_cents: i64,
    /// `M = margin_rate * (revenue - revenue_none)`, gross of vouchers.
    pub incremental_margin_cents: f64,
    /// `M - cost`.
    pub net_incremental_margin_cents: f64,
    /// `M / cost`.
    pub roi: Option<f64>,
    /// The same under the true probabilities (no purchase-draw noise).
    pub expected: Expected,
    /// `(amount_cents, offered, redeemed)`.
    pub by_tier: Vec<(i64, u64, u64)>,
    /// Moments at which the policy wanted a voucher the remaining budget
    /// could not pay for.
    pub refused_for_budget: u64,
    /// Hour (from the start) at which the day's remaining budget first fell
    /// below the smallest tier; None: never.
    pub budget_exhausted_at_hour: Option<f64>,
    /// nudge only: decisions by reason (the engine's reasons).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub reasons: BTreeMap<String, u64>,
}

/// Expected values under the true purchase probabilities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Expected {
    pub incremental_conversions: f64,
    pub incremental_margin_cents: f64,
    pub cost_cents: f64,
    pub net_incremental_margin_cents: f64,
    pub roi: Option<f64>,
}

/// The acceptance bars of `nudge simulate` at one budget.
#[derive(Clone, Debug, Serialize)]
pub struct Acceptance {
    pub budget_eur: i64,
    /// The budget binds: the oracle's shadow price is positive and blanket
    /// was refused vouchers for budget.
    pub binding: bool,
    /// The bars on the realised values (the JSON keeps them at the top
    /// level).
    #[serde(flatten)]
    pub realised: Bars,
    /// The same bars on the expected values (`expected.*`): the comparison
    /// without the purchase-draw noise, which dominates when a binding
    /// budget buys a hundred vouchers.
    pub expected: Bars,
    /// The oracle's realised ROI over blanket's: whether the 3x ROI bar can
    /// be met at all in this world (the oracle maximises net margin, not
    /// ROI, so this is a yardstick, not a bound).
    pub oracle_roi_over_blanket: Option<f64>,
    /// nudge's net incremental margin over the in-rule oracle's (realised,
    /// then expected): the share of what perfect knowledge earns when it
    /// must keep the product rule (hesitant, intent >= the minimum) that
    /// nudge keeps. The 80 % bar above is against the unrestricted oracle.
    pub share_of_oracle_in_rule: Option<f64>,
    pub expected_share_of_oracle_in_rule: Option<f64>,
    /// The in-rule oracle's realised ROI over blanket's.
    pub oracle_in_rule_roi_over_blanket: Option<f64>,
    /// The same two ratios in expectation (without the purchase-draw noise
    /// that dominates blanket's realised ROI on one day).
    pub expected_oracle_roi_over_blanket: Option<f64>,
    pub expected_oracle_in_rule_roi_over_blanket: Option<f64>,
}

/// The four bars, nudge against blanket and the oracle.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Bars {
    pub nudge_roi: Option<f64>,
    pub blanket_roi: Option<f64>,
    /// nudge ROI >= 3 x blanket ROI.
    pub roi_at_least_3x_blanket: bool,
    /// nudge cost / blanket cost.
    pub cost_ratio: Option<f64>,
    /// nudge cost <= 50 % of blanket's.
    pub cost_at_most_half_blanket: bool,
    /// nudge net incremental margin >= blanket's.
    pub net_margin_at_least_blanket: bool,
    /// nudge net / oracle net.
    pub share_of_oracle: Option<f64>,
    /// nudge net incremental margin >= 80 % of the oracle's.
    pub net_margin_at_least_80pct_oracle: bool,
    pub all_pass: bool,
}

/// What the bars read of one policy: ROI, cost and net incremental margin
/// (cents), realised or expected.
struct Money {
    roi: Option<f64>,
    cost: f64,
    net: f64,
}

impl Bars {
    fn new(nudge: Money, blanket: Money, oracle: Money) -> Bars {
        let roi_ok = matches!((nudge.roi, blanket.roi), (Some(n), Some(b)) if n >= 3.0 * b);
        let cost_ok = 2.0 * nudge.cost <= blanket.cost;
        let net_ok = nudge.net >= blanket.net;
        let oracle_ok = nudge.net >= 0.8 * oracle.net;
        Bars {
            nudge_roi: nudge.roi,
            blanket_roi: blanket.roi,
            roi_at_least_3x_blanket: roi_ok,
            cost_ratio: (blanket.cost > 0.0).then(|| nudge.cost / blanket.cost),
            cost_at_most_half_blanket: cost_ok,
            net_margin_at_least_blanket: net_ok,
            share_of_oracle: (oracle.net > 0.0).then(|| nudge.net / oracle.net),
            net_margin_at_least_80pct_oracle: oracle_ok,
            all_pass: roi_ok && cost_ok && net_ok && oracle_ok,
        }
    }
}

const DEFINITIONS: &[&str] = &[
    "Outcomes use common random numbers: a session offered v converts iff its own uniform draw < its true p(v); offering nothing reproduces the generated outcome.",
    "Order value: final cart value, else most-considered product price, else basket budget (the generator's rule); revenue is counted at full order value.",
    "A voucher is redeemable only on an order >= min_order_cents; an unredeemable voucher has no lift and no cost but still uses budget.",
    "budget_used = face value offered (authorised at offer time, per local day); cost = face value redeemed (only on a purchase).",
    "incremental_margin M = margin_rate * (revenue - revenue_none), gross of vouchers; net_incremental_margin = M - cost; roi = M / cost.",
    "expected.*: the same under the true purchase probabilities (sum over offered sessions of (p_v - p_0) m V, p_v v, ...).",
    "blanket / heat-tier: first qualifying moment of a session, first come first served under the daily budget, no pacing, one voucher per session.",
    "nudge: the real Engine (holdout, exploration, pacing, in-memory ledger) on a manual clock; the holdout gets nothing.",
    "oracle: hindsight upper bound knowing true p(v) and V; maximises true expected net value under the daily budget (Lagrangian multiple-choice knapsack); not a feasible online policy.",
    "Acceptance compares realised values; acceptance.expected applies the same bars to the expected values (no purchase-draw noise).",
];

/// Errors of a simulation (setup problems; the simulation itself cannot fail).
pub type SimError = Box<dyn std::error::Error + Send + Sync>;

/// `nudge simulate`: loads the config and model, runs the sweep, writes the
/// files under `out_dir` and returns what to print (the table, or the JSON
/// document with `json`).
pub async fn run_cli(args: SimulateArgs) -> Result<String, SimError> {
    let mut raw = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
            RawConfig::from_toml(&text)?
        }
        None => RawConfig::default(),
    };
    if let Some(m) = &args.model {
        raw.model = Some(m.clone());
    }
    // The simulation never touches disk for money.
    raw.ledger.backend = Some("memory".into());
    raw.log.enabled = Some(false);
    let settings = raw.validate()?;
    let (model, _source) = crate::server::load_model(&settings)?;
    let report = simulate(&args, &settings, model).await?;
    let json = serde_json::to_string_pretty(&report)?;
    let table = render_table(&report);
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, text: &str| -> Result<(), SimError> {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
        };
        write("simulate.json", &json)?;
        write("simulate.txt", &table)?;
        write("simulate.svg", &render_svg(&report))?;
        write("simulate.html", &render_html(&report))?;
    }
    if args.json {
        return Ok(json + "\n");
    }
    let mut out = table;
    if let Some(dir) = &args.out_dir {
        let _ = writeln!(
            out,
            "\nwrote {0}/simulate.json, simulate.txt, simulate.svg, simulate.html",
            dir.display()
        );
    }
    Ok(out)
}

/// One generated session with what the simulator needs about it.
struct Visit {
    s: GeneratedSession,
    /// What the visitor buys when converting (see the module docs).
    order_value_cents: i64,
    /// The order reaches the voucher minimum.
    redeemable: bool,
    /// Local day index (from the start) of the session's first moment.
    day: usize,
}

/// A decision moment, with the pure assessment at lambda = 0.
#[derive(Clone, Copy, Debug)]
struct Moment {
    at_ms: i64,
    visit: u32,
    /// `events[..after_events]` known.
    after_events: u32,
    p: f64,
    segment: Segment,
    intent_cents: i64,
    day: usize,
}

struct World {
    visits: Vec<Visit>,
    moments: Vec<Moment>,
    start_ms: i64,
    days: usize,
}

fn local_midnight(settings: &Settings) -> Result<i64, SimError> {
    let (y, m, d) = START_DATE;
    settings
        .budgets
        .timezone
        .with_ymd_and_hms(y, m, d, 0, 0, 0)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| "no local midnight on the start date".into())
}

fn build_world(args: &SimulateArgs, settings: &Settings, model: &Model) -> Result<World, SimError> {
    let start_ms = local_midnight(settings)?;
    let end_ms = start_ms + (args.hours * MS_PER_HOUR as f64).round() as i64;
    let budgets = &settings.budgets;
    let mut day_keys: Vec<String> = Vec::new();
    let mut day_index = |at_ms: i64| -> usize {
        let key = budgets.day_of(at_ms);
        match day_keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                day_keys.push(key);
                day_keys.len() - 1
            }
        }
    };
    let client = ClientFeatures::default();
    let gen = Generator::new(GeneratorConfig {
        seed: args.seed,
        start_ms,
        sessions_per_hour: args.sessions_per_hour,
    });
    let mut visits = Vec::new();
    let mut moments = Vec::new();
    for s in gen.take_while(|s| s.events[0].at_ms < end_ms) {
        let first = match s.decision_points.iter().find(|p| p.at_ms < end_ms) {
            Some(p) => p.at_ms,
            None => continue,
        };
        let visit = u32::try_from(visits.len()).map_err(|_| "too many sessions")?;
        let day = day_index(first);
        let mut state = SessionState::new(s.context);
        let mut applied = 0;
        for p in s.decision_points.iter().filter(|p| p.at_ms < end_ms) {
            for e in &s.events[applied..p.after_events] {
                state.apply(e);
            }
            applied = p.after_events;
            let a = engine::assess(&state, &client, None, p.at_ms, model, &settings.policy, 0.0)?;
            moments.push(Moment {
                at_ms: p.at_ms,
                visit,
                after_events: u32::try_from(p.after_events).unwrap_or(u32::MAX),
                p: a.score.probability,
                segment: a.segment,
                intent_cents: a.intent_value_cents,
                day: day_index(p.at_ms),
            });
        }
        let full = crate::synth::state_at(&s, usize::MAX);
        let order_value_cents = match full.intent_value_cents() {
            v if v > 0 => v,
            _ => (s.truth.basket_eur * 100.0).round() as i64,
        };
        debug_assert!(!s.outcome.converted || s.outcome.order_value_cents == order_value_cents);
        visits.push(Visit {
            order_value_cents,
            redeemable: order_value_cents >= settings.min_order_cents,
            day,
            s,
        });
    }
    moments.sort_by_key(|m| (m.at_ms, m.visit, m.after_events));
    Ok(World {
        visits,
        moments,
        start_ms,
        days: day_keys.len(),
    })
}

/// Offers of one policy: per visit, the amount offered (0 = none), plus
/// bookkeeping for the report.
struct Offers {
    amount: Vec<i64>,
    refused_for_budget: u64,
    exhausted_at_ms: Option<i64>,
    reasons: BTreeMap<String, u64>,
}

impl Offers {
    fn new(n: usize) -> Self {
        Offers {
            amount: vec![0; n],
            refused_for_budget: 0,
            exhausted_at_ms: None,
            reasons: BTreeMap::new(),
        }
    }
}

/// First come, first served under the daily budget: at a session's first
/// qualifying moment, offer `rule(moment)` if it fits.
fn first_come(
    w: &World,
    cap_cents: i64,
    smallest_tier: i64,
    rule: impl Fn(&Moment) -> Option<i64>,
) -> Offers {
    let mut o = Offers::new(w.visits.len());
    let mut decided = vec![false; w.visits.len()];
    let mut spent = vec![0i64; w.days];
    for m in &w.moments {
        let v = m.visit as usize;
        if decided[v] {
            continue;
        }
        let Some(amount) = rule(m) else { continue };
        decided[v] = true;
        if spent[m.day] + amount <= cap_cents {
            spent[m.day] += amount;
            o.amount[v] = amount;
            if o.exhausted_at_ms.is_none() && cap_cents - spent[m.day] < smallest_tier {
                o.exhausted_at_ms = Some(m.at_ms);
            }
        } else {
            o.refused_for_budget += 1;
        }
    }
    o
}

fn heat_bands(model: &Model, tiers: &[i64]) -> Vec<HeatBand> {
    let t = model.segments();
    let (lo, hi) = (t.cold_below, t.hot_at_or_above);
    let w = (hi - lo) / 3.0;
    // Largest voucher for the coldest third.
    let pick = |i: usize| tiers.get(i).copied().unwrap_or(0);
    vec![
        HeatBand {
            from: lo,
            to: lo + w,
            voucher_cents: pick(2),
        },
        HeatBand {
            from: lo + w,
            to: lo + 2.0 * w,
            voucher_cents: pick(1),
        },
        HeatBand {
            from: lo + 2.0 * w,
            to: hi,
            voucher_cents: pick(0),
        },
    ]
}

/// The real engine over every moment.
async fn run_nudge(
    w: &World,
    settings: &Settings,
    model: &Model,
    cap_cents: i64,
    smallest_tier: i64,
    log_dir: Option<&std::path::Path>,
) -> Result<Offers, SimError> {
    use tracing::instrument::WithSubscriber;
    let mut settings = settings.clone();
    let campaign = settings.default_campaign.clone();
    settings.budgets.campaigns = HashMap::from([(
        campaign.clone(),
        CampaignBudget {
            daily_cap_cents: cap_cents,
            total_cap_cents: None,
        },
    )]);
    let clock = Arc::new(ManualClock::new(w.start_ms));
    let mut engine: Engine = crate::server::memory_engine(&settings, model.clone(), clock.clone());
    if let Some(dir) = log_dir {
        engine.log = crate::log_writer::DecisionLog::start(
            &crate::log_writer::LogSettings {
                dir: dir.to_owned(),
                rotate_bytes: 64 * 1024 * 1024,
                // Never drop: the simulation waits for nobody.
                queue: 1 << 20,
            },
            clock.clone(),
        )
        .map_err(|e| format!("decision log {}: {e}", dir.display()))?;
    }
    let mut o = Offers::new(w.visits.len());
    let mut sent = vec![0usize; w.visits.len()];
    let mut spent = vec![0i64; w.days];
    let mut next_tick = w.start_ms;
    for m in &w.moments {
        // The pacing ticker: every simulated minute up to this moment.
        while next_tick <= m.at_ms {
            clock.set(next_tick);
            engine.update_pacing().await;
            next_tick += MS_PER_MINUTE;
        }
        clock.set(m.at_ms);
        let v = m.visit as usize;
        let visit = &w.visits[v];
        let upto = m.after_events as usize;
        let input = DecideInput {
            session_id: visit.s.session_id.clone(),
            visitor_id: Some(visit.s.visitor_id.clone()),
            context: (sent[v] == 0).then_some(visit.s.context),
            events: visit.s.events[sent[v]..upto].to_vec(),
            client: ClientFeatures::default(),
            intent_value_cents: None,
            campaign: String::new(),
        };
        sent[v] = upto;
        // The engine logs every offer at info level: silence it here.
        let d = engine
            .decide(input)
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await
            .map_err(|e| format!("decide: {e}"))?;
        *o.reasons.entry(d.reason.as_str().to_owned()).or_default() += 1;
        match d.reason {
            engine::Reason::Offered => {
                let amount = d.offer.as_ref().map_or(0, |x| x.amount_cents);
                if o.amount[v] == 0 {
                    o.amount[v] = amount;
                    spent[m.day] += amount;
                    if o.exhausted_at_ms.is_none() && cap_cents - spent[m.day] < smallest_tier {
                        o.exhausted_at_ms = Some(m.at_ms);
                    }
                }
            }
            engine::Reason::BudgetExhausted => o.refused_for_budget += 1,
            _ => {}
        }
    }
    if log_dir.is_some() {
        // Each session's label, under the voucher it was offered (common
        // random numbers), logged at the end of the run.
        for (visit, &offered) in w.visits.iter().zip(&o.amount) {
            let effective = if offered > 0 && visit.redeemable {
                offered
            } else {
                0
            };
            let converted = visit.s.truth.converts_with(effective);
            engine.log.log(crate::decision_log::LogRecord::Outcome(
                crate::decision_log::OutcomeRecord {
                    v: crate::decision_log::LOG_FORMAT_VERSION,
                    at_ms: clock_now(&clock),
                    session_id: visit.s.session_id.clone(),
                    converted,
                    order_value_cents: if converted {
                        visit.order_value_cents
                    } else {
                        0
                    },
                },
            ));
        }
        engine.log.flush().await;
        if engine.log.dropped() > 0 {
            return Err(format!("decision log dropped {} records", engine.log.dropped()).into());
        }
    }
    // Cross-check with the ledger: what it authorised today.
    let snap = engine
        .ledger
        .snapshot(&campaign, clock_now(&clock))
        .await
        .map_err(|e| format!("ledger: {e}"))?;
    let last_day = w.days.saturating_sub(1);
    if snap.reserved_cents + snap.captured_cents != spent.get(last_day).copied().unwrap_or(0) {
        return Err(format!(
            "ledger disagrees: reserved {} + captured {} vs offered {}",
            snap.reserved_cents,
            snap.captured_cents,
            spent.get(last_day).copied().unwrap_or(0)
        )
        .into());
    }
    Ok(o)
}

fn clock_now(c: &ManualClock) -> i64 {
    use crate::clock::Clock;
    c.now_ms()
}

/// True expected net value of offering `v` to a visit (0 when unredeemable).
fn true_env(visit: &Visit, v: i64, m: f64) -> f64 {
    if v <= 0 || !visit.redeemable {
        return 0.0;
    }
    let t = &visit.s.truth;
    let margin = m * visit.order_value_cents as f64;
    let (p0, pv) = (t.p_buy(0), t.p_buy(v));
    pv * (margin - v as f64) - p0 * margin
}

/// The hindsight oracle; returns the offers and the per-day shadow price.
/// `only`: the visits it may offer to (None: every visit).
fn run_oracle(
    w: &World,
    tiers: &[i64],
    m: f64,
    cap_cents: i64,
    only: Option<&[bool]>,
) -> (Offers, Vec<f64>) {
    let mut o = Offers::new(w.visits.len());
    let mut mus = Vec::with_capacity(w.days);
    for day in 0..w.days {
        // Candidates: (visit, [(amount, ENV)]) with some ENV > 0.
        let cands: Vec<(usize, Vec<(i64, f64)>)> = w
            .visits
            .iter()
            .enumerate()
            .filter(|(i, v)| v.day == day && v.redeemable && only.is_none_or(|o| o[*i]))
            .filter_map(|(i, v)| {
                let opts: Vec<(i64, f64)> = tiers
                    .iter()
                    .map(|&a| (a, true_env(v, a, m)))
                    .filter(|(a, e)| *e > 0.0 && *a <= cap_cents)
                    .collect();
                (!opts.is_empty()).then_some((i, opts))
            })
            .collect();
        let choose = |mu: f64, opts: &[(i64, f64)]| -> Option<(i64, f64)> {
            opts.iter()
                .copied()
                .filter(|(a, e)| e - mu * *a as f64 > 0.0)
                .max_by(|x, y| {
                    (x.1 - mu * x.0 as f64)
                        .total_cmp(&(y.1 - mu * y.0 as f64))
                        .then(y.0.cmp(&x.0))
                })
        };
        let spend = |mu: f64| -> i64 {
            cands
                .iter()
                .filter_map(|(_, opts)| choose(mu, opts))
                .map(|(a, _)| a)
                .sum()
        };
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        if spend(0.0) > cap_cents {
            hi = 1.0;
            while spend(hi) > cap_cents && hi < 1e9 {
                lo = hi;
                hi *= 2.0;
            }
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if spend(mid) > cap_cents {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        mus.push(hi);
        let mut pick: Vec<Option<(i64, f64)>> = cands.iter().map(|(_, o)| choose(hi, o)).collect();
        let mut used: i64 = pick.iter().flatten().map(|(a, _)| a).sum();
        // Fill the leftover: the moves (new offer or upgrade) with the best
        // extra value per extra euro, while they fit.
        let mut moves: Vec<(f64, usize, i64, f64)> = Vec::new();
        for (k, (_, opts)) in cands.iter().enumerate() {
            let (a0, e0) = pick[k].unwrap_or((0, 0.0));
            for &(a, e) in opts {
                if a > a0 && e > e0 {
                    moves.push(((e - e0) / (a - a0) as f64, k, a, e));
                }
            }
        }
        moves.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        for (_, k, a, e) in moves {
            let (a0, e0) = pick[k].unwrap_or((0, 0.0));
            if a > a0 && e > e0 && used - a0 + a <= cap_cents {
                used += a - a0;
                pick[k] = Some((a, e));
            }
        }
        for (k, (i, _)) in cands.iter().enumerate() {
            if let Some((a, _)) = pick[k] {
                o.amount[*i] = a;
            }
        }
    }
    (o, mus)
}

/// Outcomes and metrics of a set of offers.
fn evaluate(
    w: &World,
    name: &str,
    o: &Offers,
    m: f64,
    tiers: &[i64],
    none: Option<&PolicyResult>,
) -> PolicyResult {
    let mut r = PolicyResult {
        policy: name.to_owned(),
        refused_for_budget: o.refused_for_budget,
        budget_exhausted_at_hour: o
            .exhausted_at_ms
            .map(|t| (t - w.start_ms) as f64 / MS_PER_HOUR as f64),
        reasons: o.reasons.clone(),
        by_tier: tiers.iter().map(|&a| (a, 0, 0)).collect(),
        ..PolicyResult::default()
    };
    let mut e = Expected::default();
    for (visit, &offered) in w.visits.iter().zip(&o.amount) {
        let t = &visit.s.truth;
        // An unredeemable voucher does nothing.
        let effective = if offered > 0 && visit.redeemable {
            offered
        } else {
            0
        };
        let converts = t.converts_with(effective);
        if offered > 0 {
            r.vouchers_offered += 1;
            r.budget_used_cents += offered;
        }
        let redeemed = converts && effective > 0;
        if converts {
            r.conversions += 1;
            r.revenue_cents += visit.order_value_cents;
        }
        if redeemed {
            r.vouchers_redeemed += 1;
            r.cost_cents += effective;
        }
        if let Some(row) = r.by_tier.iter_mut().find(|x| x.0 == offered) {
            row.1 += 1;
            row.2 += u64::from(redeemed);
        } else if offered > 0 {
            r.by_tier.push((offered, 1, u64::from(redeemed)));
        }
        if effective > 0 {
            let (p0, pv) = (t.p_buy(0), t.p_buy(effective));
            let margin = m * visit.order_value_cents as f64;
            e.incremental_conversions += pv - p0;
            e.incremental_margin_cents += (pv - p0) * margin;
            e.cost_cents += pv * effective as f64;
        }
    }
    e.net_incremental_margin_cents = e.incremental_margin_cents - e.cost_cents;
    e.roi = (e.cost_cents > 0.0).then(|| e.incremental_margin_cents / e.cost_cents);
    r.expected = e;
    r.margin_cents = m * r.revenue_cents as f64 - r.cost_cents as f64;
    let (base_conv, base_rev) = none.map_or((r.conversions, r.revenue_cents), |n| {
        (n.conversions, n.revenue_cents)
    });
    r.incremental_conversions = r.conversions as i64 - base_conv as i64;
    r.incremental_revenue_cents = r.revenue_cents - base_rev;
    r.incremental_margin_cents = m * r.incremental_revenue_cents as f64;
    r.net_incremental_margin_cents = r.incremental_margin_cents - r.cost_cents as f64;
    r.roi = (r.cost_cents > 0).then(|| r.incremental_margin_cents / r.cost_cents as f64);
    r
}

/// Runs every policy at every budget of `args` on one generated traffic.
/// `settings` gives the policy, minimum order, experiment, pacing and time
/// zone (its budget caps are replaced by the sweep's).
pub async fn simulate(
    args: &SimulateArgs,
    settings: &Settings,
    model: Model,
) -> Result<SimReport, SimError> {
    if !(args.sessions_per_hour.is_finite() && args.sessions_per_hour > 0.0) {
        return Err("sessions_per_hour must be > 0".into());
    }
    if !(args.hours.is_finite() && args.hours > 0.0 && args.hours <= 168.0) {
        return Err("hours must be in (0, 168]".into());
    }
    if args.budgets_eur.is_empty() || args.budgets_eur.iter().any(|b| *b <= 0) {
        return Err("budgets must be a non-empty list of positive whole EUR".into());
    }
    if args.blanket_voucher_cents <= 0 {
        return Err("blanket_voucher_cents must be > 0".into());
    }
    if model.input() != Input::Session {
        return Err(format!(
            "model {} scores client features; the simulator needs a session model",
            model.version()
        )
        .into());
    }
    let m = settings.policy.margin_rate;
    let min_intent = settings.policy.min_intent_cents;
    let tiers: Vec<i64> = {
        let mut t: Vec<i64> = settings
            .policy
            .tiers
            .iter()
            .map(|t| t.amount_cents)
            .collect();
        t.sort_unstable();
        t
    };
    let smallest = tiers[0];
    let w = build_world(args, settings, &model)?;
    let bands = heat_bands(&model, &tiers);

    let none_offers = Offers::new(w.visits.len());
    let none = evaluate(&w, NONE, &none_offers, m, &tiers, None);
    let mut traffic = Traffic {
        sessions: w.visits.len() as u64,
        decision_moments: w.moments.len() as u64,
        sessions_redeemable: w.visits.iter().filter(|v| v.redeemable).count() as u64,
        conversions_without_vouchers: none.conversions,
        revenue_without_vouchers_cents: none.revenue_cents,
        days: u32::try_from(w.days).unwrap_or(u32::MAX),
        ..Traffic::default()
    };
    // Visits the product rule lets any policy offer to: hesitant (by the
    // served model) with intent >= the minimum at some decision moment.
    let mut in_rule_visits = vec![false; w.visits.len()];
    {
        let mut hi = vec![false; w.visits.len()];
        for mo in &w.moments {
            if mo.intent_cents >= min_intent {
                hi[mo.visit as usize] = true;
                if mo.segment == Segment::Hesitant {
                    in_rule_visits[mo.visit as usize] = true;
                }
            }
        }
        traffic.sessions_high_intent = hi.iter().filter(|x| **x).count() as u64;
        traffic.sessions_hesitant_high_intent =
            in_rule_visits.iter().filter(|x| **x).count() as u64;
        let mut first_p: Vec<Option<f64>> = vec![None; w.visits.len()];
        for mo in &w.moments {
            let v = mo.visit as usize;
            if first_p[v].is_none()
                && mo.intent_cents >= min_intent
                && mo.segment == Segment::Hesitant
            {
                first_p[v] = Some(mo.p);
            }
        }
        let elig: Vec<(&Visit, f64)> = w
            .visits
            .iter()
            .zip(&first_p)
            .filter_map(|(v, p)| p.map(|p| (v, p)))
            .collect();
        let n = elig.len().max(1) as f64;
        traffic.eligible_true_mean_lift = tiers
            .iter()
            .map(|&a| {
                (
                    a,
                    elig.iter().map(|(v, _)| v.s.truth.lift(a)).sum::<f64>() / n,
                )
            })
            .collect();
        traffic.eligible_mean_model_p = elig.iter().map(|(_, p)| p).sum::<f64>() / n;
        traffic.eligible_mean_true_p0 =
            elig.iter().map(|(v, _)| v.s.truth.p_buy(0)).sum::<f64>() / n;
        traffic.eligible_share_true_env_positive = elig
            .iter()
            .filter(|(v, _)| tiers.iter().any(|&a| true_env(v, a, m) > 0.0))
            .count() as f64
            / n;
    }

    let mut runs = Vec::new();
    for &budget_eur in &args.budgets_eur {
        let cap = budget_eur.saturating_mul(100);
        let mut policies = vec![none.clone()];
        let blanket = first_come(&w, cap, smallest, |mo| {
            (mo.intent_cents >= min_intent).then_some(args.blanket_voucher_cents)
        });
        policies.push(evaluate(&w, BLANKET, &blanket, m, &tiers, Some(&none)));
        let heat = first_come(&w, cap, smallest, |mo| {
            if mo.intent_cents < min_intent || mo.segment != Segment::Hesitant {
                return None;
            }
            bands
                .iter()
                .find(|b| mo.p >= b.from && mo.p < b.to)
                .map(|b| b.voucher_cents)
                .filter(|v| *v > 0)
        });
        policies.push(evaluate(&w, HEAT_TIER, &heat, m, &tiers, Some(&none)));
        let log_dir = if runs.is_empty() {
            args.log_dir.as_deref()
        } else {
            None
        };
        let nudge = run_nudge(&w, settings, &model, cap, smallest, log_dir).await?;
        policies.push(evaluate(&w, NUDGE, &nudge, m, &tiers, Some(&none)));
        if args.nudge_without_holdout {
            let mut s = settings.clone();
            s.experiment.holdout_share = 0.0;
            let o = run_nudge(&w, &s, &model, cap, smallest, None).await?;
            policies.push(evaluate(&w, NUDGE_NO_HOLDOUT, &o, m, &tiers, Some(&none)));
        }
        if args.nudge_exit_intent && settings.policy.trigger == OfferTrigger::Any {
            let mut s = settings.clone();
            s.policy.trigger = OfferTrigger::ExitIntent { window_ms: 10_000 };
            let o = run_nudge(&w, &s, &model, cap, smallest, None).await?;
            policies.push(evaluate(&w, NUDGE_EXIT_INTENT, &o, m, &tiers, Some(&none)));
        }
        let (oracle, mus) = run_oracle(&w, &tiers, m, cap, None);
        policies.push(evaluate(&w, ORACLE, &oracle, m, &tiers, Some(&none)));
        let (in_rule, _) = run_oracle(&w, &tiers, m, cap, Some(&in_rule_visits));
        policies.push(evaluate(
            &w,
            ORACLE_IN_RULE,
            &in_rule,
            m,
            &tiers,
            Some(&none),
        ));
        runs.push(BudgetRun {
            budget_eur,
            total_budget_cents: cap.saturating_mul(w.days as i64),
            policies,
            oracle_mu: mus,
        });
    }
    let acceptance = runs.iter().map(acceptance).collect();
    Ok(SimReport {
        format: FORMAT,
        seed: args.seed,
        sessions_per_hour: args.sessions_per_hour,
        hours: args.hours,
        start_ms: w.start_ms,
        timezone: settings.budgets.timezone.name().to_owned(),
        model_version: model.version().to_owned(),
        margin_rate: m,
        min_intent_cents: min_intent,
        min_order_cents: settings.min_order_cents,
        tiers: settings
            .policy
            .tiers
            .iter()
            .map(|t| (t.amount_cents, t.lift))
            .collect(),
        holdout_share: settings.experiment.holdout_share,
        explore_share: settings.experiment.explore_share,
        pacing_enabled: settings.pacing.enabled,
        blanket_voucher_cents: args.blanket_voucher_cents,
        heat_tier_bands: bands,
        traffic,
        runs,
        acceptance,
        definitions: DEFINITIONS.to_vec(),
    })
}

fn acceptance(run: &BudgetRun) -> Acceptance {
    let get = |n: &str| run.policy(n).cloned().unwrap_or_default();
    let (nudge, blanket, oracle) = (get(NUDGE), get(BLANKET), get(ORACLE));
    let in_rule = get(ORACLE_IN_RULE);
    let realised = |p: &PolicyResult| Money {
        roi: p.roi,
        cost: p.cost_cents as f64,
        net: p.net_incremental_margin_cents,
    };
    let expected = |p: &PolicyResult| Money {
        roi: p.expected.roi,
        cost: p.expected.cost_cents,
        net: p.expected.net_incremental_margin_cents,
    };
    Acceptance {
        budget_eur: run.budget_eur,
        binding: run.oracle_mu.iter().any(|mu| *mu > 0.0) && blanket.refused_for_budget > 0,
        realised: Bars::new(realised(&nudge), realised(&blanket), realised(&oracle)),
        expected: Bars::new(expected(&nudge), expected(&blanket), expected(&oracle)),
        oracle_roi_over_blanket: match (oracle.roi, blanket.roi) {
            (Some(o), Some(b)) if b > 0.0 => Some(o / b),
            _ => None,
        },
        share_of_oracle_in_rule: (in_rule.net_incremental_margin_cents > 0.0)
            .then(|| nudge.net_incremental_margin_cents / in_rule.net_incremental_margin_cents),
        expected_share_of_oracle_in_rule: (in_rule.expected.net_incremental_margin_cents > 0.0)
            .then(|| {
                nudge.expected.net_incremental_margin_cents
                    / in_rule.expected.net_incremental_margin_cents
            }),
        oracle_in_rule_roi_over_blanket: match (in_rule.roi, blanket.roi) {
            (Some(o), Some(b)) if b > 0.0 => Some(o / b),
            _ => None,
        },
        expected_oracle_roi_over_blanket: match (oracle.expected.roi, blanket.expected.roi) {
            (Some(o), Some(b)) if b > 0.0 => Some(o / b),
            _ => None,
        },
        expected_oracle_in_rule_roi_over_blanket: match (in_rule.expected.roi, blanket.expected.roi)
        {
            (Some(o), Some(b)) if b > 0.0 => Some(o / b),
            _ => None,
        },
    }
}

fn bars_text(b: &Bars) -> String {
    let mark = |ok: bool| if ok { "yes" } else { "NO" };
    let pct = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{:.0} %", v * 100.0));
    format!(
        "ROI {} vs {} (>= 3x: {}); cost ratio {} (<= 50 %: {}); net incr. margin >= blanket: {}; share of oracle's net {} (>= 80 %: {})",
        roi_text(b.nudge_roi),
        roi_text(b.blanket_roi),
        mark(b.roi_at_least_3x_blanket),
        pct(b.cost_ratio),
        mark(b.cost_at_most_half_blanket),
        mark(b.net_margin_at_least_blanket),
        pct(b.share_of_oracle),
        mark(b.net_margin_at_least_80pct_oracle)
    )
}

fn eur(cents: f64) -> String {
    let v = cents / 100.0;
    let neg = v < 0.0;
    let whole = v.abs().round() as i64;
    let s = whole.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if neg && whole != 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn roi_text(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
}

/// The readable table: one block per budget, the acceptance check, then the
/// sweep of net incremental margin.
pub fn render_table(r: &SimReport) -> String {
    let mut out = String::new();
    let t = &r.traffic;
    let _ = writeln!(
        out,
        "nudge simulate: seed {}, {} sessions ({} /h for {} h from local midnight, {}), {} decision moments",
        r.seed, t.sessions, r.sessions_per_hour, r.hours, r.timezone, t.decision_moments
    );
    let _ = writeln!(
        out,
        "model {}; margin {:.0} %, tiers {}, min intent {} EUR, min order {} EUR; holdout {:.0} %, exploration {:.0} %, pacing {}",
        r.model_version,
        r.margin_rate * 100.0,
        r.tiers
            .iter()
            .map(|(a, l)| format!("{}/{l:.2}", a / 100))
            .collect::<Vec<_>>()
            .join(" "),
        r.min_intent_cents / 100,
        r.min_order_cents / 100,
        r.holdout_share * 100.0,
        r.explore_share * 100.0,
        if r.pacing_enabled { "on" } else { "off" }
    );
    let _ = writeln!(
        out,
        "traffic: {} sessions with intent >= {} EUR, {} of them hesitant at such a moment; {} conversions and {} EUR revenue without vouchers",
        t.sessions_high_intent,
        r.min_intent_cents / 100,
        t.sessions_hesitant_high_intent,
        t.conversions_without_vouchers,
        eur(t.revenue_without_vouchers_cents as f64)
    );
    let _ = writeln!(
        out,
        "eligible (hesitant, intent >= {} EUR): mean model p {:.3} vs true p0 {:.3}; true mean lift {} (prior {}); {:.0} % have a tier with true ENV > 0",
        r.min_intent_cents / 100,
        t.eligible_mean_model_p,
        t.eligible_mean_true_p0,
        t.eligible_true_mean_lift
            .iter()
            .map(|(a, l)| format!("{}/{l:.2}", a / 100))
            .collect::<Vec<_>>()
            .join(" "),
        r.tiers
            .iter()
            .map(|(a, l)| format!("{}/{l:.2}", a / 100))
            .collect::<Vec<_>>()
            .join(" "),
        t.eligible_share_true_env_positive * 100.0
    );
    let _ = writeln!(
        out,
        "heat-tier bands (model probability): {}",
        r.heat_tier_bands
            .iter()
            .map(|b| format!(
                "[{:.3}, {:.3}) -> {} EUR",
                b.from,
                b.to,
                b.voucher_cents / 100
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "money in EUR; incr. margin M = margin x extra revenue (gross of vouchers), net = M - cost, ROI = M / cost; E[net] under the true probabilities"
    );
    for (run, acc) in r.runs.iter().zip(&r.acceptance) {
        let _ = writeln!(
            out,
            "\nbudget {} EUR/day{}",
            eur(run.budget_eur as f64 * 100.0),
            if acc.binding { " (binding)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  {:<17}{:>9}{:>9}{:>10}{:>10}{:>7}{:>12}{:>11}{:>11}{:>11}{:>7}{:>10}",
            "policy",
            "vouchers",
            "redeemed",
            "used",
            "cost",
            "conv",
            "revenue",
            "incr. M",
            "net incr.",
            "E[net]",
            "ROI",
            "out at h"
        );
        for p in &run.policies {
            let _ = writeln!(
                out,
                "  {:<17}{:>9}{:>9}{:>10}{:>10}{:>7}{:>12}{:>11}{:>11}{:>11}{:>7}{:>10}",
                p.policy,
                p.vouchers_offered,
                p.vouchers_redeemed,
                eur(p.budget_used_cents as f64),
                eur(p.cost_cents as f64),
                p.conversions,
                eur(p.revenue_cents as f64),
                eur(p.incremental_margin_cents),
                eur(p.net_incremental_margin_cents),
                eur(p.expected.net_incremental_margin_cents),
                roi_text(p.roi),
                p.budget_exhausted_at_hour
                    .map_or_else(|| "-".into(), |h| format!("{h:.1}"))
            );
        }
        for (label, bars) in [
            ("nudge vs blanket:", &acc.realised),
            ("in expectation:  ", &acc.expected),
        ] {
            let _ = writeln!(out, "  {label} {}", bars_text(bars));
        }
        let x = |r: Option<f64>| r.map_or_else(|| "n/a x".into(), |r| format!("{r:.2} x"));
        let pct =
            |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{:.0} %", v * 100.0));
        let _ = writeln!(
            out,
            "  yardstick: the oracle's own ROI is {} blanket's, the in-rule oracle's {} (realised; in expectation {} and {})",
            x(acc.oracle_roi_over_blanket),
            x(acc.oracle_in_rule_roi_over_blanket),
            x(acc.expected_oracle_roi_over_blanket),
            x(acc.expected_oracle_in_rule_roi_over_blanket)
        );
        let _ = writeln!(
            out,
            "  share of the in-rule oracle's net (same product rule as nudge): {} realised, {} in expectation",
            pct(acc.share_of_oracle_in_rule),
            pct(acc.expected_share_of_oracle_in_rule)
        );
    }
    let names = policy_names(r);
    let _ = writeln!(out, "\nsweep: net incremental margin (EUR) by daily budget");
    let _ = write!(out, "  {:<17}", "policy");
    for run in &r.runs {
        let _ = write!(
            out,
            "{:>12}",
            format!("{} EUR", eur(run.budget_eur as f64 * 100.0))
        );
    }
    out.push('\n');
    for name in &names {
        let _ = write!(out, "  {name:<17}");
        for run in &r.runs {
            let v = run
                .policy(name)
                .map_or_else(|| "-".into(), |p| eur(p.net_incremental_margin_cents));
            let _ = write!(out, "{v:>12}");
        }
        out.push('\n');
    }
    out
}

fn policy_names(r: &SimReport) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in &r.runs {
        for p in &run.policies {
            if !names.contains(&p.policy) {
                names.push(p.policy.clone());
            }
        }
    }
    names
}

fn colour(name: &str) -> &'static str {
    match name {
        NONE => "#7f7f7f",
        BLANKET => "#d62728",
        HEAT_TIER => "#ff7f0e",
        NUDGE => "#1f77b4",
        NUDGE_NO_HOLDOUT => "#17becf",
        NUDGE_EXIT_INTENT => "#bcbd22",
        ORACLE => "#2ca02c",
        ORACLE_IN_RULE => "#98df8a",
        _ => "#9467bd",
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" tick step for a range.
fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A self-contained SVG line chart: net incremental margin (EUR) against the
/// daily budget (EUR, log scale when the budgets span 4x or more), one line
/// per policy.
pub fn render_svg(r: &SimReport) -> String {
    let (w, h) = (820.0, 480.0);
    let (left, right, top, bottom) = (90.0, 190.0, 50.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let budgets: Vec<f64> = r.runs.iter().map(|x| x.budget_eur as f64).collect();
    let (bmin, bmax) = budgets
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let log = bmax / bmin >= 4.0;
    let xf = |b: f64| -> f64 {
        if bmax <= bmin {
            return left + pw / 2.0;
        }
        let t = if log {
            (b.ln() - bmin.ln()) / (bmax.ln() - bmin.ln())
        } else {
            (b - bmin) / (bmax - bmin)
        };
        left + t * pw
    };
    let names = policy_names(r);
    let values: Vec<f64> = r
        .runs
        .iter()
        .flat_map(|run| {
            run.policies
                .iter()
                .map(|p| p.net_incremental_margin_cents / 100.0)
        })
        .collect();
    let vmin = values.iter().copied().fold(0.0f64, f64::min);
    let vmax = values.iter().copied().fold(0.0f64, f64::max);
    let step = nice_step((vmax - vmin).max(1.0), 6.0);
    let ylo = (vmin / step).floor() * step;
    let yhi = ((vmax / step).ceil() * step).max(ylo + step);
    let yf = |v: f64| top + ph - (v - ylo) / (yhi - ylo) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Net incremental margin vs daily budget (seed {}, {} sessions)</text>"#,
        left + pw / 2.0,
        r.seed,
        r.traffic.sessions
    );
    // Y grid and labels.
    let mut y = ylo;
    while y <= yhi + step * 0.01 {
        let py = yf(y);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="{}" stroke-width="1"/>"##,
            left + pw,
            if y.abs() < step * 1e-6 {
                "#444"
            } else {
                "#e5e5e5"
            }
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            py + 4.0,
            xml_escape(&eur(y * 100.0))
        );
        y += step;
    }
    // X ticks at the budgets.
    for b in &budgets {
        let px = xf(*b);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
            top + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + ph + 18.0,
            xml_escape(&eur(b * 100.0))
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">daily budget (EUR{})</text>"#,
        left + pw / 2.0,
        h - 18.0,
        if log { ", log scale" } else { "" }
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">net incremental margin (EUR over the run)</text>"#,
        top + ph / 2.0
    );
    for (i, name) in names.iter().enumerate() {
        let c = colour(name);
        let pts: Vec<(f64, f64)> = r
            .runs
            .iter()
            .filter_map(|run| {
                run.policy(name).map(|p| {
                    (
                        xf(run.budget_eur as f64),
                        yf(p.net_incremental_margin_cents / 100.0),
                    )
                })
            })
            .collect();
        let dash = if name == ORACLE || name == ORACLE_IN_RULE || name == NUDGE_NO_HOLDOUT {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2.5"{dash} points="{}"/>"#,
            pts.iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{c}"/>"#);
        }
        let ly = top + 10.0 + 22.0 * i as f64;
        let lx = left + pw + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2.5"{dash}/>"#,
            lx + 28.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 36.0,
            ly + 4.0,
            xml_escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// An HTML page with the chart inline and the table.
pub fn render_html(r: &SimReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>nudge simulate (seed {})</title>\n<style>body{{font-family:sans-serif;margin:2em}}pre{{font-size:12px}}</style>\n</head>\n<body>\n<h1>nudge simulate</h1>\n{}\n<pre>{}</pre>\n<ul>\n{}</ul>\n</body>\n</html>\n",
        r.seed,
        render_svg(r),
        xml_escape(&render_table(r)),
        r.definitions
            .iter()
            .map(|d| format!("<li>{}</li>\n", xml_escape(d)))
            .collect::<String>()
    )
}

#[cfg(test)]
mod diag {
    use super::*;

    /// Diagnostic (not a check): the ENV rule at the first eligible moment,
    /// no budget, with the model's or the true p0 and the prior, true-mean
    /// or each visitor's true lift, in expectation. Shows which of nudge's
    /// inputs limit it. `cargo test --lib simulate::diag -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore]
    fn rule_variants() {
        let args = SimulateArgs {
            sessions_per_hour: 2_000.0,
            ..SimulateArgs::default()
        };
        let settings = Settings::default();
        // NUDGE_DIAG_MODEL: another model file (e.g. one retrained by the
        // closed loop); its p0, and its learned lifts in the last variants.
        let model = Model::load(&std::env::var("NUDGE_DIAG_MODEL").map_or_else(
            |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"),
            PathBuf::from,
        ))
        .unwrap();
        let policy_tiers = settings.policy.tiers.clone();
        let learned = |v: &Visit, mo: &Moment, i: usize| -> f64 {
            let f = crate::synth::replay(
                &v.s,
                &crate::synth::DecisionPoint {
                    after_events: mo.after_events as usize,
                    at_ms: mo.at_ms,
                },
            );
            let l = model
                .lifts(&f, &ClientFeatures::default(), &policy_tiers)
                .unwrap()[i];
            if l.is_nan() {
                policy_tiers[i].lift
            } else {
                l
            }
        };
        let w = build_world(&args, &settings, &model).unwrap();
        let m = 0.3;
        let tiers = [500i64, 1_000, 2_000];
        let mean = [0.11, 0.20, 0.37];
        let prior = [0.25, 0.45, 0.70];
        type Lift<'a> = Box<dyn Fn(&Visit, &Moment, usize) -> f64 + 'a>;
        type P0<'a> = Box<dyn Fn(&Visit, &Moment) -> f64 + 'a>;
        let variants: Vec<(&str, P0, Lift, bool)> = vec![
            (
                "model p0, prior lift",
                Box::new(|_: &Visit, mo: &Moment| mo.p),
                Box::new(|_: &Visit, _: &Moment, i: usize| prior[i]),
                true,
            ),
            (
                "model p0, mean lift",
                Box::new(|_: &Visit, mo: &Moment| mo.p),
                Box::new(|_: &Visit, _: &Moment, i: usize| mean[i]),
                true,
            ),
            (
                "model p0, true lift",
                Box::new(|_: &Visit, mo: &Moment| mo.p),
                Box::new(|v: &Visit, _: &Moment, i: usize| v.s.truth.lift(tiers[i])),
                true,
            ),
            (
                "model p0, model lift",
                Box::new(|_: &Visit, mo: &Moment| mo.p),
                Box::new(learned),
                true,
            ),
            (
                "true p0, mean lift",
                Box::new(|v: &Visit, _: &Moment| v.s.truth.p_buy(0)),
                Box::new(|_: &Visit, _: &Moment, i: usize| mean[i]),
                true,
            ),
            (
                "true p0, true lift",
                Box::new(|v: &Visit, _: &Moment| v.s.truth.p_buy(0)),
                Box::new(|v: &Visit, _: &Moment, i: usize| v.s.truth.lift(tiers[i])),
                true,
            ),
            (
                "true p0, true lift, any segment",
                Box::new(|v: &Visit, _: &Moment| v.s.truth.p_buy(0)),
                Box::new(|v: &Visit, _: &Moment, i: usize| v.s.truth.lift(tiers[i])),
                false,
            ),
        ];
        let exit_or_last = |visit: &Visit, mo: &Moment| {
            let n = mo.after_events as usize;
            n == visit.s.events.len()
                || matches!(
                    visit.s.events[n - 1].kind,
                    crate::session::EventKind::Interaction {
                        signal: crate::session::Signal::ExitIntent
                    }
                )
        };
        for timing in ["first", "exit-or-last", "exit-only"] {
            println!("-- timing {timing}");
            for (name, p0f, liftf, hes_only) in &variants {
                let name = *name;
                let hes_only = *hes_only;
                let mut o = Offers::new(w.visits.len());
                let mut done = vec![false; w.visits.len()];
                for mo in &w.moments {
                    let vi = mo.visit as usize;
                    if done[vi]
                        || mo.intent_cents < 9_900
                        || (hes_only && mo.segment != Segment::Hesitant)
                    {
                        continue;
                    }
                    let visit = &w.visits[vi];
                    match timing {
                        "exit-or-last" if !exit_or_last(visit, mo) => continue,
                        "exit-only"
                            if !exit_or_last(visit, mo)
                                || mo.after_events as usize == visit.s.events.len()
                                    && !matches!(
                                        visit.s.events[mo.after_events as usize - 1].kind,
                                        crate::session::EventKind::Interaction {
                                            signal: crate::session::Signal::ExitIntent
                                        }
                                    ) =>
                        {
                            continue
                        }
                        _ => {}
                    }
                    let p0 = p0f(visit, mo).clamp(1e-6, 1.0 - 1e-6);
                    let mv = m * mo.intent_cents as f64;
                    let best = (0..3)
                        .map(|i| {
                            let pv = crate::model::sigmoid(
                                crate::model::logit(p0) + liftf(visit, mo, i),
                            );
                            (pv * (mv - tiers[i] as f64) - p0 * mv, tiers[i])
                        })
                        .max_by(|a, b| a.0.total_cmp(&b.0))
                        .unwrap();
                    if best.0 > 0.0 {
                        o.amount[vi] = best.1;
                        done[vi] = true;
                    }
                }
                let r = evaluate(&w, name, &o, m, &tiers, None);
                println!(
                "{name:<34} vouchers {:>6} used {:>8} E[M] {:>8.0} E[cost] {:>8.0} E[net] {:>8.0} E[roi] {:.2}",
                r.vouchers_offered,
                r.budget_used_cents / 100,
                r.expected.incremental_margin_cents / 100.0,
                r.expected.cost_cents / 100.0,
                r.expected.net_incremental_margin_cents / 100.0,
                r.expected.roi.unwrap_or(0.0)
            );
            }
        }
        let (o, _) = run_oracle(&w, &tiers, m, i64::MAX / 4, None);
        let r = evaluate(&w, "oracle", &o, m, &tiers, None);
        println!(
            "oracle unconstrained: vouchers {} used {} E[net] {:.0} E[roi] {:.2}",
            r.vouchers_offered,
            r.budget_used_cents / 100,
            r.expected.net_incremental_margin_cents / 100.0,
            r.expected.roi.unwrap_or(0.0)
        );
    }

    /// How much of the per-visitor voucher response a lift that is linear in
    /// the served features could capture with unlimited data: regress each
    /// tier's true lift on the features (log1p for counts, as the model's
    /// transforms) at in-rule exit-intent-or-last moments by least squares,
    /// then run the exit-or-last rule with the model's p0 and the fitted
    /// lifts. An upper bound for a learner of that form.
    #[test]
    #[ignore]
    #[allow(clippy::needless_range_loop)] // Gaussian elimination reads best by index.
    fn lift_predictability() {
        let args = SimulateArgs {
            sessions_per_hour: 2_000.0,
            ..SimulateArgs::default()
        };
        let settings = Settings::default();
        let model = Model::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"),
        )
        .unwrap();
        let w = build_world(&args, &settings, &model).unwrap();
        let m = 0.3;
        let tiers = [500i64, 1_000, 2_000];
        let feats = |v: &Visit, mo: &Moment| -> Vec<f64> {
            let f = crate::synth::replay(
                &v.s,
                &crate::synth::DecisionPoint {
                    after_events: mo.after_events as usize,
                    at_ms: mo.at_ms,
                },
            );
            let mut x = vec![1.0];
            for (d, val) in crate::features::FEATURES.iter().zip(f.0.iter()) {
                x.push(match d.scale {
                    crate::features::Scale::Log => val.max(0.0).ln_1p(),
                    _ => *val,
                });
            }
            // The response's own shape: tier / intent value.
            let intent = f.get(crate::features::F::intent_value_eur).max(1.0);
            x.push(1.0 / intent);
            x
        };
        let exit_or_last = |visit: &Visit, mo: &Moment| {
            let n = mo.after_events as usize;
            n == visit.s.events.len()
                || matches!(
                    visit.s.events[n - 1].kind,
                    crate::session::EventKind::Interaction {
                        signal: crate::session::Signal::ExitIntent
                    }
                )
        };
        // In-rule moments at exit intent or the last event.
        let mut rows: Vec<(usize, usize, Vec<f64>)> = Vec::new();
        for (k, mo) in w.moments.iter().enumerate() {
            let v = &w.visits[mo.visit as usize];
            if mo.intent_cents >= 9_900 && mo.segment == Segment::Hesitant && exit_or_last(v, mo) {
                rows.push((k, mo.visit as usize, feats(v, mo)));
            }
        }
        let d = rows[0].2.len();
        // Ridge-stabilised normal equations, solved by Gaussian elimination.
        let solve = |y: &dyn Fn(usize) -> f64| -> Vec<f64> {
            let mut a = vec![vec![0.0; d + 1]; d];
            for (_, vi, x) in &rows {
                let t = y(*vi);
                for i in 0..d {
                    for j in 0..d {
                        a[i][j] += x[i] * x[j];
                    }
                    a[i][d] += x[i] * t;
                }
            }
            for (i, row) in a.iter_mut().enumerate() {
                row[i] += 1e-6;
            }
            for c in 0..d {
                let p = (c..d)
                    .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                    .unwrap();
                a.swap(c, p);
                let piv = a[c][c];
                if piv.abs() < 1e-12 {
                    continue;
                }
                for j in c..=d {
                    a[c][j] /= piv;
                }
                for i in 0..d {
                    if i != c {
                        let f = a[i][c];
                        if f != 0.0 {
                            for j in c..=d {
                                a[i][j] -= f * a[c][j];
                            }
                        }
                    }
                }
            }
            a.iter().map(|r| r[d]).collect()
        };
        let mut betas = Vec::new();
        for &t in &tiers {
            let truth = |vi: usize| w.visits[vi].s.truth.lift(t);
            let b = solve(&truth);
            let (mut ss, mut st, mut mean) = (0.0, 0.0, 0.0);
            for (_, vi, _) in &rows {
                mean += truth(*vi);
            }
            mean /= rows.len() as f64;
            for (_, vi, x) in &rows {
                let pred: f64 = b.iter().zip(x).map(|(a, b)| a * b).sum();
                ss += (truth(*vi) - pred).powi(2);
                st += (truth(*vi) - mean).powi(2);
            }
            println!(
                "tier {t}: {} rows, mean true lift {mean:.3}, R^2 of a linear lift {:.2}",
                rows.len(),
                1.0 - ss / st
            );
            betas.push(b);
        }
        for (name, lift) in [
            ("fitted linear lift", 0usize),
            ("true lift", 1),
            ("mean lift", 2),
        ] {
            let mut o = Offers::new(w.visits.len());
            let mut done = vec![false; w.visits.len()];
            for (k, vi, x) in &rows {
                if done[*vi] {
                    continue;
                }
                let mo = &w.moments[*k];
                let p0 = mo.p.clamp(1e-6, 1.0 - 1e-6);
                let mv = m * mo.intent_cents as f64;
                let best = (0..3)
                    .map(|i| {
                        let l = match lift {
                            0 => betas[i].iter().zip(x).map(|(a, b)| a * b).sum(),
                            1 => w.visits[*vi].s.truth.lift(tiers[i]),
                            _ => [0.11, 0.20, 0.37][i],
                        };
                        let pv = crate::model::sigmoid(crate::model::logit(p0) + l);
                        (pv * (mv - tiers[i] as f64) - p0 * mv, tiers[i])
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .unwrap();
                if best.0 > 0.0 {
                    o.amount[*vi] = best.1;
                    done[*vi] = true;
                }
            }
            let r = evaluate(&w, name, &o, m, &tiers, None);
            println!(
                "model p0, {name:<20} vouchers {:>6} E[net] {:>8.0} E[roi] {:.2}",
                r.vouchers_offered,
                r.expected.net_incremental_margin_cents / 100.0,
                r.expected.roi.unwrap_or(0.0)
            );
        }
    }

    /// Whether the four simulate bars can hold together for a policy with
    /// perfect knowledge: the best expected net under the day's face-value
    /// cap *and* an expected redemption cost of at most half blanket's,
    /// against 80 % of the (face-value capped) oracle's expected net.
    /// `NUDGE_DIAG_HOURS` (default 24) and `NUDGE_DIAG_BUDGET_EUR` (1000).
    #[test]
    #[ignore]
    fn bars_feasibility() {
        let env_f = |k: &str, d: f64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let args = SimulateArgs {
            sessions_per_hour: 2_000.0,
            hours: env_f("NUDGE_DIAG_HOURS", 24.0),
            ..SimulateArgs::default()
        };
        let settings = Settings::default();
        let model = Model::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"),
        )
        .unwrap();
        let w = build_world(&args, &settings, &model).unwrap();
        let m = 0.3;
        let tiers = [500i64, 1_000, 2_000];
        let cap = (env_f("NUDGE_DIAG_BUDGET_EUR", 1_000.0) * 100.0) as i64;
        let blanket = first_come(&w, cap, 500, |mo| {
            (mo.intent_cents >= 9_900).then_some(1_000)
        });
        let b = evaluate(&w, "blanket", &blanket, m, &tiers, None);
        let (o, _) = run_oracle(&w, &tiers, m, cap, None);
        let o = evaluate(&w, "oracle", &o, m, &tiers, None);
        let cost_cap = 0.5 * b.expected.cost_cents;
        let ecost = |v: &Visit, a: i64| {
            if v.redeemable {
                v.s.truth.p_buy(a) * a as f64
            } else {
                0.0
            }
        };
        // Per visit, per tier: (face, E[cost], ENV).
        type Options = Vec<(i64, f64, f64)>;
        let cands: Vec<(usize, Options)> = w
            .visits
            .iter()
            .enumerate()
            .filter(|(_, v)| v.redeemable)
            .filter_map(|(i, v)| {
                let opts: Vec<_> = tiers
                    .iter()
                    .map(|&a| (a, ecost(v, a), true_env(v, a, m)))
                    .filter(|x| x.2 > 0.0)
                    .collect();
                (!opts.is_empty()).then_some((i, opts))
            })
            .collect();
        let pick = |mc: f64, mf: f64| {
            let mut face = vec![0i64; w.days];
            let (mut cost, mut net) = (0.0, 0.0);
            for (i, opts) in &cands {
                if let Some(best) = opts
                    .iter()
                    .map(|&(a, c, e)| (e - mc * c - mf * a as f64, a, c, e))
                    .filter(|x| x.0 > 0.0)
                    .max_by(|x, y| x.0.total_cmp(&y.0))
                {
                    face[w.visits[*i].day] += best.1;
                    cost += best.2;
                    net += best.3;
                }
            }
            (face.into_iter().max().unwrap_or(0), cost, net)
        };
        let mut best: Option<(f64, f64, f64, f64)> = None;
        for k in 0..40 {
            let mf = if k == 0 { 0.0 } else { 1e-3 * 1.3f64.powi(k) };
            let (mut lo, mut hi) = (0.0f64, 1e3f64);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if pick(mid, mf).1 > cost_cap {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let (face, cost, net) = pick(hi, mf);
            if face <= cap && cost <= cost_cap && best.is_none_or(|b| net > b.0) {
                best = Some((net, cost, hi, mf));
            }
        }
        let (net, cost, _, _) = best.unwrap();
        let roi = (net + cost) / cost;
        println!(
            "budget {} EUR/day over {} h: blanket E[cost] {:.0} E[net] {:.0} E[roi] {:.2}; oracle E[cost] {:.0} E[net] {:.0} E[roi] {:.2}",
            cap / 100,
            args.hours,
            b.expected.cost_cents / 100.0,
            b.expected.net_incremental_margin_cents / 100.0,
            b.expected.roi.unwrap_or(0.0),
            o.expected.cost_cents / 100.0,
            o.expected.net_incremental_margin_cents / 100.0,
            o.expected.roi.unwrap_or(0.0),
        );
        println!(
            "perfect knowledge with E[cost] <= 50 % of blanket's ({:.0}): E[net] {:.0} = {:.0} % of the oracle's, E[roi] {:.2} = {:.1} x blanket's",
            cost_cap / 100.0,
            net / 100.0,
            100.0 * net / o.expected.net_incremental_margin_cents,
            roi,
            roi / b.expected.roi.unwrap_or(f64::NAN)
        );
    }
}
