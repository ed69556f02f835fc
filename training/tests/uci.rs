//! Real data: the UCI online-shoppers file with the shipped spec. Skips with
//! a message when `../shared/data` is absent (CI always has it).

use nudge_train::{cv, spec, tabular};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn uci() -> Option<(spec::Spec, spec::Table)> {
    let data = workspace().join("../shared/data/online_shoppers_intention.csv");
    if !data.exists() {
        eprintln!(
            "SKIP: {} not found (CI provides ../shared/data)",
            data.display()
        );
        return None;
    }
    let (s, _) =
        spec::Spec::load(&workspace().join("training/specs/uci_online_shoppers.toml")).unwrap();
    let t = spec::read_csv(&std::fs::read(&data).unwrap(), &s, true).unwrap();
    Some((s, t))
}

/// The acceptance figure: 5-fold stratified CV, seed 42, alpha 1 (= the
/// scikit-learn reference's C = 1): mean ROC-AUC >= 0.916.
#[test]
fn uci_five_fold_cv_auc_reaches_the_reference() {
    let Some((_, t)) = uci() else { return };
    assert_eq!(t.len(), 12_330);
    assert_eq!(t.y.iter().filter(|v| **v).count(), 1_908);
    let rows: Vec<usize> = (0..t.len()).collect();
    let fold = cv::stratified_folds(&t.y, 5, 42);
    let t0 = std::time::Instant::now();
    let r = tabular::cross_validate(&t, &rows, &fold, 5, 1.0, &tabular::Solver::default()).unwrap();
    eprintln!(
        "UCI 5-fold CV: mean ROC-AUC {:.4} (+- {:.4}), per fold {:?}, mean log-loss {:.4}, {:.1} s",
        r.mean_roc_auc,
        r.std_roc_auc,
        r.folds
            .iter()
            .map(|f| f.roc_auc.unwrap())
            .collect::<Vec<_>>(),
        r.mean_log_loss,
        t0.elapsed().as_secs_f64()
    );
    assert!(r.folds.iter().all(|f| f.converged));
    assert!(r.mean_roc_auc >= 0.916, "{}", r.mean_roc_auc);
}

/// The shipped model reads exactly the spec's columns, loads with the
/// service's loader and scores every row of the file.
#[test]
fn shipped_uci_model_scores_the_file_with_the_spec() {
    let Some((_, t)) = uci() else { return };
    let path = workspace().join("models/uci_online_shoppers.json");
    let file = nudge::domain::model::ModelFile::load(&path).unwrap();
    let model = file.compile().unwrap();
    assert_eq!(model.input(), nudge::domain::model::Input::Client);
    let rows: Vec<usize> = (0..t.len()).collect();
    let p = tabular::score_table(&model, &t, &rows).unwrap();
    let auc = nudge_train::metrics::roc_auc(&p, &t.y).unwrap();
    assert!(auc > 0.9, "{auc}");
    let tr = &file.training;
    assert_eq!(
        tr["data_sha256"],
        "1dccbeb029369ceee2a94c6abf4f31952916176593722e895a2716d689eea023"
    );
    for key in [
        "spec_sha256",
        "alpha",
        "command",
        "created_at",
        "crate_version",
    ] {
        assert!(!tr[key].is_null(), "training.{key}");
    }
    assert!(tr["metrics"]["holdout"]["roc_auc"].as_f64().unwrap() > 0.91);
}
