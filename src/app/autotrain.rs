//! The daily retraining of a single-node `nudge serve` (`[autotrain]`).
//!
//! Once a day at `autotrain.at` (local time in `budget.timezone`) the task
//! counts the randomised sessions (holdout or explored decisions) logged
//! since the last retrain; with at least `min_new_sessions` of them it runs
//! `nudge-train retrain --logs <data_dir>/log --current MODEL --out MODEL
//! --json` as a child process and records the outcome in
//! `<data_dir>/autotrain.json`. The trainer writes the model file only when
//! its candidate wins (exit 0; 3 means the serving model stays), atomically,
//! and the service's model-file watcher serves it: this task never touches
//! the model, so a failed or killed run leaves the serving model as it was.
//! Why a child process: a retrain takes minutes of CPU and memory that must
//! not come from the threads answering requests, and a crash or a timeout
//! there cannot take the service down.
//!
//! Replicas (the Redis ledger) are refused at config validation: each would
//! retrain and write; one scheduled job does it for them (README
//! "Scheduled retraining").

use crate::config::{AutotrainSettings, Settings};
use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the last run is recorded, in the data folder.
pub const STATE_FILE: &str = "autotrain.json";
/// A retrain that runs longer than this is killed (the serving model stays).
pub const TIMEOUT: Duration = Duration::from_secs(2 * 3600);
/// The trainer's exit status when the serving model stays.
pub const EXIT_KEPT: i32 = 3;
/// Lines of the trainer's stderr kept with a failure.
const STDERR_LINES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum AutotrainError {
    #[error("autotrain: cannot read the decision log: {0}")]
    Log(#[from] crate::decision_log::reader::ReadError),
    #[error("autotrain: {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("autotrain: {path} is not a state file: {source}")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// What one run needs besides the settings.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `data_dir`: its `log` folder is read, [`STATE_FILE`] written.
    pub data_dir: PathBuf,
    /// The serving model file, `--current` and `--out` of the trainer.
    pub model: PathBuf,
    /// The `nudge-train` executable.
    pub trainer: PathBuf,
    /// The trainer is killed after this ([`TIMEOUT`] in service).
    pub timeout: Duration,
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Too few new randomised sessions: the trainer did not run.
    Skipped { new_sessions: u64, needed: u64 },
    /// The trainer wrote its candidate to the model file.
    Promoted {
        new_sessions: u64,
        current_version: String,
        candidate_version: String,
        current_value: Option<f64>,
        candidate_value: Option<f64>,
    },
    /// The trainer kept the serving model (wrote nothing).
    Kept {
        new_sessions: u64,
        current_version: String,
        candidate_version: Option<String>,
        current_value: Option<f64>,
        candidate_value: Option<f64>,
    },
    /// The trainer could not run, failed or timed out; retried next day.
    Failed {
        new_sessions: u64,
        status: String,
        stderr: Vec<String>,
    },
}

/// `<data_dir>/autotrain.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// When the last completed retrain (promoted or kept) started, ms since
    /// the epoch: sessions after it are new. Failures and skips leave it.
    pub last_run_ms: Option<i64>,
    /// The latest run of any kind and when it was.
    pub last_attempt_ms: Option<i64>,
    pub last_outcome: Option<Outcome>,
}

impl State {
    pub fn load(data_dir: &Path) -> Result<State, AutotrainError> {
        let path = data_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|source| AutotrainError::State { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(AutotrainError::Io { path, source }),
        }
    }

