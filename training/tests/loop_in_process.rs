//! The closed loop with the trainer's own code in the same process:
//! `nudge::sim::simulate_days` serves each day through the real engine and
//! each night calls `nudge_train::retrain::run` on all days' logs. Small
//! traffic and a learning budget that is the whole cap, so that the nights
//! have randomised vouchers to fit and compare; what must hold whatever the
//! nights decide: each night's report is read, the model that serves the
//! next day is the one the night wrote, exploration stays inside its
//! budget, and the vouchers nudge chooses never lose money in expectation.

use nudge::config::RawConfig;
use nudge::sim::{self, Retrain, RetrainOutcome, SimError, SimulateArgs};
use nudge_train::retrain::{self, Decision};
use nudge_train::uplift::{Interactions, Learner, Setting};
use std::path::{Path, PathBuf};

const BUDGET_EUR: i64 = 2_000;

/// `nudge-train retrain` as a library call, kept small for a debug build:
/// a fixed intent penalty, a capped intent fit, one response setting.
#[derive(Default)]
struct InProcess {
    decisions: Vec<Decision>,
}

impl Retrain for InProcess {
    fn retrain(
        &mut self,
        logs: &Path,
        current: &Path,
        out: &Path,
        day: u32,
    ) -> Result<RetrainOutcome, SimError> {
        let mut o = retrain::Options::new(logs.into(), current.into(), out.into());
        o.seed = 100 + u64::from(day);
        o.intent.alphas = Vec::new();
        o.intent.alpha = 1.0;
        o.intent_sessions = Some(3_000);
        o.uplift.alphas = None;
        o.uplift.alpha = 1.0;
        o.uplift.min_arm_rows = 5;
        o.uplift.settings = Setting::grid(Some(Learner::Pooled), &[Interactions::None]);
        let report = retrain::run(&o).map_err(|e| format!("{e:#}"))?;
        self.decisions.push(report.decision);
        let summary = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        Ok(RetrainOutcome {
            replaced: report.decision == Decision::Replaced,
            summary,
        })
    }
}

fn run_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nudge-loop-in-process-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_loop_runs_on_the_trainers_own_code_and_keeps_its_money_promises() {
    let mut raw = RawConfig::default();
    raw.budget.learning_share = Some(1.0);
    let settings = raw.validate().expect("config");
    let args = SimulateArgs {
        seed: 5,
        sessions_per_hour: 250.0,
        budgets_eur: vec![BUDGET_EUR],
        out_dir: None,
        days: Some(3),
        ..SimulateArgs::default()
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default.json");
    let dir = run_dir();
    let mut t = InProcess::default();
    let r = sim::simulate_days(&args, &settings, &shipped, &dir, &mut t)
        .await
        .expect("the loop");
    println!("{}", sim::render_days_table(&r));

    assert_eq!(t.decisions.len(), 2, "one night between each two days");
    for (i, d) in r.days.iter().enumerate() {
        let summary = &d.retrain_summary;
        if i + 1 < r.days.len() {
            let s = summary.as_ref().expect("the night's report");
            assert_eq!(s["format"], "nudge-retrain/1");
            assert_eq!(d.model.replaced, Some(t.decisions[i] == Decision::Replaced));
            // The next day is served by what the night wrote; a night that
            // kept the model writes nothing.
            let path = dir.join(format!("models/after-day-{:02}.json", i + 1));
            if d.model.replaced == Some(true) {
                let written = std::fs::read(&path).expect("the night's model file");
                let file: nudge::domain::model::ModelFile =
                    serde_json::from_slice(&written).unwrap();
                assert_eq!(r.days[i + 1].model.version, file.version);
            } else {
                assert!(!path.exists(), "a kept night writes nothing");
                assert_eq!(r.days[i + 1].model.version, d.model.version);
            }
        } else {
            assert!(d.model.replaced.is_none());
        }
        assert!(
            d.learning_spend_eur <= d.learning_budget_eur + 1e-9,
            "day {}: learning spend {} over its budget {}",
            d.day,
            d.learning_spend_eur,
            d.learning_budget_eur
        );
        let nudge = d.policies.iter().find(|p| p.policy == sim::NUDGE).unwrap();
        assert!(
            nudge.net_eur >= -d.learning_spend_eur - 1e-6,
            "day {}: nudge's net {} below minus its learning spend {}",
            d.day,
            nudge.net_eur,
            d.learning_spend_eur
        );
    }
    // The first night had randomised vouchers to learn from.
    let first = r.days[0].retrain_summary.as_ref().unwrap();
    let arms = first["evaluation"]["rows_per_arm"].as_object().unwrap();
    assert!(
        arms.len() > 1,
        "no explored vouchers to compare on: {arms:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
