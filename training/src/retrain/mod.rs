//! `nudge-train retrain`: the nightly loop in one call. From the service's
//! own decision logs it fits a candidate (intent model and voucher
//! response), values the candidate and the serving model off-policy on
//! randomised sessions neither fit saw, and writes the candidate only when
//! it is better; otherwise the serving model stays.
//!
//! # Steps
//! 1. Read the logs; their randomised rows ([`crate::uplift::randomised`]:
//!    one per session, holdout or explored) are split, stratified by arm and
//!    outcome with `seed`, into **evaluation** sessions
//!    (`evaluation_share`, default 30 %) and the rest.
//! 2. **Intent**: [`crate::fit::fit_rows`] on every logged decision of the
//!    sessions that are not evaluation sessions (as `nudge-train fit
//!    --logs`), at most `intent_sessions` of them (default
//!    [`DEFAULT_INTENT_SESSIONS`], a seeded uniform draw of whole sessions)
//!    so that a night's fit does not grow with the logs.
//! 3. **Response**: [`crate::uplift::fit_logs`] on the remaining randomised
//!    rows with that intent model as its base (as `nudge-train uplift
//!    --logs`: the settings grid, each judged on its own validation split,
//!    the best kept).
//! 4. **Comparison** ([`compare`]) on the evaluation sessions: the doubly
//!    robust value per session of the service's rule with the serving model
//!    and with the candidate ([`crate::uplift::value`]), with 95 %
//!    intervals, the paired difference and a no-voucher reference.
//! 5. **Decision** ([`decide`]): the candidate **replaces** the serving
//!    model when its DR value is higher *and* the lower bound of its
//!    interval is not below the serving model's; else the serving model is
//!    **kept**. Higher alone would let a noisier candidate (fewer sessions
//!    where it matches the logged action, so a wider interval) win on a
//!    lucky draw; the lower-bound condition asks that its pessimistic case
//!    is no worse either. A candidate that cannot be fitted is not a
//!    candidate: kept, with the reason.
//! 6. **Write** `out` atomically with the candidate when replaced; when
//!    the serving model is kept nothing is written (a caller that watches
//!    `out` sees no change, and an `out` that existed keeps its bytes). The
//!    candidate's `training` lineage names the serving model it replaces
//!    (`parent_version`). The report says what and why
//!    ([`RetrainReport`]).
//!
//! The evaluation sessions are the only ones the decision reads, and no
//! fit, CV or setting choice read them, so the comparison is fair to both
//! models; the serving model was fitted on older logs and is judged on the
//! same sessions.

pub mod report;

pub use report::{Decision, EvaluationSet, RetrainReport, Side, Written, RULE};

use crate::data::Row;
use crate::fit::{self, DataInfo, FitOptions};
use crate::logs::{self, MissingOutcome};
use crate::output;
use crate::replay::{self, Reward};
use crate::uplift::{
    self, fit_logs, paired_difference, policy_value, randomised_rows, rule_actions, Judge,
    RandomisedRow, Setting, UpliftOptions,
};
use anyhow::{bail, Context as _, Result};
use nudge::domain::model::{Input, Model, ModelFile};
use nudge::domain::policy::Policy;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// Default cap on the sessions of the intent fit. The fit's cost grows
/// with its rows (about a minute for 20,000 sessions, some 55,000
/// decisions, on one core), while a 43-feature logistic model gains little
/// from more: the cap keeps a night's work the same after a week of logs
/// as after a day.
pub const DEFAULT_INTENT_SESSIONS: usize = 20_000;