    fn save(&self, data_dir: &Path) -> Result<(), AutotrainError> {
        let path = data_dir.join(STATE_FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("the state serialises");
        crate::files::atomic_write(&path, &bytes, crate::files::Access::Default)
            .map_err(|source| AutotrainError::Io { path, source })
    }
}

/// The next run after `now`: `at` local time in `tz` today, else tomorrow.
/// A time the clocks skip (spring forward) runs at the first minute after
/// the gap; a time that occurs twice (fall back) runs at its first
/// occurrence, so a day never has two runs nor none.
pub fn next_run(now: DateTime<Utc>, at: NaiveTime, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    for day in today.iter_days().take(3) {
        let mut local = day.and_time(at);
        // At most a few hours of gap, minute by minute.
        for _ in 0..=240 {
            match tz.from_local_datetime(&local) {
                chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
                    let t = t.with_timezone(&Utc);
                    if t > now {
                        return t;
                    }
                    break;
                }
                chrono::LocalResult::None => local += chrono::Duration::minutes(1),
            }
        }
    }
    now + chrono::Duration::days(1)
}

/// The fields of a log line the count reads (any record type).
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    at_ms: i64,
    #[serde(default)]
    session_id: String,
    #[serde(default)]
    holdout: bool,
    #[serde(default)]
    explored: bool,
}

/// Distinct sessions with a randomised decision (holdout or explored)
/// after `since_ms` in the log folder `log` (0 when it does not exist).
/// Lines that are not records (a write cut short) are not counted; files
/// last modified before `since_ms` are not read.
pub fn count_new_sessions(log: &Path, since_ms: Option<i64>) -> Result<u64, AutotrainError> {
    if !log.exists() {
        return Ok(0);
    }
    let since = since_ms.unwrap_or(i64::MIN);
    let mut sessions: HashSet<String> = HashSet::new();
    for path in crate::decision_log::reader::log_files(log)? {
        let io = |source| AutotrainError::Io {
            path: path.clone(),
            source,
        };
        let modified_ms = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        if modified_ms.is_some_and(|m| m < since) {
            continue;
        }
        let file = std::fs::File::open(&path).map_err(io)?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(io)?;
            let Ok(r) = serde_json::from_str::<Line>(&line) else {
                continue;
            };
            if r.kind == "decision" && r.at_ms > since && (r.holdout || r.explored) {
                sessions.insert(r.session_id);
            }
        }
    }
    Ok(sessions.len() as u64)
}

/// One run at `now`: count, maybe retrain, record (see the module docs).
/// The returned outcome is also in [`STATE_FILE`] and logged.
pub async fn run_once(
    s: &AutotrainSettings,
    paths: &Paths,
    now: DateTime<Utc>,
) -> Result<Outcome, AutotrainError> {
    let mut state = State::load(&paths.data_dir)?;
    let log = paths.data_dir.join("log");
    let since = state.last_run_ms;
    let new_sessions = tokio::task::spawn_blocking(move || count_new_sessions(&log, since))
        .await
        .map_err(|e| AutotrainError::Io {
            path: paths.data_dir.join("log"),
            source: std::io::Error::other(e),
        })??;
    let outcome = if new_sessions < s.min_new_sessions {
        Outcome::Skipped {
            new_sessions,
            needed: s.min_new_sessions,
        }
    } else {
        let o = retrain(s, paths, new_sessions).await;
        if !matches!(o, Outcome::Failed { .. }) {
            state.last_run_ms = Some(now.timestamp_millis());
        }
        o
    };
    log_outcome(&outcome);
    state.last_attempt_ms = Some(now.timestamp_millis());
    state.last_outcome = Some(outcome.clone());
    state.save(&paths.data_dir)?;
    Ok(outcome)
}

fn log_outcome(o: &Outcome) {
    match o {
        Outcome::Skipped {
            new_sessions,
            needed,
        } => tracing::info!(
            new_sessions,
            needed,
            "autotrain skipped: too few new randomised sessions"
        ),
        Outcome::Promoted {
            new_sessions,
            current_version,
            candidate_version,
            current_value,
            candidate_value,
        } => tracing::info!(
            new_sessions,
            from = %current_version,
            to = %candidate_version,
            current_value_cents = current_value.unwrap_or(f64::NAN),
            candidate_value_cents = candidate_value.unwrap_or(f64::NAN),
            "autotrain promoted a new model"
        ),
        Outcome::Kept {
            new_sessions,
            current_version,
            candidate_version,
            current_value,
            candidate_value,
        } => tracing::info!(
            new_sessions,
            serving = %current_version,
            candidate = candidate_version.as_deref().unwrap_or("none"),
            current_value_cents = current_value.unwrap_or(f64::NAN),
            candidate_value_cents = candidate_value.unwrap_or(f64::NAN),
            "autotrain kept the serving model"
        ),
        Outcome::Failed {
            new_sessions,
            status,
            stderr,
        } => tracing::warn!(
            new_sessions,
            %status,
            stderr = %stderr.join("\n"),
            "autotrain failed; the serving model stays"
        ),
    }
}

