//! The written model file loads with the service's loader and, scored on
//! replayed features, reproduces the trainer's probabilities.

use nudge::domain::model::Model;
use nudge::sim::synth::replay;
use nudge_train::{data, fit, output};

#[test]
fn written_model_loads_and_reproduces_fitted_probabilities() {
    let bytes = data::generate_jsonl(3_000, 11);
    let sessions = data::parse_jsonl(&bytes).unwrap();
    let info = fit::DataInfo {
        sha256: data::sha256_hex(&bytes),
        source: "test".into(),
    };
    // A fixed alpha (no CV): this test is about the file round trip.
    let opts = fit::FitOptions {
        seed: 5,
        alphas: vec![],
        ..fit::FitOptions::default()
    };
    let result = fit::fit(&sessions, &info, &opts, "test", "2024-05-06").unwrap();
    assert!(
        result.converged,
        "{}",
        result.summary["gradient_norm_per_row"]
    );

    let dir = std::env::temp_dir().join(format!("nudge-train-rt-{}", std::process::id()));
    let path = dir.join("model.json");
    output::write_atomic(&path, &output::model_json(&result.model).unwrap()).unwrap();
    let model = Model::load(&path).expect("loads with nudge::domain::model::Model::load");
    std::fs::remove_dir_all(&dir).unwrap();

    assert_eq!(
        model.version(),
        format!("default-20240506-{}", &info.sha256[..8])
    );
    let seg = model.segments();
    assert!(0.0 < seg.cold_below && seg.cold_below < seg.hot_at_or_above);
    let t = &result.model.training;
    for key in [
        "data_sha256",
        "rows",
        "positives",
        "sessions",
        "seed",
        "alpha",
        "max_iterations",
        "converged",
        "command",
        "crate_version",
        "created_at",
    ] {
        assert!(!t[key].is_null(), "training.{key}");
    }
    let h = &t["metrics"]["holdout"];
    assert!(h["roc_auc"].as_f64().unwrap() > 0.75, "{h}");

    // Re-derive every row independently from the sessions (same order as
    // data::rows) and score with the service's model.
    let rows = data::rows(&sessions, opts.max_points_per_session, opts.seed);
    assert_eq!(rows.len(), result.rows.len());
    let empty = nudge::domain::model::ClientFeatures::default();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.features, result.rows[i].features);
        let score = model.score(&row.features, &empty).unwrap();
        assert!(
            (score.probability - result.p[i]).abs() < 1e-9,
            "row {i}: {} vs {}",
            score.probability,
            result.p[i]
        );
    }
    // And directly from a session's decision point.
    let s = &sessions[0];
    let f = replay(s, &s.decision_points[0]);
    assert!(model.score(&f, &empty).unwrap().probability.is_finite());
}

#[test]
fn shipped_default_model_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default.json");
    let model = Model::load(&path).expect("models/default.json loads");
    assert!(model.version().starts_with("default-"));
    let file = nudge::domain::model::ModelFile::load(&path).unwrap();
    assert_eq!(file.training["converged"], serde_json::json!(true));
    let s = nudge::sim::synth::Generator::new(Default::default()).next_session();
    let p = model
        .score(
            &replay(&s, s.decision_points.last().unwrap()),
            &nudge::domain::model::ClientFeatures::default(),
        )
        .unwrap()
        .probability;
    assert!((0.0..=1.0).contains(&p));
}