/// What `retrain` reads and how it fits.
#[derive(Clone, Debug)]
pub struct Options {
    /// The service's logs (file or folder).
    pub logs: PathBuf,
    /// The serving model file.
    pub current: PathBuf,
    /// Where the chosen model file goes.
    pub out: PathBuf,
    /// Service config (policy and tiers); `None`: the documented defaults.
    pub config: Option<PathBuf>,
    /// Seeds the evaluation split (the fits keep their own seeds).
    pub seed: u64,
    /// Share of the randomised sessions kept for the comparison.
    pub evaluation_share: f64,
    pub missing: MissingOutcome,
    /// The intent fit (its `holdout` is inside the training sessions).
    pub intent: FitOptions,
    /// At most this many sessions feed the intent fit, drawn at random
    /// (seeded by `seed`) from the non-evaluation sessions, so that a
    /// night's work stays bounded as the logs grow; `None`: all of them.
    pub intent_sessions: Option<usize>,
    /// The response fit and its settings grid.
    pub uplift: UpliftOptions,
    /// Interval width (normal quantile), default 1.96.
    pub z: f64,
    /// The command line, for the lineage.
    pub command: String,
}

impl Options {
    /// The defaults of `nudge-train retrain`.
    pub fn new(logs: PathBuf, current: PathBuf, out: PathBuf) -> Self {
        Options {
            logs,
            current,
            out,
            config: None,
            seed: 42,
            evaluation_share: 0.3,
            missing: MissingOutcome::Skip,
            intent: FitOptions {
                version_prefix: "retrained".into(),
                ..FitOptions::default()
            },
            uplift: UpliftOptions {
                alphas: Some(fit::DEFAULT_ALPHAS.to_vec()),
                learner: uplift::Learner::Pooled,
                settings: Setting::grid(None, &uplift::Interactions::ALL),
                ..UpliftOptions::default()
            },
            intent_sessions: Some(DEFAULT_INTENT_SESSIONS),
            z: replay::Z95,
            command: String::new(),
        }
    }
}

/// Serving model, candidate and no voucher on the same sessions.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub current: Side,
    pub candidate: Side,
    pub no_voucher: Side,
    /// Candidate minus current (paired, per session).
    pub difference: replay::estimate::Interval,
    /// Candidate minus no voucher (paired, per session).
    pub gain_over_no_voucher: replay::estimate::Interval,
}

/// Values the rule with `current` and with `candidate` on `rows` (see the
/// module docs).
pub fn compare(
    current: &Model,
    candidate: &Model,
    rows: &[&RandomisedRow],
    policy: &Policy,
    value: &replay::Options,
) -> Result<Comparison> {
    let side = |name: &str, actions: Vec<i64>| -> Result<(Side, uplift::PolicyValue)> {
        let v = policy_value(rows, &actions, value)?;
        Ok((Side::new(name, &v), v))
    };
    let (cur, vc) = side(
        current.version(),
        rule_actions(current, policy, rows, None)?,
    )?;
    let (cand, vn) = side(
        candidate.version(),
        rule_actions(candidate, policy, rows, None)?,
    )?;
    let (none, v0) = side("no voucher", vec![0; rows.len()])?;
    Ok(Comparison {
        difference: paired_difference(&vn, &vc, value.z),
        gain_over_no_voucher: paired_difference(&vn, &v0, value.z),
        current: cur,
        candidate: cand,
        no_voucher: none,
    })
}

/// The replace rule (see the module docs) and its reasons, in EUR.
pub fn decide(c: &Comparison) -> (Decision, Vec<String>) {
    let eur = |v: f64| v / 100.0;
    let (cand, cur) = (&c.candidate.dr, &c.current.dr);
    let higher = cand.estimate > cur.estimate;
    let bound = cand.lo >= cur.lo;
    let reasons = vec![
        format!(
            "candidate DR value {:.4} EUR/session is {} the serving model's {:.4} (paired difference {:+.4} [{:.4}, {:.4}])",
            eur(cand.estimate),
            if higher { "above" } else { "not above" },
            eur(cur.estimate),
            eur(c.difference.estimate),
            eur(c.difference.lo),
            eur(c.difference.hi)
        ),
        format!(
            "candidate lower 95 % bound {:.4} is {} the serving model's {:.4}",
            eur(cand.lo),
            if bound { "not below" } else { "below" },
            eur(cur.lo)
        ),
    ];
    let d = if higher && bound {
        Decision::Replaced
    } else {
        Decision::Kept
    };
    (d, reasons)
}

