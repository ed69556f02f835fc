//! `nudge simulate --days N`, the closed loop, with stand-in retrainers:
//! one that always keeps the shipped model (cold start every day) and one
//! that swaps in a fixed model with learned voucher responses after the
//! first night. Small traffic (about 3,600 sessions a day, two days).

use nudge::config::RawConfig;
use nudge::domain::model::{ModelFile, UpliftArm, UpliftFile};
use nudge::sim::{self, DaysReport, KeepModel, Retrain, RetrainOutcome, SimError, SimulateArgs};
use std::path::{Path, PathBuf};
use tokio::sync::OnceCell;

const BUDGET_EUR: i64 = 300;
const SWAPPED: &str = "learned-after-day-1";

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json")
}

fn args(days: u32) -> SimulateArgs {
    SimulateArgs {
        seed: 11,
        sessions_per_hour: 150.0,
        budgets_eur: vec![BUDGET_EUR],
        out_dir: None,
        days: Some(days),
        ..SimulateArgs::default()
    }
}

fn run_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nudge-days-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run(days: u32, name: &str, retrainer: &mut dyn Retrain) -> DaysReport {
    let settings = RawConfig::default().validate().expect("defaults");
    let r = sim::simulate_days(
        &args(days),
        &settings,
        &shipped(),
        &run_dir(name),
        retrainer,
    )
    .await
    .expect("simulate days");
    println!("{}", sim::render_days_table(&r));
    r
}

/// Swaps in the shipped model with constant learned lifts for every tier,
/// after checking what it was given.
#[derive(Default)]
struct SwapRetrainer {
    nights: Vec<u32>,
    outcomes_seen: usize,
}

impl Retrain for SwapRetrainer {
    fn retrain(
        &mut self,
        logs: &Path,
        current: &Path,
        out: &Path,
        day: u32,
    ) -> Result<RetrainOutcome, SimError> {
        self.nights.push(day);
        self.outcomes_seen = nudge::decision_log::reader::read_dir(logs)?
            .iter()
            .filter(|r| matches!(r, nudge::decision_log::LogRecord::Outcome(_)))
            .count();
        let mut file = ModelFile::load(current)?;
        file.version = SWAPPED.into();
        file.uplift = Some(UpliftFile {
            arms: [(0, 0.0), (500, 0.6), (1_000, 0.9), (2_000, 1.3)]
                .into_iter()
                .map(|(amount_cents, intercept)| UpliftArm {
                    amount_cents,
                    intercept,
                    terms: Vec::new(),
                    covariance: None,
                })
                .collect(),
            lower_bound_z: None,
            training: serde_json::Value::Null,
        });
        std::fs::write(out, serde_json::to_string_pretty(&file)?)?;
        Ok(RetrainOutcome {
            replaced: true,
            summary: serde_json::json!({"decision": "replaced"}),
        })
    }
}

async fn kept() -> &'static DaysReport {
    static R: OnceCell<DaysReport> = OnceCell::const_new();
    R.get_or_init(|| async { run(2, "keep", &mut KeepModel).await })
        .await
}

async fn swapped() -> &'static (DaysReport, SwapRetrainer) {
    static R: OnceCell<(DaysReport, SwapRetrainer)> = OnceCell::const_new();
    R.get_or_init(|| async {
        let mut t = SwapRetrainer::default();
        let r = run(2, "swap", &mut t).await;
        (r, t)
    })
    .await
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
    k.sort_unstable();
    k
}

#[tokio::test]
async fn json_has_the_documented_shape() {
    let r = kept().await;
    let j = serde_json::to_value(r).unwrap();
    assert_eq!(keys(&j), ["days", "total", "world"]);
    assert_eq!(j["world"], sim::synth::ResponseWorld::default().name());
    let days = j["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    for (i, d) in days.iter().enumerate() {
        assert_eq!(
            keys(d),
            [
                "day",
                "learning_budget_eur",
                "learning_spend_eur",
                "model",
                "policies"
            ]
        );
        assert_eq!(d["day"], i as u64 + 1);
        assert_eq!(keys(&d["model"]), ["replaced", "version"]);
        assert!(d["learning_budget_eur"].as_f64().unwrap() > 0.0);
    }
    for ps in days
        .iter()
        .map(|d| &d["policies"])
        .chain([&j["total"]["policies"]])
    {
        let names: Vec<&str> = ps
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["policy"].as_str().unwrap())
            .collect();
        assert_eq!(names, sim::DAY_POLICIES);
        for p in ps.as_array().unwrap() {
            assert_eq!(
                keys(p),
                ["cost_eur", "net_eur", "policy", "roi", "vouchers"]
            );
        }
        // none is the baseline: nothing offered, nothing gained, no ROI.
        assert_eq!(ps[0]["vouchers"], 0);
        assert_eq!(ps[0]["cost_eur"], 0.0);
        assert_eq!(ps[0]["net_eur"], 0.0);
        assert!(ps[0]["roi"].is_null());
    }
    assert_eq!(j["days"][0]["model"]["replaced"], false);
    assert!(j["days"][1]["model"]["replaced"].is_null());
}

