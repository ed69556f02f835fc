//! Reading logs as a stream: the two-pass readers of `fit --logs` and
//! `replay` give exactly what the in-memory readers give (rows, counts,
//! lineage hash, evaluation population), on interleaved sessions, replica
//! folders and a torn last line, and so do the streamed inputs of `uplift
//! --logs` and `retrain`; and the trainer's warnings on thin data
//! (`fit` prints its alpha, `replay` flags thin estimates, `uplift` says how
//! many randomised sessions it has and needs).

mod common;

use nudge::decision_log::LogRecord;
use nudge::domain::model::Model;
use nudge_train::logs::{self, MissingOutcome};
use nudge_train::replay::{self, Candidate, Options, Reward};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn default_model() -> Model {
    Model::load(&workspace().join("models/default.json")).expect("models/default.json")
}

/// An exploration log of `n` generated sessions (every eligible visitor
/// randomised, see `common::exploration_log`), as records.
fn records(n: usize, seed: u64) -> Vec<LogRecord> {
    let sessions =
        nudge_train::data::parse_jsonl(&nudge_train::data::generate_jsonl(n, seed)).unwrap();
    let log = common::exploration_log(&sessions, &default_model(), 9_900, seed, |_, _, _, _| 0.0);
    std::str::from_utf8(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn session_of(r: &LogRecord) -> &str {
    match r {
        LogRecord::Events(e) => &e.session_id,
        LogRecord::Decision(d) => &d.session_id,
        LogRecord::Outcome(o) => &o.session_id,
    }
}

fn jsonl(recs: &[&LogRecord]) -> String {
    let mut s = String::new();
    for r in recs {
        s.push_str(&serde_json::to_string(r).unwrap());
        s.push('\n');
    }
    s
}

/// Writes the records as a service with two replicas would leave them:
/// sessions interleaved (records in time order across sessions), replica
/// `a` with every even line, replica `b` with the rest and all outcomes, a
/// few rotated files each, and a torn last line in one file.
fn write_replicas(dir: &Path, recs: &[LogRecord]) {
    let mut sorted: Vec<&LogRecord> = recs.iter().collect();
    sorted.sort_by_key(|r| match r {
        LogRecord::Events(e) => e.at_ms,
        LogRecord::Decision(d) => d.at_ms,
        LogRecord::Outcome(o) => o.at_ms,
    });
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, r) in sorted.into_iter().enumerate() {
        if i % 2 == 0 && !matches!(r, LogRecord::Outcome(_)) {
            a.push(r);
        } else {
            b.push(r);
        }
    }
    for (sub, part) in [("a", a), ("b", b)] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for (k, chunk) in part.chunks(part.len().div_ceil(3)).enumerate() {
            let mut text = jsonl(chunk);
            if sub == "b" && k == 2 {
                text.push_str("{\"type\":\"decision\",\"v\":1,\"at_ms\":17");
            }
            std::fs::write(
                dir.join(sub)
                    .join(format!("decisions-2026112210-{k:04}.jsonl")),
                text,
            )
            .unwrap();
        }
    }
}