/// What `retrain` reads of the logs: the randomised rows (one per
/// session), every replayed decision as an intent row and the session ids
/// those rows index.
#[derive(Debug)]
pub struct LogInputs {
    /// SHA-256 of the log files' bytes in read order (the lineage hash).
    pub sha256: String,
    pub randomised: Vec<RandomisedRow>,
    /// Rows of the labelled sessions, sessions in first-seen order, each
    /// one's decisions in time order (as [`logs::replay`]).
    pub rows: Vec<Row>,
    /// A row's `session` indexes this; empty for sessions without a row.
    pub session_ids: Vec<String>,
}

impl LogInputs {
    /// Streams the logs at `path` ([`logs::stream_sessions`]): memory is
    /// the rows and the sessions open at a time, not the folder's records.
    pub fn stream(path: &std::path::Path, missing: MissingOutcome) -> Result<Self> {
        let mut randomiser = uplift::Randomiser::default();
        let mut rows: Vec<Row> = Vec::new();
        let mut ids: Vec<(usize, String)> = Vec::new();
        let streamed = logs::stream_sessions(path, missing, |s| {
            randomiser.add(s);
            ids.push((s.session, s.session_id.to_owned()));
            rows.extend(s.decisions.iter().map(|d| Row {
                session: s.session,
                features: d.features,
                converted: s.converted,
            }));
        })?;
        rows.sort_by_key(|r| r.session);
        let mut session_ids = vec![String::new(); streamed.sessions];
        for (k, id) in ids {
            session_ids[k] = id;
        }
        let (randomised, _) = randomiser.finish();
        Ok(LogInputs {
            sha256: streamed.sha256,
            randomised,
            rows,
            session_ids,
        })
    }

    /// The same from records read into memory ([`logs::read_records`]).
    pub fn from_records(
        records: &[nudge::decision_log::LogRecord],
        sha256: String,
        missing: MissingOutcome,
    ) -> Result<Self> {
        let (randomised, _, _) = randomised_rows(records, missing)?;
        let (replayed, summary) = logs::replay(records, missing);
        let mut session_ids = vec![String::new(); summary.sessions];
        let rows = replayed
            .into_iter()
            .map(|r| {
                session_ids[r.row.session] = r.session_id;
                r.row
            })
            .collect();
        Ok(LogInputs {
            sha256,
            randomised,
            rows,
            session_ids,
        })
    }
}

/// The intent fit's rows: every logged decision of the sessions not in
/// `exclude` (at most `o.intent_sessions` of them, see [`sample_sessions`]),
/// sessions renumbered densely.
fn intent_rows(
    rows: Vec<Row>,
    ids: &[String],
    o: &Options,
    exclude: &HashSet<&str>,
) -> (Vec<Row>, usize) {
    let id = |r: &Row| ids[r.session].as_str();
    let keep = o.intent_sessions.map(|cap| {
        let ids = rows.iter().map(id).filter(|s| !exclude.contains(s));
        sample_sessions(ids, cap, o.seed)
    });
    let mut index: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for r in rows {
        if exclude.contains(id(&r)) || keep.as_ref().is_some_and(|k| !k.contains(id(&r))) {
            continue;
        }
        let next = index.len();
        let s = *index.entry(r.session).or_insert(next);
        out.push(Row { session: s, ..r });
    }
    (out, index.len())
}

/// Adds `parent_version` to a model file's `training` lineage (an object;
/// anything else there is kept under `previous`), so that a chain of
/// nightly models can be followed back.
pub fn name_parent(training: &mut serde_json::Value, parent: &str) {
    if !training.is_object() {
        let previous = std::mem::take(training);
        *training = if previous.is_null() {
            json!({})
        } else {
            json!({ "previous": previous })
        };
    }
    if let Some(t) = training.as_object_mut() {
        t.insert("parent_version".into(), json!(parent));
    }
}