/// Runs the trainer and reads its exit status and JSON report.
async fn retrain(s: &AutotrainSettings, paths: &Paths, new_sessions: u64) -> Outcome {
    let mut cmd = tokio::process::Command::new(&paths.trainer);
    cmd.arg("retrain")
        .arg("--logs")
        .arg(paths.data_dir.join("log"))
        .arg("--current")
        .arg(&paths.model)
        .arg("--out")
        .arg(&paths.model)
        .arg("--json")
        .args(&s.extra_args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let failed = |status: String, stderr: Vec<String>| Outcome::Failed {
        new_sessions,
        status,
        stderr,
    };
    tracing::info!(new_sessions, trainer = %paths.trainer.display(), "autotrain retraining");
    let out = match tokio::time::timeout(paths.timeout, cmd.output()).await {
        Err(_) => {
            return failed(
                format!("timed out after {} s", paths.timeout.as_secs()),
                Vec::new(),
            )
        }
        Ok(Err(e)) => {
            return failed(
                format!("cannot run {}: {e}", paths.trainer.display()),
                Vec::new(),
            )
        }
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail: Vec<String> = lines[lines.len().saturating_sub(STDERR_LINES)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let text = |k: &str| report[k].as_str().map(str::to_owned);
    let current_version = text("current_version").unwrap_or_default();
    match out.status.code() {
        Some(0) => Outcome::Promoted {
            new_sessions,
            current_version,
            candidate_version: text("candidate_version").unwrap_or_default(),
            current_value: report["current_value"].as_f64(),
            candidate_value: report["candidate_value"].as_f64(),
        },
        Some(EXIT_KEPT) => Outcome::Kept {
            new_sessions,
            current_version,
            candidate_version: text("candidate_version"),
            current_value: report["current_value"].as_f64(),
            candidate_value: report["candidate_value"].as_f64(),
        },
        _ => failed(out.status.to_string(), tail),
    }
}

/// The model file a retrain replaces: the configured one, else
/// `models/default.json` when it exists; `None` for the embedded copy.
pub fn model_path(settings: &Settings) -> Option<PathBuf> {
    match &settings.model {
        Some(p) => Some(p.clone()),
        None => {
            let p = Path::new(crate::config::DEFAULT_MODEL);
            p.exists().then(|| p.to_owned())
        }
    }
}

/// `nudge-train` beside the running executable, else on PATH, else the
/// bare name (the run then fails with the reason, logged).
pub fn locate_trainer(s: &AutotrainSettings) -> PathBuf {
    if let Some(t) = &s.trainer {
        return t.clone();
    }
    let name = format!("nudge-train{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(&name)))
        .filter(|p| p.is_file());
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(&name))
                .find(|p| p.is_file())
        })
    };
    beside
        .or_else(on_path)
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts the daily task when `[autotrain]` is enabled; it stops when
/// `shutdown` fires (a running trainer is killed). `None`: not enabled.
pub fn spawn(
    settings: &Settings,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let s = settings.autotrain.clone();
    if !s.enabled {
        return None;
    }
    let Some(model) = model_path(settings) else {
        tracing::info!(
            "autotrain off: the model is the embedded copy, there is no file to replace"
        );
        return None;
    };
    let paths = Paths {
        data_dir: settings.data_dir.clone(),
        model,
        trainer: locate_trainer(&s),
        timeout: TIMEOUT,
    };
    let tz = settings.budgets.timezone;
    Some(tokio::spawn(async move {
        loop {
            let now = Utc::now();
            let next = next_run(now, s.at, tz);
            tracing::info!(next = %next.with_timezone(&tz), "autotrain scheduled");
            let wait = (next - now).to_std().unwrap_or_default();
            let stop = async {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop => break,
            }
            let stop = async {
                let _ = shutdown.wait_for(|s| *s).await;
            };
            tokio::select! {
                r = run_once(&s, &paths, Utc::now()) => {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "autotrain run failed");
                    }
                }
                _ = stop => break,
            }
        }
        tracing::debug!(task = "autotrain", "background task stopped");
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn the_next_run_is_today_or_tomorrow_at_local_time() {
        let berlin = chrono_tz::Europe::Berlin;
        // 02:00 UTC is 03:00 in Berlin (winter): 03:30 local is still to come.
        assert_eq!(
            next_run(utc("2026-12-02T02:00:00Z"), hm(3, 30), berlin),
            utc("2026-12-02T02:30:00Z")
        );
        // Right at the run time, the next is tomorrow's.
        assert_eq!(
            next_run(utc("2026-12-02T02:30:00Z"), hm(3, 30), berlin),
            utc("2026-12-03T02:30:00Z")
        );
        assert_eq!(
            next_run(utc("2026-12-02T23:30:00Z"), hm(0, 15), chrono_tz::UTC),
            utc("2026-12-03T00:15:00Z")
        );
    }

    #[test]
    fn the_next_run_survives_daylight_saving_changes() {
        let berlin = chrono_tz::Europe::Berlin;
        // 29 March 2026: 02:00 -> 03:00; 02:30 does not exist: 03:00 CEST.
        assert_eq!(
            next_run(utc("2026-03-28T12:00:00Z"), hm(2, 30), berlin),
            utc("2026-03-29T01:00:00Z")
        );
        // 25 October 2026: 02:30 happens twice: the first (CEST), once.
        let first = next_run(utc("2026-10-24T12:00:00Z"), hm(2, 30), berlin);
        assert_eq!(first, utc("2026-10-25T00:30:00Z"));
        assert_eq!(
            next_run(first, hm(2, 30), berlin),
            utc("2026-10-26T01:30:00Z"),
            "not again an hour later"
        );
        // Across the change, a plain time keeps its local hour.
        assert_eq!(
            next_run(utc("2026-03-29T02:00:00Z"), hm(3, 30), berlin),
            utc("2026-03-30T01:30:00Z")
        );
    }

    #[test]
    fn new_randomised_sessions_are_counted_once_after_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::create_dir_all(log.join("replica-b")).unwrap();
        let d = |at: i64, s: &str, holdout: bool, explored: bool| {
            format!(
                "{{\"type\":\"decision\",\"at_ms\":{at},\"session_id\":\"{s}\",\"holdout\":{holdout},\"explored\":{explored}}}\n"
            )
        };
        let a = [
            d(100, "old", true, false),
            d(200, "s1", true, false),
            d(210, "s1", false, true),
            d(220, "greedy", false, false),
            "{\"type\":\"outcome\",\"at_ms\":300,\"session_id\":\"s1\",\"converted\":true}\n"
                .into(),
            d(230, "s2", false, true),
        ]
        .concat();
        std::fs::write(log.join("decisions-1.jsonl"), a + "{\"type\":\"deci").unwrap();
        std::fs::write(
            log.join("replica-b/decisions-1.jsonl"),
            d(240, "s3", true, false),
        )
        .unwrap();
        std::fs::write(log.join("notes.txt"), d(250, "s4", true, false)).unwrap();
        assert_eq!(count_new_sessions(&log, None).unwrap(), 4);
        assert_eq!(count_new_sessions(&log, Some(150)).unwrap(), 3);
        assert_eq!(count_new_sessions(&log, Some(240)).unwrap(), 0);
        assert_eq!(
            count_new_sessions(&dir.path().join("none"), None).unwrap(),
            0
        );
    }
}
