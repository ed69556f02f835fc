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
//! (`expected`), which removes the purchase-draw noise.
//!
//! # Several days: the closed loop
//!
//! `nudge simulate --days N` ([`simulate_days`]) serves N days one after
//! the other, each with a fresh engine built on the day's model: day 1 with
//! the shipped model, each next day with what the [`Retrain`]er made of all
//! the decision logs so far (see the `days` module).

pub mod synth;

mod days;
#[cfg(test)]
mod diag;
mod policies;
mod render;
mod render_days;
pub mod retrain;
mod score;
mod world;

pub use days::{
    simulate_days, DayModel, DayPolicy, DayReport, DaysReport, DaysSetup, Total, DAY_POLICIES,
    MAX_DAYS, ORACLE_SAME_SPEND,
};
use policies::*;
pub use render::{render_html, render_svg, render_table};
pub use render_days::{render_days_html, render_days_svg, render_days_table};
pub use retrain::{KeepModel, Retrain, RetrainOutcome, TrainerProcess};
use score::*;
use world::*;

use crate::clock::ManualClock;
use crate::config::{RawConfig, Settings};
use crate::domain::model::{ClientFeatures, Input, Model};
use crate::domain::policy::{OfferTrigger, Segment};
use crate::domain::session::SessionState;
use crate::engine::DecideInput;
use crate::engine::{self, Engine};
use crate::ledger::{CampaignBudget, DEFAULT_LEARNING_SHARE};
use crate::sim::synth::{GeneratedSession, Generator, GeneratorConfig, ResponseWorld};
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
    /// The generator's response world. Default calibrated.
    pub world: ResponseWorld,
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
    /// Days of the closed loop ([`simulate_days`]); None: the one-day
    /// budget sweep. Default none.
    pub days: Option<u32>,
    /// Also write the SVG chart to this file. Default none.
    pub svg: Option<PathBuf>,
    /// Also write the HTML page to this file. Default none.
    pub html: Option<PathBuf>,
    /// The loop's folder of decision logs and models. Default: `loop`
    /// under `out_dir`, else a folder under the system's temporary one.
    pub run_dir: Option<PathBuf>,
    /// The trainer's configuration, passed to `nudge-train retrain
    /// --config`. Default none.
    pub train_config: Option<PathBuf>,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        SimulateArgs {
            seed: 42,
            world: ResponseWorld::Calibrated,
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
            days: None,
            svg: None,
            html: None,
            run_dir: None,
            train_config: None,
        }
    }
}

/// The whole simulation.
#[derive(Clone, Debug, Serialize)]
pub struct SimReport {
    pub format: &'static str,
    pub seed: u64,
    /// The generator's response world.
    pub world: ResponseWorld,
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
    /// The exploration share nudge ran with: the cold share while the model
    /// has learned no voucher response.
    pub explore_share: f64,
    /// Whether nudge offered greedily on unlearned priors.
    pub offer_on_priors: bool,
    pub pacing_enabled: bool,
    pub blanket_voucher_cents: i64,
    pub heat_tier_bands: Vec<HeatBand>,
    pub traffic: Traffic,
    pub runs: Vec<BudgetRun>,
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
];

/// Errors of a simulation (setup problems; the simulation itself cannot fail).
pub type SimError = Box<dyn std::error::Error + Send + Sync>;

/// `nudge simulate`: loads the config and model, runs the sweep, writes the
/// files under `out_dir` and returns what to print (the table, or the JSON
/// document with `json`).
pub async fn run_cli(args: SimulateArgs) -> Result<String, SimError> {
    if args.days.is_some() {
        let mut trainer = TrainerProcess::locate(args.train_config.clone(), args.seed)?;
        return run_days_cli(&args, &mut trainer).await;
    }
    let settings = settings_of(&args)?;
    let (model, _source) = crate::app::load_model(&settings)?;
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
    write_file(args.svg.as_deref(), &render_svg(&report))?;
    write_file(args.html.as_deref(), &render_html(&report))?;
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

/// Writes `text` to `path` when set.
fn write_file(path: Option<&std::path::Path>, text: &str) -> Result<(), SimError> {
    match path {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()).into())
        }
        None => Ok(()),
    }
}

/// `nudge simulate --days N`: the closed loop with `retrainer` each night.
/// Day 1 is served by the configured model (`--model`, the config's, else
/// `models/default.json`, else the embedded default). Writes the run's
/// logs, models and `report.json` under the run folder, the chart and page
/// where asked, and returns the table (or the JSON document with `json`).
/// The config `nudge simulate` runs with: `--config`, `--model` over its
/// model, and no disk for money or logs (an in-memory ledger; the closed
/// loop writes its own decision logs).
fn settings_of(args: &SimulateArgs) -> Result<Settings, SimError> {
    let mut raw = RawConfig::load(args.config.as_deref())?;
    if let Some(m) = &args.model {
        raw.model = Some(m.clone());
    }
    raw.ledger.backend = Some("memory".into());
    raw.log.enabled = Some(false);
    Ok(raw.validate()?)
}

pub async fn run_days_cli(
    args: &SimulateArgs,
    retrainer: &mut dyn Retrain,
) -> Result<String, SimError> {
    let settings = settings_of(args)?;
    let run_dir = match (&args.run_dir, &args.out_dir) {
        (Some(d), _) => d.clone(),
        (None, Some(out)) => out.join("loop"),
        (None, None) => std::env::temp_dir().join(format!("nudge-simulate-{}", std::process::id())),
    };
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
    let default = std::path::Path::new(crate::config::DEFAULT_MODEL);
    let model_file = match &settings.model {
        Some(p) => p.clone(),
        None if default.is_file() => default.to_owned(),
        None => {
            let p = run_dir.join("shipped-model.json");
            std::fs::write(&p, crate::app::EMBEDDED_DEFAULT_MODEL)
                .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            p
        }
    };
    let report = simulate_days(args, &settings, &model_file, &run_dir, retrainer).await?;
    let json = serde_json::to_string_pretty(&report)? + "\n";
    write_file(Some(&run_dir.join("report.json")), &json)?;
    write_file(args.svg.as_deref(), &render_days_svg(&report))?;
    write_file(args.html.as_deref(), &render_days_html(&report))?;
    if args.json {
        return Ok(json);
    }
    let mut out = render_days_table(&report);
    let _ = writeln!(
        out,
        "\nlogs, models and report.json in {}",
        run_dir.display()
    );
    Ok(out)
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
    let tiers = settings.policy.amounts_ascending();
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
        let blanket = blanket(&w, cap, smallest, min_intent, args.blanket_voucher_cents);
        policies.push(evaluate(&w, BLANKET, &blanket, m, &tiers, Some(&none)));
        let heat = heat_tier(&w, cap, smallest, min_intent, &bands);
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
    Ok(SimReport {
        format: FORMAT,
        seed: args.seed,
        world: args.world,
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
        explore_share: settings
            .experiment
            .share(model.learns_any(&settings.policy.tiers)),
        offer_on_priors: settings.policy.offer_on_priors,
        pacing_enabled: settings.pacing.enabled,
        blanket_voucher_cents: args.blanket_voucher_cents,
        heat_tier_bands: bands,
        traffic,
        runs,
        definitions: DEFINITIONS.to_vec(),
    })
}
