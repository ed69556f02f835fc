//! `nudge-train uplift`: the Hillstrom acceptance test (skipped with a
//! message when ../shared/data/hillstrom.csv is absent; CI has it), the
//! log path end to end (randomised log -> CLI -> model file served by the
//! service's loader), and the refusals. The Qini / uplift-curve unit tests on
//! hand-computed examples live in `src/uplift/qini.rs`.

mod common;

use nudge::decision_log::LogRecord;
use nudge::domain::model::{ClientFeatures, Model, ModelFile};
use nudge::domain::policy::Tier;
use nudge::sim::synth::{Generator, GeneratorConfig};
use nudge_train::logs::MissingOutcome;
use nudge_train::replay;
use nudge_train::uplift::{self, UpliftOptions, UpliftSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hillstrom() -> Option<(UpliftSpec, Vec<u8>)> {
    let data = workspace().join("../shared/data/hillstrom.csv");
    if !data.exists() {
        eprintln!(
            "SKIPPED: {} not found (the shared data directory is provided by CI; see ../shared/data/README.md)",
            data.display()
        );
        return None;
    }
    let (spec, _) = UpliftSpec::load(&workspace().join("training/specs/hillstrom.toml")).unwrap();
    Some((spec, std::fs::read(data).unwrap()))
}

/// Issue 5 acceptance: on the held-out split (30 %, seed 42), each arm's mean
/// predicted uplift lies in the randomised 95 % interval (both outcomes),
/// and Qini(Womens E-Mail, visit) >= 0.05 (scikit-uplift's two-model
/// logistic regression gets about 0.06; its `qini_auc_score` normalisation).
#[test]
fn hillstrom_mean_uplift_in_randomised_ci_and_qini() {
    let Some((spec, bytes)) = hillstrom() else {
        return;
    };
    for outcome in ["visit", "conversion"] {
        let e = uplift::read_experiment(&bytes, &spec, outcome).unwrap();
        assert_eq!(e.table.len(), 64_000);
        assert_eq!(e.names, ["No E-Mail", "Mens E-Mail", "Womens E-Mail"]);
        let r = uplift::fit_csv(&e, &UpliftOptions::default()).unwrap();
        for a in &r.evaluation.arms {
            println!(
                "{outcome} {:<14} mean predicted {:.4}, observed {:.4} [{:.4}, {:.4}], Qini {:.4}",
                a.arm,
                a.mean_predicted_uplift,
                a.observed_uplift,
                a.ci95_low,
                a.ci95_high,
                a.qini_coefficient
            );
            assert!(a.converged, "{outcome} {}: not converged", a.arm);
            assert!(
                a.mean_predicted_within_ci95,
                "{outcome} {}: mean predicted uplift {} outside [{}, {}]",
                a.arm, a.mean_predicted_uplift, a.ci95_low, a.ci95_high
            );
            assert!(a.ci95_low > 0.0, "e-mails raise {outcome}");
        }
        if outcome == "visit" {
            let w = &r.evaluation.arms[1];
            assert_eq!(w.arm, "Womens E-Mail");
            assert!(w.qini_coefficient >= 0.05, "Qini {}", w.qini_coefficient);
        }
    }
}

/// A decision log of an exploring service ([`common::exploration_log`]:
/// every session's first moment with an intent value of at least 99 EUR is
/// randomised, uniform over {none, 500, 1000, 2000}, 10 % held out); the
/// outcome is the generator's truth under the drawn voucher (common random
/// numbers). Returns the log and the true mean log-odds lift per tier.
fn randomised_log(n: usize, seed: u64) -> (Vec<u8>, [f64; 3]) {
    let sessions: Vec<_> = Generator::new(GeneratorConfig {
        seed,
        ..GeneratorConfig::default()
    })
    .take(n)
    .collect();
    let model = Model::load(&workspace().join("models/default.json")).unwrap();
    let log = common::exploration_log(&sessions, &model, 9_900, seed, |s, _, a, _| s.truth.lift(a));
    let mut truth = [0.0; 3];
    for (k, t) in truth.iter_mut().enumerate() {
        *t = sessions
            .iter()
            .map(|s| s.truth.lift(common::ACTIONS[k + 1]))
            .sum::<f64>()
            / sessions.len() as f64;
    }
    (log, truth)
}

#[test]
fn logs_uplift_cli_writes_a_servable_model_with_monotone_served_lifts() {
    let dir = tempfile::tempdir().unwrap();
    let (log, truth) = randomised_log(40_000, 11);
    let log_path = dir.path().join("decisions.jsonl");
    std::fs::write(&log_path, &log).unwrap();
    let out = dir.path().join("model-uplift.json");
    let base = workspace().join("models/default.json");
    let o = Command::new(env!("CARGO_BIN_EXE_nudge-train"))
        .args(["uplift", "--logs"])
        .arg(&log_path)
        .arg("--model")
        .arg(&base)
        .arg("--out")
        .arg(&out)
        // The pooled learner's settings only (the two-model learner's
        // per-arm lifts need not grow with the amount at ~2,000 rows per
        // arm), at a fixed penalty to keep the test short.
        .args(["--alpha", "1", "--learner", "pooled"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    println!("{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success());
    let model = Model::load(&out).expect("written model loads with the service's loader");
    assert!(model.has_uplift());
    assert!(!Model::load(&base).unwrap().has_uplift());

    // Served lifts (the service's own path) averaged over the randomised
    // sessions' decision features.
    let records: Vec<LogRecord> = std::str::from_utf8(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (rows, _, sel) = uplift::randomised_rows(&records, MissingOutcome::Skip).unwrap();
    println!("rows per arm {:?}", sel.rows_per_arm);
    assert!(sel.rows_per_arm.len() == 4 && sel.rows_per_arm.values().all(|&n| n > 2_000));
    let tiers = [500, 1_000, 2_000].map(|amount_cents| Tier {
        amount_cents,
        lift: 0.0,
    });
    let mut mean = [0.0; 3];
    for r in &rows {
        let c = ClientFeatures::default();
        let e = model
            .lift_estimates(&r.features, &c, r.intent_value_cents, &tiers)
            .unwrap();
        let served = model
            .lifts(&r.features, &c, r.intent_value_cents, &tiers)
            .unwrap();
        for k in 0..3 {
            mean[k] += e.point[k] / rows.len() as f64;
            // Served: below the estimate by a standard error (the file has
            // covariances), never below a smaller voucher's.
            assert!(e.se[k] > 0.0);
            assert!(
                served[k]
                    <= e.point[k].max(served[..k].iter().fold(f64::MIN, |a, b| a.max(*b))) + 1e-12
            );
            assert!(k == 0 || served[k] >= served[k - 1]);
        }
    }
    println!("learned mean log-odds lift per tier {mean:?}, generator truth {truth:?}");
    // Every tier helps on average and the largest voucher most; the 5 and
    // 10 EUR estimates are within each other's noise at ~2,000 training
    // rows per arm (the served lifts are monotone by construction).
    assert!(mean.iter().all(|&m| m > 0.0), "{mean:?}");
    assert!(mean[2] > mean[0] && mean[2] > mean[1], "{mean:?}");
    // Every setting of the grid was judged by the policy value next to
    // Qini, and the printout says which one was kept.
    for s in [
        "pooled ",
        "pooled+share ",
        "pooled+signals ",
        "pooled+share-signals ",
        "pooled+all ",
    ] {
        assert!(text.contains(s), "{s} missing:\n{text}");
    }
    assert!(text.contains("no voucher") && text.contains("served DR") && text.contains("Qini"));
    assert_eq!(
        text.matches("\n* ").count(),
        1,
        "one setting chosen:\n{text}"
    );
    // Same the other way: the lineage names the rows and the metrics.
    let file = nudge::domain::model::ModelFile::load(&out).unwrap();
    let t = &file.uplift.unwrap().training;
    assert_eq!(t["rows_per_arm"].as_array().unwrap().len(), 4);
    assert!(t["data_sha256"].as_str().unwrap().len() == 64);
    assert_eq!(t["holdout_metrics"]["arms"].as_array().unwrap().len(), 3);
    let settings = t["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 5);
    assert_eq!(settings.iter().filter(|s| s["chosen"] == true).count(), 1);
    assert_eq!(t["lower_bound_z"], 1.0);
}

/// What the learners fitted and what the written file serves are the same
/// numbers: the held-out mean log-odds lift the evaluation computed from
/// the fits equals the compiled model's point estimate averaged over the
/// same rows, for every learner setting.
#[test]
fn the_written_response_serves_what_was_fitted() {
    let (log, _) = randomised_log(12_000, 21);
    let records: Vec<LogRecord> = std::str::from_utf8(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (rows, _, _) = uplift::randomised_rows(&records, MissingOutcome::Skip).unwrap();
    let base = ModelFile::load(&workspace().join("models/default.json")).unwrap();
    let settings = nudge::config::RawConfig::default().validate().unwrap();
    let value = replay::Options::new(
        &settings.policy,
        settings.min_order_cents,
        replay::Reward::Net,
    );
    let judge = uplift::Judge {
        base: &base,
        policy: &settings.policy,
        value: &value,
    };
    let amounts = [0i64, 500, 1_000, 2_000];
    let arm: Vec<usize> = rows
        .iter()
        .map(|r| amounts.iter().position(|a| *a == r.amount_cents).unwrap())
        .collect();
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    for setting in uplift::Setting::grid(None, &uplift::Interactions::ALL) {
        let opts = UpliftOptions {
            learner: setting.learner,
            interactions: setting.interactions,
            alpha: 10.0,
            ..UpliftOptions::default()
        };
        let r = uplift::fit_logs(&rows, &opts, &judge, serde_json::Value::Null).unwrap();
        let file = ModelFile {
            uplift: Some(r.uplift.clone()),
            ..base.clone()
        };
        let m = file.compile().unwrap();
        let held = uplift::split(&arm, &y, opts.holdout, opts.seed);
        let tiers = [500, 1_000, 2_000].map(|amount_cents| Tier {
            amount_cents,
            lift: 0.0,
        });
        let n = held.iter().filter(|h| **h).count() as f64;
        for (k, a) in r.evaluation.arms.iter().enumerate() {
            let mean: f64 = rows
                .iter()
                .zip(&held)
                .filter(|(_, h)| **h)
                .map(|(row, _)| {
                    m.lift_estimates(
                        &row.features,
                        &ClientFeatures::default(),
                        row.intent_value_cents,
                        &tiers,
                    )
                    .unwrap()
                    .point[k]
                })
                .sum::<f64>()
                / n;
            assert!(
                (mean - a.mean_predicted_log_odds_lift).abs() < 1e-9,
                "{}: tier {k}: served {mean} vs fitted {}",
                setting.name(),
                a.mean_predicted_log_odds_lift
            );
        }
    }
}

#[test]
fn refuses_thin_or_single_class_arms_and_greedy_rows_are_ignored() {
    let (log, _) = randomised_log(600, 3);
    let mut records: Vec<LogRecord> = std::str::from_utf8(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (rows, _, sel) = uplift::randomised_rows(&records, MissingOutcome::Skip).unwrap();
    let opts = UpliftOptions::default();
    let base = ModelFile::load(&workspace().join("models/default.json")).unwrap();
    let settings = nudge::config::RawConfig::default().validate().unwrap();
    let value = replay::Options::new(
        &settings.policy,
        settings.min_order_cents,
        replay::Reward::Net,
    );
    let judge = uplift::Judge {
        base: &base,
        policy: &settings.policy,
        value: &value,
    };
    let e = format!(
        "{:#}",
        uplift::fit_logs(&rows, &opts, &judge, serde_json::Value::Null).unwrap_err()
    );
    assert!(e.contains("too few") && e.contains("--min-arm-rows"), "{e}");
    // Turning every decision greedy leaves nothing randomised.
    for r in &mut records {
        if let LogRecord::Decision(d) = r {
            d.holdout = false;
            d.explored = false;
        }
    }
    let (none, _, sel2) = uplift::randomised_rows(&records, MissingOutcome::Skip).unwrap();
    assert!(none.is_empty());
    assert_eq!(
        sel2.greedy_sessions_excluded,
        sel.rows_per_arm.values().sum::<usize>()
    );
    // A single-class arm is refused by name.
    let mut one_class = rows.clone();
    for r in one_class.iter_mut().filter(|r| r.amount_cents == 500) {
        r.converted = false;
    }
    let small = UpliftOptions {
        min_arm_rows: 10,
        ..opts
    };
    let e = format!(
        "{:#}",
        uplift::fit_logs(&one_class, &small, &judge, serde_json::Value::Null).unwrap_err()
    );
    assert!(e.contains("500 cents") && e.contains("negative"), "{e}");
}

#[test]
fn uplift_spec_errors_are_clear() {
    let good = std::fs::read_to_string(workspace().join("training/specs/hillstrom.toml")).unwrap();
    UpliftSpec::parse(&good, "t").unwrap();
    let bad = good.replace("nudge-uplift-spec/1", "nudge-spec/1");
    assert!(format!("{:#}", UpliftSpec::parse(&bad, "t").unwrap_err()).contains("format"));
    let bad = good.replace("[columns.spend]", "[columns.visit]");
    assert!(format!("{:#}", UpliftSpec::parse(&bad, "t").unwrap_err()).contains("visit"));
    let bad = good.replace("transforms = [\"standardise\"]", "transforms = [\"sqrt\"]");
    assert!(UpliftSpec::parse(&bad, "t").is_err());
    let s = UpliftSpec::parse(&good, "t").unwrap();
    let e = format!("{:#}", s.feature_spec("spend", "t").unwrap_err());
    assert!(e.contains("not one of"), "{e}");
    // An arm value outside the spec names the line.
    let csv = "recency,history_segment,history,mens,womens,zip_code,newbie,channel,segment,visit,conversion,spend\n\
               1,x,10,1,0,Rural,0,Web,No E-Mail,0,0,0\n\
               2,x,20,0,1,Urban,1,Phone,Kids E-Mail,1,0,0\n";
    let e = format!(
        "{:#}",
        uplift::read_experiment(csv.as_bytes(), &s, "visit").unwrap_err()
    );
    assert!(e.contains("line 3") && e.contains("Kids E-Mail"), "{e}");
}