/// At most `cap` distinct sessions of `ids`: those with the smallest
/// seeded SHA-256 of their id, a uniform draw that does not depend on the
/// logs' order and keeps a session whole.
pub fn sample_sessions<'a>(
    ids: impl Iterator<Item = &'a str>,
    cap: usize,
    seed: u64,
) -> HashSet<String> {
    use sha2::{Digest, Sha256};
    let distinct: HashSet<&str> = ids.collect();
    if distinct.len() <= cap {
        return distinct.into_iter().map(str::to_owned).collect();
    }
    let mut keyed: Vec<([u8; 32], &str)> = distinct
        .into_iter()
        .map(|id| {
            let mut h = Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(id.as_bytes());
            (h.finalize().into(), id)
        })
        .collect();
    keyed.sort_unstable();
    keyed.truncate(cap);
    keyed.into_iter().map(|(_, id)| id.to_owned()).collect()
}

/// The candidate from the non-evaluation sessions: intent, then response.
fn fit_candidate(
    (rows, ids): (Vec<Row>, &[String]),
    train: &[RandomisedRow],
    exclude: &HashSet<&str>,
    sha256: &str,
    o: &Options,
    judge: (&Policy, &replay::Options),
    parent: &str,
) -> Result<(ModelFile, uplift::LogsUplift)> {
    let (rows, n) = intent_rows(rows, ids, o, exclude);
    let info = DataInfo {
        sha256: sha256.to_owned(),
        source: format!(
            "logs: {} (without the evaluation sessions)",
            o.logs.display()
        ),
    };
    let created = output::created_at();
    let intent = fit::fit_rows(rows, n, &info, &o.intent, &o.command, &created)
        .context("intent model")?
        .model;
    let lineage = json!({
        "trainer": "nudge-train retrain",
        "crate_version": env!("CARGO_PKG_VERSION"),
        "created_at": created,
        "command": o.command,
        "data_sha256": info.sha256,
        "data_source": info.source,
        "base_model": intent.version,
    });
    let j = Judge {
        base: &intent,
        policy: judge.0,
        value: judge.1,
    };
    let r = fit_logs(train, &o.uplift, &j, lineage).context("voucher response")?;
    let mut file = ModelFile {
        uplift: Some(r.uplift.clone()),
        ..intent
    };
    name_parent(&mut file.training, parent);
    file.compile()
        .context("the candidate model does not validate")?;
    Ok((file, r))
}

