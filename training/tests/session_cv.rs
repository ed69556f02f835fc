//! Session and log fits choose alpha by k-fold CV over a grid, with folds
//! grouped by session, and take the segment thresholds from the
//! out-of-fold predictions of the chosen alpha (the CSV path's rule).

use nudge::decision_log::LogRecord;
use nudge_train::data::{self, Row};
use nudge_train::{fit, logs};
use std::collections::{BTreeSet, HashMap};

fn sessions(n: usize, seed: u64) -> (Vec<nudge::sim::synth::GeneratedSession>, fit::DataInfo) {
    let bytes = data::generate_jsonl(n, seed);
    let info = fit::DataInfo {
        sha256: data::sha256_hex(&bytes),
        source: format!("generated: {n} sessions, seed {seed}"),
    };
    (data::parse_jsonl(&bytes).unwrap(), info)
}

fn small_opts() -> fit::FitOptions {
    fit::FitOptions {
        seed: 3,
        alphas: vec![0.1, 10.0, 1000.0],
        k: 3,
        min_segment_rows: 20,
        ..fit::FitOptions::default()
    }
}

/// Every session's training rows sit in one fold, held-out rows in none,
/// and every fold holds sessions.
fn assert_folds_group_sessions(r: &fit::FitResult, k: usize) {
    let mut of_session: HashMap<usize, Option<usize>> = HashMap::new();
    let mut sessions_per_fold = vec![BTreeSet::new(); k];
    for (i, row) in r.rows.iter().enumerate() {
        let f = r.fold[i];
        assert_eq!(f.is_none(), r.held_out[i], "row {i}: fold iff training");
        let prev = *of_session.entry(row.session).or_insert(f);
        assert_eq!(prev, f, "session {} straddles folds", row.session);
        if let Some(f) = f {
            sessions_per_fold[f].insert(row.session);
        }
    }
    let sizes: Vec<usize> = sessions_per_fold.iter().map(BTreeSet::len).collect();
    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(
        *lo > 0 && hi - lo <= 2,
        "stratified session folds: {sizes:?}"
    );
}