#[test]
fn streamed_rows_equal_the_in_memory_replay() {
    let mut recs = records(1_500, 3);
    // One session loses its outcome, one decision's logged feature is off.
    let victim = session_of(&recs[100]).to_owned();
    recs.retain(|r| !(matches!(r, LogRecord::Outcome(_)) && session_of(r) == victim));
    if let Some(LogRecord::Decision(d)) = recs
        .iter_mut()
        .rev()
        .find(|r| matches!(r, LogRecord::Decision(_)))
    {
        *d.features.get_mut("page_views").unwrap() += 1.0;
    }
    let dir = tempfile::tempdir().unwrap();
    write_replicas(dir.path(), &recs);
    for missing in [MissingOutcome::Skip, MissingOutcome::Negative] {
        let (want, want_summary, want_sha) = logs::read(dir.path(), missing).unwrap();
        let got = logs::read_rows(dir.path(), missing).unwrap();
        assert_eq!(got.sha256, want_sha);
        assert_eq!(got.rows.len(), want.len());
        for (g, w) in got.rows.iter().zip(&want) {
            assert_eq!(g.session, w.row.session);
            assert_eq!(g.features, w.row.features);
            assert_eq!(g.converted, w.row.converted);
        }
        let s = &got.summary;
        assert_eq!(s.files, want_summary.files);
        assert_eq!(s.records, want_summary.records);
        assert_eq!(s.sessions, want_summary.sessions);
        assert_eq!(s.decisions, want_summary.decisions);
        assert_eq!(s.rows, want_summary.rows);
        assert_eq!(
            s.sessions_without_outcome,
            want_summary.sessions_without_outcome
        );
        assert_eq!(
            s.decisions_without_outcome,
            want_summary.decisions_without_outcome
        );
        assert_eq!(s.duplicate_outcomes, want_summary.duplicate_outcomes);
        assert_eq!(s.skewed_decisions, want_summary.skewed_decisions);
        assert_eq!(s.skew_examples.len(), want_summary.skew_examples.len());

        assert_eq!(
            s.skew_examples[0].session_id,
            want_summary.skew_examples[0].session_id
        );
    }
}

#[test]
fn streamed_replay_population_equals_the_in_memory_one() {
    let recs = records(2_000, 5);
    let dir = tempfile::tempdir().unwrap();
    write_replicas(dir.path(), &recs);
    let settings = replay::load_settings(None).unwrap();
    let (_, _, in_memory) = logs::read_records(dir.path()).unwrap();
    let mut o = Options::new(&settings.policy, settings.min_order_cents, Reward::Net);
    o.explore_share = Some(1.0);
    for candidate in [
        Candidate::Fixed {
            amount_cents: 1_000,
        },
        Candidate::Rule {
            model: default_model(),
            policy: settings.policy.clone(),
        },
    ] {
        let want = replay::build(&in_memory, &candidate, &o).unwrap();
        let got = replay::build_from_logs(dir.path(), &candidate, &o).unwrap();
        assert_eq!(
            serde_json::to_value(&got.coverage).unwrap(),
            serde_json::to_value(&want.coverage).unwrap()
        );
        assert_eq!(got.units.len(), want.units.len());
        assert!(!got.units.is_empty());
        for (g, w) in got.units.iter().zip(&want.units) {
            // NaN-free: the direct model filled q; compare as JSON.
            assert_eq!(
                serde_json::to_value(g).unwrap(),
                serde_json::to_value(w).unwrap()
            );
        }
    }
}

/// `records` with one session's outcome dropped and one logged feature
/// off, written as two replicas' folders.
fn damaged_replicas(n: usize, seed: u64) -> (tempfile::TempDir, Vec<LogRecord>) {
    let mut recs = records(n, seed);
    let victim = session_of(&recs[100]).to_owned();
    recs.retain(|r| !(matches!(r, LogRecord::Outcome(_)) && session_of(r) == victim));
    if let Some(LogRecord::Decision(d)) = recs
        .iter_mut()
        .find(|r| matches!(r, LogRecord::Decision(d) if d.holdout || d.explored))
    {
        *d.features.get_mut("page_views").unwrap() += 1.0;
    }
    let dir = tempfile::tempdir().unwrap();
    write_replicas(dir.path(), &recs);
    (dir, recs)
}

