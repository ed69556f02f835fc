//! `[autotrain]`: the scheduled retraining of a single-node service (see
//! `app::autotrain`), validated once into [`AutotrainSettings`].

use super::{invalid, ConfigError, LedgerBackend};
use serde::Deserialize;
use std::path::PathBuf;

/// Default time of day of the run, in `budget.timezone`: after most shops'
/// evening traffic and before the morning's.
pub const DEFAULT_AT: &str = "03:30";
/// Default number of new randomised sessions a run needs: below it the
/// comparison's intervals are too wide to replace anything (see README
/// "Retraining").
pub const DEFAULT_MIN_NEW_SESSIONS: u64 = 2_000;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutotrain {
    /// Run `nudge-train retrain` once a day. Default false. Refused with
    /// `ledger.backend = "redis"` (every replica would retrain: schedule
    /// one job instead, see README "Scheduled retraining").
    pub enabled: Option<bool>,
    /// Local time of the daily run, "HH:MM" in `budget.timezone`. Default
    /// "03:30".
    pub at: Option<String>,
    /// Randomised (holdout or explored) sessions logged since the last run
    /// needed for a run. Default 2000.
    pub min_new_sessions: Option<u64>,
    /// The `nudge-train` executable. Default: `nudge-train` beside the
    /// running `nudge`, else on PATH.
    pub trainer: Option<PathBuf>,
    /// More arguments for `nudge-train retrain` (e.g. `["--config",
    /// "nudge.toml"]`). Default none.
    pub extra_args: Option<Vec<String>>,
}

/// `[autotrain]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutotrainSettings {
    pub enabled: bool,
    /// Local time of day of the run (in the budget's time zone).
    pub at: chrono::NaiveTime,
    pub min_new_sessions: u64,
    /// `None`: beside the running executable, else on PATH.
    pub trainer: Option<PathBuf>,
    pub extra_args: Vec<String>,
}

impl Default for AutotrainSettings {
    fn default() -> Self {
        RawAutotrain::default()
            .validate(LedgerBackend::Sqlite)
            .expect("the documented defaults are valid")
    }
}

/// Arguments the service passes itself; given twice they would fight.
const OWN_ARGS: [&str; 4] = ["--logs", "--current", "--out", "--json"];

/// "HH:MM", 00:00 to 23:59.
pub fn parse_at(text: &str) -> Option<chrono::NaiveTime> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    chrono::NaiveTime::from_hms_opt(h.parse().ok()?, m.parse().ok()?, 0)
}

impl RawAutotrain {
    pub fn validate(self, ledger: LedgerBackend) -> Result<AutotrainSettings, ConfigError> {
        let enabled = self.enabled.unwrap_or(false);
        if enabled && ledger == LedgerBackend::Redis {
            return Err(invalid(
                "autotrain.enabled",
                "not with ledger.backend = \"redis\": every replica would retrain; run `nudge-train retrain` from one scheduled job instead (README \"Scheduled retraining\")",
            ));
        }
        let at_text = self.at.as_deref().unwrap_or(DEFAULT_AT);
        let at = parse_at(at_text).ok_or_else(|| {
            invalid(
                "autotrain.at",
                format!("{at_text:?} is not a time of day \"HH:MM\" (00:00 to 23:59)"),
            )
        })?;
        let min_new_sessions = self.min_new_sessions.unwrap_or(DEFAULT_MIN_NEW_SESSIONS);
        if min_new_sessions == 0 {
            return Err(invalid(
                "autotrain.min_new_sessions",
                "must be at least 1 (a retrain without new randomised sessions learns nothing)",
            ));
        }
        if self
            .trainer
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(invalid(
                "autotrain.trainer",
                "empty: leave it out for nudge-train beside nudge or on PATH",
            ));
        }
        let extra_args = self.extra_args.unwrap_or_default();
        if let Some(a) = extra_args
            .iter()
            .find(|a| OWN_ARGS.contains(&a.split('=').next().unwrap_or("")))
        {
            return Err(invalid(
                "autotrain.extra_args",
                format!("{a:?} is set by the service itself (--logs, --current, --out, --json)"),
            ));
        }
        Ok(AutotrainSettings {
            enabled,
            at,
            min_new_sessions,
            trainer: self.trainer,
            extra_args,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::RawConfig;

    fn err(text: &str) -> String {
        RawConfig::from_toml(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_and_fields() {
        let s = RawConfig::default().validate().unwrap().autotrain;
        assert!(!s.enabled);
        assert_eq!(s.at, chrono::NaiveTime::from_hms_opt(3, 30, 0).unwrap());
        assert_eq!(s.min_new_sessions, 2_000);
        assert_eq!((s.trainer, s.extra_args.len()), (None, 0));
        let s = RawConfig::from_toml(
            "[autotrain]\nenabled = true\nat = \"23:05\"\nmin_new_sessions = 10\ntrainer = \"/opt/nudge-train\"\nextra_args = [\"--seed\", \"7\"]",
        )
        .unwrap()
        .validate()
        .unwrap()
        .autotrain;
        assert!(s.enabled);
        assert_eq!(s.at, chrono::NaiveTime::from_hms_opt(23, 5, 0).unwrap());
        assert_eq!(s.extra_args, ["--seed", "7"]);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("[autotrain]\nat = \"3:30\"", "autotrain.at"),
            ("[autotrain]\nat = \"24:00\"", "autotrain.at"),
            ("[autotrain]\nat = \"12:60\"", "autotrain.at"),
            ("[autotrain]\nmin_new_sessions = 0", "autotrain.min_new_sessions"),
            ("[autotrain]\ntrainer = \"\"", "autotrain.trainer"),
            ("[autotrain]\nextra_args = [\"--out=x\"]", "autotrain.extra_args"),
            (
                "[autotrain]\nenabled = true\n[ledger]\nbackend = \"redis\"\n[redis]\nurl = \"redis://r:6379/0\"",
                "autotrain.enabled",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(field), "{text}: {e}");
        }
        assert!(RawConfig::from_toml("[autotrain]\nwhen = \"x\"").is_err());
    }
}
