//! `nudge simulate --days N`: the closed loop on the virtual clock.
//!
//! One generator run of `N x 24` hours from local midnight is cut into
//! days (a session belongs to the day of its first decision moment; the
//! day ends at midnight, so its moments after that are not asked). Every policy sees the same visitors each day. nudge is
//! served by a fresh [`Engine`] per day built on the day's model (the
//! ledger is fresh too: budgets are per day): day 1 by the shipped model, so
//! in cold start it gives no greedy voucher and explores at the cold share,
//! paid from the learning budget. Its decision log goes to
//! `<run>/logs/day-NN/` through the service's own writer, and every
//! session's outcome is recorded through the engine (`record_outcome`, as
//! the web tier's RecordOutcome), the purchase drawn from the world's true
//! probabilities with the session's common random number. Each night but
//! the last, the [`Retrain`]er retrains on `<run>/logs` (all days so far)
//! and either writes a new model (`<run>/models/after-day-NN.json`), which
//! serves the next day, or keeps the current one.
//!
//! Policies per day: none, blanket, heat-tier (scored by the shipped model
//! every day: a fixed rule), nudge, oracle, and oracle-same-spend (the
//! oracle's knapsack with the face value nudge offered that day as its
//! budget). Money is in expectation under the true probabilities (no
//! purchase-draw noise): `cost_eur = sum p_v v`, `net_eur = sum (p_v - p_0)
//! m V - cost_eur` (net incremental margin over none), `roi = (net + cost)
//! / cost`.

use super::*;
use crate::sim::retrain::Retrain;
use chrono::Datelike;
use std::path::Path;

/// The oracle limited to what nudge offered that day.
pub const ORACLE_SAME_SPEND: &str = "oracle-same-spend";
/// Policy names of the multi-day report, in table order.
pub const DAY_POLICIES: [&str; 6] = [NONE, BLANKET, HEAT_TIER, NUDGE, ORACLE, ORACLE_SAME_SPEND];
/// Longest loop, in days.
pub const MAX_DAYS: u32 = 60;

/// The multi-day report; the JSON is exactly `world`, `days`, `total`.
#[derive(Clone, Debug, Serialize)]
pub struct DaysReport {
    pub world: String,
    pub days: Vec<DayReport>,
    pub total: Total,
    /// How the loop was run (the table's header; not in the JSON).
    #[serde(skip)]
    pub setup: DaysSetup,
}

/// The run's parameters, for the table and the page.
#[derive(Clone, Debug, Default)]
pub struct DaysSetup {
    pub seed: u64,
    pub sessions_per_hour: f64,
    pub budget_eur: i64,
    pub timezone: String,
    pub margin_rate: f64,
    pub holdout_share: f64,
    pub blanket_voucher_cents: i64,
    /// The folder of logs and models.
    pub run_dir: PathBuf,
}

#[derive(Clone, Debug, Serialize)]
pub struct DayReport {
    /// 1-based.
    pub day: u32,
    pub policies: Vec<DayPolicy>,
    /// Face value of nudge's exploration vouchers offered this day.
    pub learning_spend_eur: f64,
    /// The day's learning budget.
    pub learning_budget_eur: f64,
    pub model: DayModel,
    /// Sessions of the day.
    #[serde(skip)]
    pub sessions: u64,
    /// Vouchers nudge gave by its greedy rule (not explored).
    #[serde(skip)]
    pub nudge_greedy_vouchers: u64,
    /// The retrainer's report of the night after this day.
    #[serde(skip)]
    pub retrain_summary: Option<serde_json::Value>,
}

/// The model that served the day, and what the night after it decided.
#[derive(Clone, Debug, Serialize)]
pub struct DayModel {
    pub version: String,
    /// The night after this day replaced the model; null after the last
    /// day (no night is simulated).
    pub replaced: Option<bool>,
}

/// One policy's money on one day (or in total), in expectation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DayPolicy {
    pub policy: String,
    /// Vouchers offered.
    pub vouchers: u64,
    /// Expected face value redeemed, EUR.
    pub cost_eur: f64,
    /// Expected net incremental margin over none, EUR.
    pub net_eur: f64,
    /// Expected incremental margin (gross) / expected cost; null when no
    /// cost.
    pub roi: Option<f64>,
    /// Face value offered (what the budget paid for), EUR.
    #[serde(skip)]
    pub budget_used_eur: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Total {
    pub policies: Vec<DayPolicy>,
}