#[test]
fn streamed_uplift_and_retrain_inputs_equal_the_in_memory_ones() {
    let (dir, _) = damaged_replicas(2_000, 13);
    // The folder as the in-memory readers see it (the torn line dropped).
    let (_, want_sha, in_memory) = logs::read_records(dir.path()).unwrap();
    for missing in [MissingOutcome::Skip, MissingOutcome::Negative] {
        let (want, want_summary, want_sel) =
            nudge_train::uplift::randomised_rows(&in_memory, missing).unwrap();
        let (got, streamed, got_sel) =
            nudge_train::uplift::randomised_rows_from_logs(dir.path(), missing).unwrap();
        assert!(!want.is_empty());
        assert_eq!(streamed.sha256, want_sha);
        // Debug prints f64 exactly, so equal text is equal rows.
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
        assert_eq!(
            serde_json::to_value(&got_sel).unwrap(),
            serde_json::to_value(&want_sel).unwrap()
        );
        let s = &streamed.summary;
        assert_eq!(
            (s.sessions, s.decisions, s.rows, s.sessions_without_outcome),
            (
                want_summary.sessions,
                want_summary.decisions,
                want_summary.rows,
                want_summary.sessions_without_outcome
            )
        );
        assert_eq!(s.skewed_decisions, want_summary.skewed_decisions);
        let decided = in_memory.iter().filter_map(|r| match r {
            LogRecord::Decision(d) => Some(d.at_ms),
            _ => None,
        });
        let span = decided.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
        assert_eq!(streamed.decisions_span_ms, span);

        use nudge_train::retrain::LogInputs;
        let want = LogInputs::from_records(&in_memory, want_sha.clone(), missing).unwrap();
        let got = LogInputs::stream(dir.path(), missing).unwrap();
        assert_eq!(format!("{got:?}"), format!("{want:?}"));
    }
}

fn nudge_train(args: &[&str], paths: &[&Path]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nudge-train"));
    c.args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().unwrap()
}

#[test]
fn fit_on_logs_says_which_alpha_cross_validation_chose() {
    let dir = tempfile::tempdir().unwrap();
    write_replicas(dir.path(), &records(600, 7));
    let out = dir.path().join("m.json");
    let run = |json: bool| {
        let mut args = vec!["fit", "--alphas", "0.1,10", "--k", "3"];
        if json {
            args.push("--json");
        }
        args.push("--logs");
        let mut c = Command::new(env!("CARGO_BIN_EXE_nudge-train"));
        c.args(&args).arg(dir.path()).arg("--out").arg(&out);
        c.output().unwrap()
    };
    let o = run(false);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = text.lines().find(|l| l.starts_with("alpha ")).expect(&text);
    assert!(line.contains("chosen by 3-fold CV"), "{line}");
    let o = run(true);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let alpha = v["alpha"].as_f64().unwrap();
    assert!(alpha == 0.1 || alpha == 10.0, "{v}");
    assert_eq!(v["alpha_selection"], "cv");
    // No progress bar in captured output.
    assert!(!String::from_utf8_lossy(&o.stderr).contains("rows/s"));
}

#[test]
fn replay_on_thin_logs_warns_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let recs = records(250, 9);
    std::fs::write(&log, jsonl(&recs.iter().collect::<Vec<_>>())).unwrap();
    let o = nudge_train(
        &[
            "replay",
            "--fixed-cents",
            "2000",
            "--explore-share",
            "1",
            "--json",
            "--logs",
        ],
        &[&log],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ess = v["effective_sample_size"].as_f64().unwrap();
    assert!(ess < 100.0, "{ess}");
    let warnings = v["warnings"].as_array().unwrap();
    assert!(!warnings.is_empty());
    assert!(err.contains("warning: effective sample size"), "{err}");
    assert!(
        err.contains("more days") && err.contains("explore_share"),
        "{err}"
    );
}

#[test]
fn uplift_on_too_few_randomised_sessions_says_how_many_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    std::fs::write(&log, jsonl(&records(400, 11).iter().collect::<Vec<_>>())).unwrap();
    let base = workspace().join("models/default.json");
    let out = dir.path().join("u.json");
    let o = Command::new(env!("CARGO_BIN_EXE_nudge-train"))
        .args(["uplift", "--alpha", "1", "--learner", "pooled", "--logs"])
        .arg(&log)
        .arg("--model")
        .arg(&base)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("too few randomised sessions"), "{err}");
    assert!(
        err.contains("in the logs") && err.contains("needs about 143"),
        "{err}"
    );
    assert!(err.contains("days"), "{err}");
    assert!(!out.exists());
}