#[tokio::test]
async fn every_policy_sees_the_same_visitors() {
    let k = kept().await;
    let (s, _) = swapped().await;
    for (a, b) in k.days.iter().zip(&s.days) {
        assert!(a.sessions > 2_000, "{}", a.sessions);
        assert_eq!(a.sessions, b.sessions);
        for name in [sim::NONE, sim::BLANKET, sim::HEAT_TIER, sim::ORACLE] {
            let pa = a.policies.iter().find(|p| p.policy == name).unwrap();
            let pb = b.policies.iter().find(|p| p.policy == name).unwrap();
            assert_eq!(
                (pa.vouchers, pa.cost_eur, pa.net_eur),
                (pb.vouchers, pb.cost_eur, pb.net_eur),
                "{name} on day {}",
                a.day
            );
        }
    }
    // Day 1 is served by the same model in both runs: identical throughout.
    assert_eq!(
        serde_json::to_value(&k.days[0].policies).unwrap(),
        serde_json::to_value(&s.days[0].policies).unwrap()
    );
}

#[tokio::test]
async fn budgets_hold_and_the_oracle_bounds_nudge() {
    for r in [kept().await, &swapped().await.0] {
        for d in &r.days {
            let get = |n: &str| d.policies.iter().find(|p| p.policy == n).unwrap();
            for p in &d.policies {
                assert!(
                    p.budget_used_eur <= BUDGET_EUR as f64,
                    "{} used {} on day {}",
                    p.policy,
                    p.budget_used_eur,
                    d.day
                );
                assert!(p.cost_eur <= p.budget_used_eur + 1e-9, "{}", p.policy);
            }
            assert!(d.learning_spend_eur <= d.learning_budget_eur);
            let (nudge, same) = (get(sim::NUDGE), get(sim::ORACLE_SAME_SPEND));
            assert!(same.budget_used_eur <= nudge.budget_used_eur);
            assert!(same.net_eur >= nudge.net_eur - 0.01, "day {}", d.day);
            assert!(get(sim::ORACLE).net_eur >= same.net_eur - 0.01);
        }
    }
}

#[tokio::test]
async fn kept_shipped_model_only_explores() {
    let r = kept().await;
    let version = &r.days[0].model.version;
    for d in &r.days {
        assert_eq!(&d.model.version, version);
        let nudge = d.policies.iter().find(|p| p.policy == sim::NUDGE).unwrap();
        assert_eq!(d.nudge_greedy_vouchers, 0, "day {}", d.day);
        assert!(nudge.vouchers > 0, "cold start explores");
        // Every voucher is an exploration voucher, paid from the learning budget.
        assert!((nudge.budget_used_eur - d.learning_spend_eur).abs() < 1e-9);
        assert!(d.learning_spend_eur <= d.learning_budget_eur);
    }
}

#[tokio::test]
async fn swapped_model_serves_the_next_day() {
    let (r, t) = swapped().await;
    assert_eq!(t.nights, [1], "one night between two days");
    // The retrainer saw day 1's log with an outcome for every session.
    assert_eq!(t.outcomes_seen as u64, r.days[0].sessions);
    assert_eq!(r.days[0].model.replaced, Some(true));
    assert_ne!(r.days[0].model.version, SWAPPED);
    assert_eq!(r.days[1].model.version, SWAPPED);
    assert_eq!(r.days[0].nudge_greedy_vouchers, 0);
    assert!(
        r.days[1].nudge_greedy_vouchers > 0,
        "learned tiers are offered greedily"
    );
}

#[tokio::test]
async fn page_chart_and_json_files() {
    let dir = run_dir("page");
    let a = SimulateArgs {
        sessions_per_hour: 60.0,
        svg: Some(dir.join("days.svg")),
        html: Some(dir.join("days.html")),
        run_dir: Some(dir.join("run")),
        json: true,
        config: None,
        model: Some(shipped()),
        ..args(1)
    };
    let out = sim::run_days_cli(&a, &mut KeepModel).await.expect("run");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["days"].as_array().unwrap().len(), 1);
    let saved = std::fs::read_to_string(dir.join("run/report.json")).unwrap();
    assert_eq!(saved, out);
    let svg = std::fs::read_to_string(dir.join("days.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), sim::DAY_POLICIES.len());
    let html = std::fs::read_to_string(dir.join("days.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert!(html.contains("<svg") && html.contains("<table"));
    assert!(html.contains("<h2>Total</h2>") && html.contains("<h2>Day 1</h2>"));
    for name in sim::DAY_POLICIES {
        assert!(html.contains(&format!("<td>{name}</td>")), "{name}");
    }
    // A page, not the text table dumped into it.
    assert!(!html.contains("<pre>"));
    let table = sim::render_days_table(kept().await);
    assert!(table.contains("total over 2 days") && table.contains("net by day"));
}
