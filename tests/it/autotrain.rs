//! `[autotrain]`'s run against a data folder with a few logged randomised
//! decisions and a stand-in trainer (a shell script that records its
//! arguments, prints a report and exits with a chosen status): too few new
//! sessions skip, exit 0 is a promotion, 3 keeps the serving model, 1 is a
//! failure with the trainer's last stderr lines, and each is recorded in
//! `autotrain.json`. Only a completed run moves the "since" mark.

use chrono::{DateTime, TimeZone, Utc};
use nudge::app::autotrain::{run_once, Outcome, Paths, State};
use nudge::config::AutotrainSettings;
use nudge::decision_log::{DecisionRecord, LogRecord, LOG_FORMAT_VERSION};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

fn decision(at_ms: i64, session: &str, holdout: bool, explored: bool) -> LogRecord {
    LogRecord::Decision(DecisionRecord {
        v: LOG_FORMAT_VERSION,
        at_ms,
        session_id: session.into(),
        visitor_id: None,
        campaign: "default".into(),
        model_version: "m1".into(),
        features: Default::default(),
        client_features: Default::default(),
        client_categorical: Default::default(),
        probability: 0.3,
        segment: "hesitant".into(),
        intent_value_cents: 12_000,
        eligible: true,
        policy_tier_cents: 0,
        action_cents: if explored { 500 } else { 0 },
        propensity: 0.25,
        holdout,
        explored,
        learning: explored,
        lambda: 0.0,
        reason: "offered".into(),
        voucher_code: None,
        last_exit_intent_ms: None,
    })
}

fn append(data: &Path, records: &[LogRecord]) {
    let log = data.join("log");
    std::fs::create_dir_all(&log).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log.join("decisions-2026120100-0.jsonl"))
        .unwrap();
    for r in records {
        writeln!(f, "{}", serde_json::to_string(r).unwrap()).unwrap();
    }
}

fn ms(t: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t).unwrap()
}