fn cents_to_eur(c: f64) -> f64 {
    c.round() / 100.0
}

fn day_policy(p: &PolicyResult) -> DayPolicy {
    DayPolicy {
        policy: p.policy.clone(),
        vouchers: p.vouchers_offered,
        cost_eur: cents_to_eur(p.expected.cost_cents),
        net_eur: cents_to_eur(p.expected.net_incremental_margin_cents),
        roi: p.expected.roi,
        budget_used_eur: cents_to_eur(p.budget_used_cents as f64),
    }
}

fn total(days: &[DayReport]) -> Total {
    let policies = DAY_POLICIES
        .iter()
        .map(|&name| {
            let mut t = DayPolicy {
                policy: name.to_owned(),
                ..DayPolicy::default()
            };
            for p in days.iter().flat_map(|d| &d.policies) {
                if p.policy == name {
                    t.vouchers += p.vouchers;
                    t.cost_eur += p.cost_eur;
                    t.net_eur += p.net_eur;
                    t.budget_used_eur += p.budget_used_eur;
                }
            }
            t.cost_eur = (t.cost_eur * 100.0).round() / 100.0;
            t.net_eur = (t.net_eur * 100.0).round() / 100.0;
            t.roi = (t.cost_eur > 0.0).then(|| (t.net_eur + t.cost_eur) / t.cost_eur);
            t
        })
        .collect();
    Total { policies }
}

/// Local midnight `d` days after the start date.
fn day_start_ms(settings: &Settings, d: usize) -> Result<i64, SimError> {
    let (y, m, dd) = START_DATE;
    let date = chrono::NaiveDate::from_ymd_opt(y, m, dd)
        .and_then(|x| x.checked_add_days(chrono::Days::new(d as u64)))
        .ok_or("start date out of range")?;
    settings
        .budgets
        .timezone
        .with_ymd_and_hms(date.year(), date.month(), date.day(), 0, 0, 0)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| "no local midnight".into())
}

/// Cuts one generated world into its days: a visit goes to the day of its
/// first moment, with its moments of that day.
fn split_days(w: World, settings: &Settings) -> Result<Vec<World>, SimError> {
    let mut out: Vec<World> = (0..w.days)
        .map(|d| {
            Ok(World {
                visits: Vec::new(),
                moments: Vec::new(),
                start_ms: day_start_ms(settings, d)?,
                days: 1,
            })
        })
        .collect::<Result<_, SimError>>()?;
    let mut index = Vec::with_capacity(w.visits.len());
    for v in w.visits {
        let day = &mut out[v.day];
        index.push((v.day, day.visits.len() as u32));
        day.visits.push(Visit { day: 0, ..v });
    }
    for m in w.moments {
        let (d, visit) = index[m.visit as usize];
        // The day ends at midnight: later moments of its visits are not
        // asked, so each day's budget is the only one its visits use.
        if m.day == d {
            out[d].moments.push(Moment { visit, day: 0, ..m });
        }
    }
    Ok(out)
}