#[test]
fn cv_picks_an_alpha_from_the_grid_records_it_and_never_splits_a_session() {
    let (sessions, info) = sessions(1_200, 21);
    let opts = small_opts();
    let r = fit::fit(&sessions, &info, &opts, "test", "2024-05-06").unwrap();
    assert!(r.converged);

    // The choice: a grid value, the lowest mean out-of-fold log-loss.
    assert_eq!(r.cv.len(), opts.alphas.len());
    let c = r.cv_chosen.unwrap();
    assert!(opts.alphas.contains(&r.alpha));
    assert_eq!(r.cv[c].alpha, r.alpha);
    for (g, cv) in r.cv.iter().enumerate() {
        assert_eq!(cv.alpha, opts.alphas[g], "grid order");
        assert_eq!(cv.folds.len(), opts.k);
        assert!(cv.mean_log_loss >= r.cv[c].mean_log_loss);
        assert!(cv.oof.iter().all(|p| p.is_finite()));
    }
    // The heaviest penalty underfits here.
    assert_ne!(r.alpha, 1000.0);

    // Lineage: grid, per-alpha CV log-loss and AUC, chosen alpha, k, seed.
    let t = &r.model.training;
    assert_eq!(t["alpha"], serde_json::json!(r.alpha));
    assert_eq!(t["alpha_selection"], "cv");
    assert_eq!(t["alphas"], serde_json::json!(opts.alphas));
    assert_eq!(t["k"], 3);
    assert_eq!(t["fold_seed"], 3);
    assert_eq!(t["cv"]["chosen_alpha"], serde_json::json!(r.alpha));
    let results = t["cv"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for (res, cv) in results.iter().zip(&r.cv) {
        assert_eq!(res["alpha"], serde_json::json!(cv.alpha));
        assert_eq!(res["mean_log_loss"], serde_json::json!(cv.mean_log_loss));
        assert!(res["mean_roc_auc"].as_f64().unwrap() > 0.7, "{res}");
    }
    assert_eq!(t["metrics"]["cv"].as_array().unwrap().len(), 3);
    assert_eq!(t["metrics"]["cv_chosen"], c);
    assert!(t["metrics"]["out_of_fold"]["roc_auc"].as_f64().unwrap() > 0.7);
    assert!(t["metrics"]["holdout"]["roc_auc"].as_f64().unwrap() > 0.7);
    // Every field of the fixed-alpha lineage is still there.
    for key in [
        "trainer",
        "crate_version",
        "created_at",
        "command",
        "data_sha256",
        "data_source",
        "sessions",
        "rows",
        "positives",
        "label",
        "max_decision_points_per_session",
        "seed",
        "holdout",
        "max_iterations",
        "gradient_tolerance",
        "gradient_norm_per_row",
        "converged",
        "clip_quantile",
        "dropped_features",
        "segment_rule",
    ] {
        assert!(!t[key].is_null(), "training.{key}");
    }
    assert!(t["segment_rule"]["hot_at_or_above"]
        .as_str()
        .unwrap()
        .contains("out-of-fold"));

    // Folds: grouped by session, the same as session_folds gives.
    assert_folds_group_sessions(&r, opts.k);
    let train: Vec<usize> = (0..r.rows.len()).filter(|&i| !r.held_out[i]).collect();
    let again = fit::session_folds(&r.rows, &train, opts.k, opts.seed).unwrap();
    let recorded: Vec<usize> = train.iter().map(|&i| r.fold[i].unwrap()).collect();
    assert_eq!(again, recorded);

    // Thresholds come from the out-of-fold predictions of the chosen alpha.
    let y_train: Vec<bool> = train.iter().map(|&i| r.rows[i].converted).collect();
    let want = fit::choose_thresholds(
        &r.cv[c].oof,
        &y_train,
        opts.hot_precision,
        opts.cold_npv,
        opts.min_segment_rows,
    );
    assert_eq!(r.model.segments, want);
    r.model.compile().expect("the model validates");

    // Deterministic.
    let r2 = fit::fit(&sessions, &info, &opts, "test", "2024-05-06").unwrap();
    assert_eq!(r2.p, r.p);
    assert_eq!(r2.model.segments, r.model.segments);
}

#[test]
fn fixed_alpha_skips_cv_and_keeps_in_sample_thresholds() {
    let (sessions, info) = sessions(600, 22);
    let opts = fit::FitOptions {
        alpha: 2.0,
        alphas: vec![],
        ..small_opts()
    };
    let r = fit::fit(&sessions, &info, &opts, "test", "2024-05-06").unwrap();
    assert!(r.cv.is_empty() && r.cv_chosen.is_none());
    assert_eq!(r.alpha, 2.0);
    assert!(r.fold.iter().all(Option::is_none));
    let t = &r.model.training;
    assert_eq!(t["alpha"], 2.0);
    assert_eq!(t["alpha_selection"], "fixed");
    assert!(t["cv"].is_null() && t["k"].is_null());
    let p_train: Vec<f64> = (0..r.rows.len())
        .filter(|&i| !r.held_out[i])
        .map(|i| r.p[i])
        .collect();
    let y_train: Vec<bool> = (0..r.rows.len())
        .filter(|&i| !r.held_out[i])
        .map(|i| r.rows[i].converted)
        .collect();
    let want = fit::choose_thresholds(&p_train, &y_train, 0.7, 0.97, 20);
    assert_eq!(r.model.segments, want);
}

#[test]
fn session_folds_group_rows_stratify_sessions_and_follow_the_seed() {
    // 300 sessions of 1..=4 rows, every third converted.
    let (s, _) = sessions(1, 1);
    let features = data::rows(&s, 1, 0)[0].features;
    let mut rows = Vec::new();
    for session in 0..300 {
        for _ in 0..(1 + session % 4) {
            rows.push(Row {
                session,
                features,
                converted: session % 3 == 0,
            });
        }
    }
    let train: Vec<usize> = (0..rows.len()).filter(|i| i % 7 != 0).collect();
    let f = fit::session_folds(&rows, &train, 4, 9).unwrap();
    assert_eq!(f, fit::session_folds(&rows, &train, 4, 9).unwrap());
    assert_ne!(f, fit::session_folds(&rows, &train, 4, 10).unwrap());
    let mut of: HashMap<usize, usize> = HashMap::new();
    let mut per_fold = vec![[0usize; 2]; 4];
    for (&i, &fi) in train.iter().zip(&f) {
        let prev = *of.entry(rows[i].session).or_insert_with(|| {
            per_fold[fi][usize::from(rows[i].converted)] += 1;
            fi
        });
        assert_eq!(prev, fi, "session {} straddles folds", rows[i].session);
    }
    for counts in &per_fold {
        // 300 sessions: 100 converted, 200 not (a few lose all rows to the
        // i % 7 filter, none here has only filtered rows except 1-row ones).
        assert!((20..=26).contains(&counts[1]), "{per_fold:?}");
        assert!((45..=51).contains(&counts[0]), "{per_fold:?}");
    }
    let few: Vec<usize> = (0..3).collect();
    assert!(fit::session_folds(&rows, &few, 4, 1).is_err());
}

#[test]
fn log_fits_cross_validate_by_logged_session() {
    let (s, _) = sessions(900, 23);
    let log = logs::generated_to_log(&s);
    let records: Vec<LogRecord> = std::str::from_utf8(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (log_rows, summary) = logs::replay(&records, logs::MissingOutcome::Skip);
    assert_eq!(summary.skewed_decisions, 0);
    let ids: Vec<String> = log_rows.iter().map(|r| r.session_id.clone()).collect();
    let n_sessions = summary.sessions;
    let rows: Vec<Row> = log_rows.into_iter().map(|r| r.row).collect();
    let info = fit::DataInfo {
        sha256: data::sha256_hex(&log),
        source: "logs: test".into(),
    };
    let opts = small_opts();
    let r = fit::fit_rows(rows, n_sessions, &info, &opts, "test", "2024-05-06").unwrap();
    assert!(opts.alphas.contains(&r.alpha));
    assert_folds_group_sessions(&r, opts.k);
    // And by the logged session id, not just the row index.
    let mut by_id: HashMap<&str, Option<usize>> = HashMap::new();
    for (id, f) in ids.iter().zip(&r.fold) {
        assert_eq!(*by_id.entry(id).or_insert(*f), *f, "{id} straddles folds");
    }
    assert_eq!(r.model.training["alpha_selection"], "cv");
}

#[test]
fn cli_fit_generate_cross_validates_and_alpha_means_no_cv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = env!("CARGO_BIN_EXE_nudge-train");
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap()
    };
    let base = [
        "fit",
        "--generate",
        "700",
        "--gen-seed",
        "5",
        "--min-segment-rows",
        "20",
    ];
    let o = run(&[
        &base[..],
        &["--k", "3", "--alphas", "0.1,10", "--out", "cv.json"],
    ]
    .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("cv.json")).unwrap()).unwrap();
    let t = &m["training"];
    assert_eq!(t["alpha_selection"], "cv");
    assert_eq!(t["alphas"], serde_json::json!([0.1, 10.0]));
    assert_eq!(t["k"], 3);
    assert_eq!(t["fold_seed"], 7);
    let o = run(&[&base[..], &["--alpha", "1", "--out", "fixed.json"]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("fixed.json")).unwrap()).unwrap();
    assert_eq!(m["training"]["alpha_selection"], "fixed");
    assert_eq!(m["training"]["alpha"], 1.0);
    // --alpha (no CV) and --alphas (the CV grid) contradict each other.
    let o = run(&[
        &base[..],
        &["--alpha", "1", "--alphas", "1,10", "--out", "x.json"],
    ]
    .concat());
    assert!(!o.status.success());
    assert!(!d.join("x.json").exists());
}