/// Runs the whole loop (see the module docs) and writes `o.out`.
pub fn run(o: &Options) -> Result<RetrainReport> {
    if !(o.evaluation_share > 0.0 && o.evaluation_share < 1.0) {
        bail!("--evaluation-share must be in (0, 1)");
    }
    let settings = replay::load_settings(o.config.as_deref())?;
    let policy = &settings.policy;
    let value = replay::Options {
        z: o.z,
        ..replay::Options::new(policy, settings.min_order_cents, Reward::Net)
    };
    let current_bytes = std::fs::read(&o.current)
        .with_context(|| format!("read the serving model {}", o.current.display()))?;
    let current_file: ModelFile = serde_json::from_slice(&current_bytes)
        .with_context(|| format!("{} is not a model file", o.current.display()))?;
    let current = current_file.compile().with_context(|| {
        format!(
            "the serving model {} does not validate",
            o.current.display()
        )
    })?;
    if current.input() != Input::Session {
        bail!("retrain needs a session model (input \"session\")");
    }
    let LogInputs {
        sha256,
        randomised: rows,
        rows: intent,
        session_ids,
    } = LogInputs::stream(&o.logs, o.missing)?;
    if rows.is_empty() {
        bail!("no randomised sessions (holdout or exploration) in the logs: nothing to compare the models on");
    }
    let arm: Vec<usize> = rows
        .iter()
        .map(|r| policy.action_index(r.amount_cents))
        .collect();
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    let held = uplift::split(&arm, &y, o.evaluation_share, o.seed ^ 0x0072_6574_7261_696e);
    let eval_rows: Vec<&RandomisedRow> = rows
        .iter()
        .zip(&held)
        .filter(|(_, h)| **h)
        .map(|(r, _)| r)
        .collect();
    let train: Vec<RandomisedRow> = rows
        .iter()
        .zip(&held)
        .filter(|(_, h)| !**h)
        .map(|(r, _)| r.clone())
        .collect();
    if eval_rows.is_empty() {
        bail!("no evaluation sessions: too few randomised sessions");
    }
    let exclude: HashSet<&str> = eval_rows.iter().map(|r| r.session_id.as_str()).collect();
    let mut rows_per_arm: BTreeMap<i64, usize> = BTreeMap::new();
    for r in &eval_rows {
        *rows_per_arm.entry(r.amount_cents).or_default() += 1;
    }
    let evaluation = EvaluationSet {
        sessions: eval_rows.len(),
        rows_per_arm,
        share: o.evaluation_share,
        seed: o.seed,
        randomised_sessions: rows.len(),
    };
    let fitted = fit_candidate(
        (intent, &session_ids),
        &train,
        &exclude,
        &sha256,
        o,
        (policy, &value),
        current.version(),
    );
    let (decision, reasons, comparison, selection, candidate_bytes) = match fitted {
        Ok((file, r)) => {
            let candidate = file.compile()?;
            let c = compare(&current, &candidate, &eval_rows, policy, &value)?;
            let (d, reasons) = decide(&c);
            let mut cand_side = c.candidate.clone();
            cand_side.setting = Some(r.setting.name());
            let c = Comparison {
                candidate: cand_side,
                ..c
            };
            (
                d,
                reasons,
                Ok(c),
                r.settings,
                Some(output::model_json(&file)?),
            )
        }
        Err(e) => {
            let msg = format!("the candidate could not be fitted: {e:#}");
            let cur = policy_value(
                &eval_rows,
                &rule_actions(&current, policy, &eval_rows, None)?,
                &value,
            )?;
            let none = policy_value(&eval_rows, &vec![0; eval_rows.len()], &value)?;
            (
                Decision::Kept,
                vec![msg],
                Err((
                    Side::new(current.version(), &cur),
                    Side::new("no voucher", &none),
                )),
                Vec::new(),
                None,
            )
        }
    };
    let written = match (decision, &candidate_bytes) {
        (Decision::Replaced, Some(b)) => {
            output::write_atomic(&o.out, b)?;
            Written::Candidate
        }
        _ => Written::Nothing,
    };
    Ok(RetrainReport::new(
        decision, reasons, o, written, evaluation, comparison, selection,
    ))
}

#[cfg(test)]
mod tests {
    use super::sample_sessions;

    #[test]
    fn the_intent_sample_is_capped_whole_and_independent_of_order() {
        let ids: Vec<String> = (0..1_000).map(|i| format!("s-{i}")).collect();
        // Each session appears several times, as its decisions do.
        let repeated = || ids.iter().chain(&ids).map(String::as_str);
        let a = sample_sessions(repeated(), 100, 7);
        assert_eq!(a.len(), 100);
        assert!(a.iter().all(|s| ids.contains(s)));
        let reversed: Vec<&str> = repeated().collect::<Vec<_>>().into_iter().rev().collect();
        assert_eq!(sample_sessions(reversed.into_iter(), 100, 7), a);
        assert_ne!(sample_sessions(repeated(), 100, 8), a, "the seed draws");
        assert_eq!(sample_sessions(repeated(), 5_000, 7).len(), 1_000);
    }
}