/// Runs the loop. `model_file` is the model that serves day 1 (the
/// retrainer's first `current`); `run_dir` receives `logs/` and `models/`
/// (both emptied first).
pub async fn simulate_days(
    args: &SimulateArgs,
    settings: &Settings,
    model_file: &Path,
    run_dir: &Path,
    retrainer: &mut dyn Retrain,
) -> Result<DaysReport, SimError> {
    let n_days = args.days.unwrap_or(1);
    if n_days == 0 || n_days > MAX_DAYS {
        return Err(format!("days must be in 1..={MAX_DAYS}").into());
    }
    if !(args.sessions_per_hour.is_finite() && args.sessions_per_hour > 0.0) {
        return Err("sessions_per_hour must be > 0".into());
    }
    let budget_eur = match args.budgets_eur.as_slice() {
        [b] if *b > 0 => *b,
        _ => return Err("the multi-day simulation takes one positive daily budget".into()),
    };
    if args.blanket_voucher_cents <= 0 {
        return Err("blanket_voucher_cents must be > 0".into());
    }
    let load = |path: &Path| -> Result<Model, SimError> {
        let model = Model::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if model.input() != Input::Session {
            return Err(format!(
                "model {} scores client features; the simulator needs a session model",
                model.version()
            )
            .into());
        }
        Ok(model)
    };
    let shipped = load(model_file)?;
    let logs = run_dir.join("logs");
    let models = run_dir.join("models");
    for dir in [&logs, &models] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let m = settings.policy.margin_rate;
    let min_intent = settings.policy.min_intent_cents;
    let tiers = settings.policy.amounts_ascending();
    let smallest = tiers[0];
    let cap = budget_eur.saturating_mul(100);
    // Heat-tier's bands and scores come from the shipped model every day.
    let bands = heat_bands(&shipped, &tiers);
    let world_args = SimulateArgs {
        hours: 24.0 * f64::from(n_days),
        ..args.clone()
    };
    let mut worlds = split_days(build_world(&world_args, settings, &shipped)?, settings)?;
    worlds.truncate(n_days as usize);

    let mut current = model_file.to_path_buf();
    let mut model = shipped.clone();
    let mut days = Vec::with_capacity(worlds.len());
    for (i, w) in worlds.iter().enumerate() {
        let day = i as u32 + 1;
        let none = evaluate(w, NONE, &Offers::new(w.visits.len()), m, &tiers, None);
        let blanket = blanket(w, cap, smallest, min_intent, args.blanket_voucher_cents);
        let heat = heat_tier(w, cap, smallest, min_intent, &bands);
        let day_logs = logs.join(format!("day-{day:02}"));
        let nudge = run_nudge(w, settings, &model, cap, smallest, Some(&day_logs)).await?;
        let (oracle, _) = run_oracle(w, &tiers, m, cap, None);
        let nudge_used: i64 = nudge.amount.iter().sum();
        let (same, _) = run_oracle(w, &tiers, m, nudge_used, None);
        let results = [
            evaluate(w, BLANKET, &blanket, m, &tiers, Some(&none)),
            evaluate(w, HEAT_TIER, &heat, m, &tiers, Some(&none)),
            evaluate(w, NUDGE, &nudge, m, &tiers, Some(&none)),
            evaluate(w, ORACLE, &oracle, m, &tiers, Some(&none)),
            evaluate(w, ORACLE_SAME_SPEND, &same, m, &tiers, Some(&none)),
        ];
        let mut policies = vec![day_policy(&none)];
        policies.extend(results.iter().map(day_policy));
        let mut report = DayReport {
            day,
            policies,
            learning_spend_eur: cents_to_eur(nudge.learning_cents.iter().sum::<i64>() as f64),
            learning_budget_eur: cents_to_eur(nudge.learning_cap_cents as f64),
            model: DayModel {
                version: model.version().to_owned(),
                replaced: None,
            },
            sessions: w.visits.len() as u64,
            nudge_greedy_vouchers: nudge.greedy,
            retrain_summary: None,
        };
        if day < n_days {
            let out = models.join(format!("after-day-{day:02}.json"));
            let night = retrainer.retrain(&logs, &current, &out, day)?;
            if night.replaced {
                model = load(&out)?;
                current = out;
            }
            let summary_path = models.join(format!("night-{day:02}.json"));
            std::fs::write(
                &summary_path,
                serde_json::to_string_pretty(&night.summary)? + "\n",
            )
            .map_err(|e| format!("cannot write {}: {e}", summary_path.display()))?;
            report.model.replaced = Some(night.replaced);
            report.retrain_summary = Some(night.summary);
        }
        days.push(report);
    }
    let total = total(&days);
    Ok(DaysReport {
        world: args.world.name().to_owned(),
        days,
        total,
        setup: DaysSetup {
            seed: args.seed,
            sessions_per_hour: args.sessions_per_hour,
            budget_eur,
            timezone: settings.budgets.timezone.name().to_owned(),
            margin_rate: m,
            holdout_share: settings.experiment.holdout_share,
            blanket_voucher_cents: args.blanket_voucher_cents,
            run_dir: run_dir.to_owned(),
        },
    })
}
