//! The nightly retraining step of the multi-day simulation: a small trait,
//! and the implementation the `nudge` binary uses, which runs the trainer
//! (`nudge-train retrain`) as a separate program.

use super::SimError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one night of retraining decided.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrainOutcome {
    /// A new model was written to `out` and serves the next day; otherwise
    /// the current model keeps serving.
    pub replaced: bool,
    /// What the retrainer reported (for `nudge-train`, its JSON report).
    pub summary: serde_json::Value,
}

/// Retrains on every decision log written so far and decides whether the
/// next day is served with a new model.
pub trait Retrain {
    /// `logs`: the folder of all days' decision logs (one subfolder per
    /// day); `current`: the model file that served the day; `out`: where a
    /// replacement model goes; `day`: the day just served (1-based).
    fn retrain(
        &mut self,
        logs: &Path,
        current: &Path,
        out: &Path,
        day: u32,
    ) -> Result<RetrainOutcome, SimError>;
}

/// Keeps the current model every night (no retraining): the cold start
/// served for every day.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeepModel;

impl Retrain for KeepModel {
    fn retrain(
        &mut self,
        _: &Path,
        _: &Path,
        _: &Path,
        _: u32,
    ) -> Result<RetrainOutcome, SimError> {
        Ok(RetrainOutcome {
            replaced: false,
            summary: serde_json::json!({"decision": "kept"}),
        })
    }
}

/// The trainer's executable name.
pub const TRAINER: &str = "nudge-train";

/// Runs `nudge-train retrain --logs .. --current .. --out .. --json` each
/// night and reads its JSON report (`decision`: `"replaced"` or `"kept"`).
#[derive(Clone, Debug)]
pub struct TrainerProcess {
    /// The `nudge-train` executable.
    pub program: PathBuf,
    /// Passed as `--config` (the trainer's own configuration).
    pub config: Option<PathBuf>,
    /// Seed of the first night; night `d` uses `seed + d`.
    pub seed: u64,
}

impl TrainerProcess {
    /// Finds `nudge-train` beside the running executable (the same target
    /// folder), else on `PATH`.
    pub fn locate(config: Option<PathBuf>, seed: u64) -> Result<Self, SimError> {
        let name = format!("{TRAINER}{}", std::env::consts::EXE_SUFFIX);
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(&name)));
        let on_path = || {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(&name))
                    .find(|p| p.is_file())
            })
        };
        let program = beside
            .filter(|p| p.is_file())
            .or_else(on_path)
            .ok_or_else(|| {
                format!(
                    "`{TRAINER}` was found neither beside this executable nor on PATH; \
                     `nudge simulate --days` retrains each night with it: build it with \
                     `cargo build --release --workspace`"
                )
            })?;
        Ok(TrainerProcess {
            program,
            config,
            seed,
        })
    }
}

impl Retrain for TrainerProcess {
    fn retrain(
        &mut self,
        logs: &Path,
        current: &Path,
        out: &Path,
        day: u32,
    ) -> Result<RetrainOutcome, SimError> {
        let mut cmd = Command::new(&self.program);
        cmd.arg("retrain")
            .arg("--logs")
            .arg(logs)
            .arg("--current")
            .arg(current)
            .arg("--out")
            .arg(out)
            .arg("--seed")
            .arg(self.seed.wrapping_add(u64::from(day)).to_string())
            .arg("--json");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let run = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        // Exit status 3 is the trainer's "kept": not an error.
        if !run.status.success() && run.status.code() != Some(3) {
            return Err(format!(
                "{TRAINER} retrain after day {day} failed ({}): {} \
                 ({} may be older than this nudge: `cargo build --release --workspace`)",
                run.status,
                String::from_utf8_lossy(&run.stderr).trim(),
                self.program.display()
            )
            .into());
        }
        parse_report(&run.stdout, day)
    }
}

/// Reads the trainer's JSON report.
pub(crate) fn parse_report(stdout: &[u8], day: u32) -> Result<RetrainOutcome, SimError> {
    let summary: serde_json::Value = serde_json::from_slice(stdout)
        .map_err(|e| format!("{TRAINER} retrain after day {day}: not a JSON report: {e}"))?;
    let replaced = match summary.get("decision").and_then(|d| d.as_str()) {
        Some("replaced") => true,
        Some("kept") => false,
        other => {
            return Err(format!(
                "{TRAINER} retrain after day {day}: decision {other:?}, expected \"replaced\" or \"kept\""
            )
            .into())
        }
    };
    Ok(RetrainOutcome { replaced, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trainers_decision() {
        let r = parse_report(br#"{"decision": "replaced", "auc": 0.7}"#, 1).unwrap();
        assert!(r.replaced);
        assert_eq!(r.summary["auc"], 0.7);
        assert!(
            !parse_report(br#"{"decision": "kept"}"#, 2)
                .unwrap()
                .replaced
        );
        assert!(parse_report(br#"{"decision": "maybe"}"#, 3).is_err());
        assert!(parse_report(b"not json", 4).is_err());
    }
}