#[tokio::test]
async fn a_run_counts_retrains_and_records_each_outcome() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tool = dir.path().join("tool");
    std::fs::create_dir_all(&tool).unwrap();
    let trainer = tool.join("nudge-train");
    std::fs::write(
        &trainer,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {t}/args\ncat {t}/report.json\n\
             echo 'reading logs' >&2\necho 'the last line' >&2\nexit $(cat {t}/code)\n",
            t = tool.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&trainer, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        tool.join("report.json"),
        r#"{"promoted": false, "current_version": "m1", "candidate_version": "m2",
            "current_value": 1000.5, "candidate_value": 990.25}"#,
    )
    .unwrap();
    let code = |c: &str| std::fs::write(tool.join("code"), c).unwrap();
    let model = data.join("model.json");
    let settings = AutotrainSettings {
        enabled: true,
        min_new_sessions: 3,
        extra_args: vec!["--seed".into(), "9".into()],
        ..AutotrainSettings::default()
    };
    let paths = Paths {
        data_dir: data.clone(),
        model: model.clone(),
        trainer: trainer.clone(),
        timeout: Duration::from_secs(60),
    };

    // Two randomised sessions (one logged twice), one greedy: too few.
    append(
        &data,
        &[
            decision(1_000, "a", true, false),
            decision(1_100, "a", false, true),
            decision(1_200, "b", false, true),
            decision(1_300, "greedy", false, false),
        ],
    );
    let o = run_once(&settings, &paths, ms(5_000)).await.unwrap();
    assert_eq!(
        o,
        Outcome::Skipped {
            new_sessions: 2,
            needed: 3
        }
    );
    assert!(!tool.join("args").exists(), "the trainer did not run");

    // A third: the trainer runs, and fails.
    append(&data, &[decision(1_400, "c", true, false)]);
    code("1");
    match run_once(&settings, &paths, ms(6_000)).await.unwrap() {
        Outcome::Failed {
            new_sessions,
            status,
            stderr,
        } => {
            assert_eq!(new_sessions, 3);
            assert!(status.contains('1'), "{status}");
            assert_eq!(stderr, ["reading logs", "the last line"]);
        }
        other => panic!("{other:?}"),
    }
    let args = std::fs::read_to_string(tool.join("args")).unwrap();
    let want = format!(
        "retrain\n--logs\n{log}\n--current\n{m}\n--out\n{m}\n--json\n--seed\n9\n",
        log = data.join("log").display(),
        m = model.display()
    );
    assert_eq!(args, want);
    let state = State::load(&data).unwrap();
    assert_eq!(state.last_run_ms, None, "a failure is retried");
    assert_eq!(state.last_attempt_ms, Some(6_000));

    // Exit 3: kept, with the report's numbers; the mark moves.
    code("3");
    match run_once(&settings, &paths, ms(7_000)).await.unwrap() {
        Outcome::Kept {
            new_sessions,
            current_version,
            candidate_version,
            current_value,
            candidate_value,
        } => {
            assert_eq!(new_sessions, 3);
            assert_eq!(current_version, "m1");
            assert_eq!(candidate_version.as_deref(), Some("m2"));
            assert_eq!(
                (current_value, candidate_value),
                (Some(1000.5), Some(990.25))
            );
        }
        other => panic!("{other:?}"),
    }
    let state = State::load(&data).unwrap();
    assert_eq!(state.last_run_ms, Some(7_000));
    assert!(matches!(state.last_outcome, Some(Outcome::Kept { .. })));
    assert!(!model.exists(), "the service never writes the model itself");

    // The same sessions do not count again.
    code("0");
    let o = run_once(&settings, &paths, ms(8_000)).await.unwrap();
    assert_eq!(
        o,
        Outcome::Skipped {
            new_sessions: 0,
            needed: 3
        }
    );
    assert_eq!(State::load(&data).unwrap().last_run_ms, Some(7_000));

    // Three new ones and exit 0: promoted.
    append(
        &data,
        &[
            decision(9_000, "d", true, false),
            decision(9_100, "e", false, true),
            decision(9_200, "f", false, true),
        ],
    );
    match run_once(&settings, &paths, ms(10_000)).await.unwrap() {
        Outcome::Promoted {
            new_sessions,
            candidate_version,
            ..
        } => {
            assert_eq!(new_sessions, 3);
            assert_eq!(candidate_version, "m2");
        }
        other => panic!("{other:?}"),
    }
    let state = State::load(&data).unwrap();
    assert_eq!(state.last_run_ms, Some(10_000));
    let text = std::fs::read_to_string(data.join("autotrain.json")).unwrap();
    assert!(text.contains("\"outcome\": \"promoted\""), "{text}");
}

/// A trainer that does not exist is a recorded failure, not a crash.
#[tokio::test]
async fn a_missing_trainer_is_a_recorded_failure() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), &[decision(1_000, "a", true, false)]);
    let settings = AutotrainSettings {
        enabled: true,
        min_new_sessions: 1,
        ..AutotrainSettings::default()
    };
    let paths = Paths {
        data_dir: dir.path().to_owned(),
        model: dir.path().join("model.json"),
        trainer: dir.path().join("no-such-trainer"),
        timeout: Duration::from_secs(60),
    };
    let o = run_once(&settings, &paths, ms(2_000)).await.unwrap();
    assert!(
        matches!(&o, Outcome::Failed { status, .. } if status.contains("cannot run")),
        "{o:?}"
    );
}

/// Replicas are refused: the config names the field.
#[test]
fn autotrain_with_the_redis_ledger_is_refused() {
    let e = nudge::config::RawConfig::from_toml(
        "[autotrain]\nenabled = true\n[ledger]\nbackend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:6379/0\"",
    )
    .unwrap()
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("autotrain.enabled"), "{e}");
}
