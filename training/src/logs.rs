//! Session logs in the service's own JSON-lines format
//! ([`nudge::decision_log::LogRecord`]): reading and replaying them through
//! the one feature path, and writing generated sessions in that format.
//!
//! # Reading
//! - Input: one file, or a folder read by the service's own reader
//!   ([`nudge::decision_log::reader`]): its `*.jsonl` files and those of its
//!   non-hidden subfolders (one per replica when several replicas share a
//!   Redis backend), in path order. Blank lines are skipped; any other line
//!   must be a `LogRecord` with `v = 1`, or the error names the file and line.
//! - Records are grouped by `session_id`. Within a session they are ordered
//!   by `at_ms`, ties keeping file order (a stable sort).
//! - Replay: a fresh `SessionState`; an `events` record replaces the context
//!   when it carries one, then folds its events with `SessionState::apply`
//!   in their logged order; a `decision` record becomes one training row
//!   with `features::compute(&state, decision.at_ms)`, i.e. from exactly the
//!   events records at or before the decision's time that precede it (the
//!   service must write a Decide's events record before its decision
//!   record).
//! - Label: the session's `outcome` record (`converted`); with several, the
//!   last one. Sessions **without an outcome** are skipped and counted
//!   ([`MissingOutcome::Skip`], the default: an unfinished session is not a
//!   negative), or counted as not converted with
//!   [`MissingOutcome::Negative`] (for logs cut well after the sessions
//!   ended).
//! - Skew: the replayed features of every decision are compared with the
//!   logged ones (relative tolerance 1e-9, since a JSON round trip may move
//!   the last bit); a decision with any difference, or a missing feature
//!   name, counts as skewed. For logs the service wrote this must be 0.
//! - Fitting (`nudge-train fit --logs`): the rows go through
//!   [`crate::fit::fit_rows`] like generated sessions; a row's `session`
//!   (the index of its `session_id` in first-seen order) is the unit of
//!   both the held-out split and the cross-validation folds, so the
//!   decisions of one logged session never straddle train / held-out or two
//!   CV folds.

use crate::data::Row;
use anyhow::{bail, Result};
use nudge::decision_log::reader;
use nudge::decision_log::{
    DecisionRecord, EventsRecord, LogRecord, OutcomeRecord, LOG_FORMAT_VERSION,
};
use nudge::domain::features::{self, Features, FEATURES};
use nudge::domain::session::SessionState;
use nudge::sim::synth::GeneratedSession;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod stream;
pub use stream::{
    log_files_and_size, read_rows, stream_sessions, DecisionFacts, LogRows, ReplayedDecision,
    ReplayedSession, Streamed,
};

/// What to do with sessions that have decisions but no outcome record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingOutcome {
    Skip,
    Negative,
}

/// One replayed decision.
#[derive(Clone, Debug)]
pub struct LogRow {
    pub session_id: String,
    pub at_ms: i64,
    pub row: Row,
    /// The features the service logged for this decision.
    pub logged: std::collections::BTreeMap<String, f64>,
}

/// One skewed feature (first few are reported).
#[derive(Clone, Debug, Serialize)]
pub struct Skew {
    pub session_id: String,
    pub at_ms: i64,
    pub feature: String,
    pub logged: Option<f64>,
    pub replayed: f64,
}

/// Counts of a log read.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LogSummary {
    pub files: Vec<String>,
    pub records: usize,
    pub sessions: usize,
    pub decisions: usize,
    pub rows: usize,
    pub sessions_without_outcome: usize,
    pub decisions_without_outcome: usize,
    pub missing_outcome: Option<MissingOutcome>,
    pub duplicate_outcomes: usize,
    pub skewed_decisions: usize,
    pub skew_examples: Vec<Skew>,
}

/// The SHA-256 of the log files' bytes, concatenated in read order (the
/// lineage hash), and the parsed records in that order. The files are those
/// of [`nudge::decision_log::reader::log_files`]: `path` itself, or the
/// `*.jsonl` files of a folder and its non-hidden subfolders (one per
/// replica: copy each replica's `log/` into its own folder).
pub fn read_records(path: &Path) -> Result<(Vec<PathBuf>, String, Vec<LogRecord>)> {
    let files = reader::log_files(path)?;
    if files.is_empty() {
        bail!("{} holds no log files (*.jsonl)", path.display());
    }
    // One file in memory at a time: the digest is streamed, so a week of
    // logs costs its parsed records, not also its raw bytes.
    let mut digest = Sha256::new();
    let mut records = Vec::new();
    for f in &files {
        let bytes = reader::read_file(f)?;
        records.extend(reader::parse_records(f, &bytes)?);
        digest.update(&bytes);
    }
    Ok((files, crate::data::hex(&digest.finalize()), records))
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

const MAX_SKEW_EXAMPLES: usize = 20;

/// Replays records into decision rows (see the module docs). Row `session`
/// indices count sessions in first-seen order.
pub fn replay(records: &[LogRecord], missing: MissingOutcome) -> (Vec<LogRow>, LogSummary) {
    enum Rec<'a> {
        Events(&'a EventsRecord),
        Decision(&'a DecisionRecord),
    }
    struct S<'a> {
        id: &'a str,
        recs: Vec<(i64, Rec<'a>)>,
        outcome: Option<&'a OutcomeRecord>,
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut sessions: Vec<S> = Vec::new();
    let mut summary = LogSummary {
        records: records.len(),
        missing_outcome: Some(missing),
        ..LogSummary::default()
    };
    for r in records {
        let id = match r {
            LogRecord::Events(e) => e.session_id.as_str(),
            LogRecord::Decision(d) => d.session_id.as_str(),
            LogRecord::Outcome(o) => o.session_id.as_str(),
        };
        let k = *index.entry(id).or_insert_with(|| {
            sessions.push(S {
                id,
                recs: Vec::new(),
                outcome: None,
            });
            sessions.len() - 1
        });
        let s = &mut sessions[k];
        match r {
            LogRecord::Events(e) => s.recs.push((e.at_ms, Rec::Events(e))),
            LogRecord::Decision(d) => s.recs.push((d.at_ms, Rec::Decision(d))),
            LogRecord::Outcome(o) => {
                if s.outcome.is_some() {
                    summary.duplicate_outcomes += 1;
                }
                s.outcome = Some(o);
            }
        }
    }
    summary.sessions = sessions.len();
    let mut rows = Vec::new();
    for (si, s) in sessions.iter_mut().enumerate() {
        s.recs.sort_by_key(|(at, _)| *at);
        let n_dec = s
            .recs
            .iter()
            .filter(|(_, r)| matches!(r, Rec::Decision(_)))
            .count();
        summary.decisions += n_dec;
        let converted = match (s.outcome, missing) {
            (Some(o), _) => o.converted,
            (None, MissingOutcome::Negative) => {
                if n_dec > 0 {
                    summary.sessions_without_outcome += 1;
                    summary.decisions_without_outcome += n_dec;
                }
                false
            }
            (None, MissingOutcome::Skip) => {
                if n_dec > 0 {
                    summary.sessions_without_outcome += 1;
                    summary.decisions_without_outcome += n_dec;
                }
                continue;
            }
        };
        let mut state = SessionState::default();
        for (_, r) in &s.recs {
            match r {
                Rec::Events(e) => {
                    if let Some(ctx) = e.context {
                        state.context = ctx;
                    }
                    e.events.iter().for_each(|ev| state.apply(ev));
                }
                Rec::Decision(d) => {
                    let f: Features = features::compute(&state, d.at_ms);
                    let mut skewed = false;
                    for (def, &v) in FEATURES.iter().zip(f.0.iter()) {
                        let logged = d.features.get(def.name).copied();
                        if !logged.is_some_and(|l| close(l, v)) {
                            skewed = true;
                            if summary.skew_examples.len() < MAX_SKEW_EXAMPLES {
                                summary.skew_examples.push(Skew {
                                    session_id: s.id.to_owned(),
                                    at_ms: d.at_ms,
                                    feature: def.name.to_owned(),
                                    logged,
                                    replayed: v,
                                });
                            }
                        }
                    }
                    summary.skewed_decisions += usize::from(skewed);
                    rows.push(LogRow {
                        session_id: s.id.to_owned(),
                        at_ms: d.at_ms,
                        row: Row {
                            session: si,
                            features: f,
                            converted,
                        },
                        logged: d.features.clone(),
                    });
                }
            }
        }
    }
    summary.rows = rows.len();
    (rows, summary)
}

/// Reads and replays logs at `path` (file or directory).
pub fn read(path: &Path, missing: MissingOutcome) -> Result<(Vec<LogRow>, LogSummary, String)> {
    let (files, sha256, records) = read_records(path)?;
    let (rows, mut summary) = replay(&records, missing);
    summary.files = files.iter().map(|f| f.display().to_string()).collect();
    Ok((rows, summary, sha256))
}

/// Writes generated sessions in the log format, one session after the
/// other: per decision point an `events` record with the events since the
/// previous point (at the decision time; the first one carries the
/// context) and a `decision` record whose features come from
/// [`nudge::sim::synth::replay`]; then the remaining events and the outcome.
/// Decision fields the generator does not decide are neutral: model
/// version `"generated"`, probability 0, segment `"unscored"`, no action,
/// propensity 1, reason `"generated"`; the intent value is the session's at
/// the decision.
pub fn generated_to_log(sessions: &[GeneratedSession]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |r: LogRecord| {
        serde_json::to_writer(&mut out, &r).expect("records serialise");
        out.push(b'\n');
    };
    for s in sessions {
        let mut done = 0usize;
        let mut last_at = s.events.first().map_or(0, |e| e.at_ms);
        for (k, dp) in s.decision_points.iter().enumerate() {
            let upto = dp.after_events.min(s.events.len());
            if upto > done || k == 0 {
                push(LogRecord::Events(EventsRecord {
                    v: LOG_FORMAT_VERSION,
                    at_ms: dp.at_ms,
                    session_id: s.session_id.clone(),
                    visitor_id: Some(s.visitor_id.clone()),
                    context: (k == 0).then_some(s.context),
                    events: s.events[done..upto.max(done)].to_vec(),
                }));
                done = upto.max(done);
            }
            let f = nudge::sim::synth::replay(s, dp);
            let state = nudge::sim::synth::state_at(s, dp.after_events);
            push(LogRecord::Decision(DecisionRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: dp.at_ms,
                session_id: s.session_id.clone(),
                visitor_id: Some(s.visitor_id.clone()),
                campaign: "default".into(),
                model_version: "generated".into(),
                features: f.named().map(|(n, v)| (n.to_owned(), v)).collect(),
                client_features: Default::default(),
                client_categorical: Default::default(),
                probability: 0.0,
                segment: "unscored".into(),
                intent_value_cents: state.intent_value_cents(),
                eligible: false,
                policy_tier_cents: 0,
                action_cents: 0,
                propensity: 1.0,
                holdout: false,
                explored: false,
                learning: false,
                lambda: 0.0,
                reason: "generated".into(),
                voucher_code: None,
                last_exit_intent_ms: Some(state.last_exit_intent_ms),
            }));
            last_at = last_at.max(dp.at_ms);
        }
        if done < s.events.len() {
            let at = s.events[done..]
                .iter()
                .map(|e| e.at_ms)
                .max()
                .unwrap_or(last_at)
                .max(last_at);
            push(LogRecord::Events(EventsRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: at,
                session_id: s.session_id.clone(),
                visitor_id: Some(s.visitor_id.clone()),
                context: s.decision_points.is_empty().then_some(s.context),
                events: s.events[done..].to_vec(),
            }));
            last_at = at;
        }
        push(LogRecord::Outcome(OutcomeRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: last_at + 1_000,
            session_id: s.session_id.clone(),
            converted: s.outcome.converted,
            order_value_cents: s.outcome.order_value_cents,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;

    fn records(bytes: &[u8]) -> Vec<LogRecord> {
        std::str::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn generated_logs_replay_to_the_same_rows_without_skew() {
        let sessions = data::parse_jsonl(&data::generate_jsonl(200, 5)).unwrap();
        let log = generated_to_log(&sessions);
        let (rows, summary) = replay(&records(&log), MissingOutcome::Skip);
        assert_eq!(summary.skewed_decisions, 0, "{:?}", summary.skew_examples);
        assert_eq!(summary.sessions, 200);
        let want: usize = sessions.iter().map(|s| s.decision_points.len()).sum();
        assert_eq!(rows.len(), want);
        let mut k = 0;
        for (si, s) in sessions.iter().enumerate() {
            for dp in &s.decision_points {
                assert_eq!(rows[k].row.session, si);
                assert_eq!(rows[k].row.features, nudge::sim::synth::replay(s, dp));
                assert_eq!(rows[k].row.converted, s.outcome.converted);
                k += 1;
            }
        }
    }

    #[test]
    fn logs_of_several_replicas_join_from_their_own_folders() {
        // Replica a decided, replica b recorded the outcomes; both wrote a
        // file of the same name.
        let sessions = data::parse_jsonl(&data::generate_jsonl(40, 9)).unwrap();
        let recs = records(&generated_to_log(&sessions));
        let dir = tempfile::tempdir().unwrap();
        for (sub, outcomes) in [("a", false), ("b", true)] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
            let mut text = String::new();
            for r in &recs {
                if matches!(r, LogRecord::Outcome(_)) == outcomes {
                    text.push_str(&serde_json::to_string(r).unwrap());
                    text.push('\n');
                }
            }
            std::fs::write(
                dir.path().join(sub).join("decisions-2026112210-0001.jsonl"),
                text,
            )
            .unwrap();
        }
        let (files, _, read) = read_records(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        let (rows, summary) = replay(&read, MissingOutcome::Skip);
        let (want, _) = replay(&recs, MissingOutcome::Skip);
        assert_eq!(summary.sessions_without_outcome, 0);
        assert_eq!(rows.len(), want.len());
    }

    #[test]
    fn interleaved_sessions_missing_outcomes_and_skew_are_handled() {
        let sessions = data::parse_jsonl(&data::generate_jsonl(30, 8)).unwrap();
        let mut recs = records(&generated_to_log(&sessions));
        // Interleave: reverse the order of sessions but keep each session's
        // own order (a stable sort by session index descending).
        let ids: Vec<String> = sessions.iter().map(|s| s.session_id.clone()).collect();
        let sid = |r: &LogRecord| match r {
            LogRecord::Events(e) => e.session_id.clone(),
            LogRecord::Decision(d) => d.session_id.clone(),
            LogRecord::Outcome(o) => o.session_id.clone(),
        };
        recs.sort_by_key(|r| std::cmp::Reverse(ids.iter().position(|i| *i == sid(r)).unwrap()));
        let (rows, s) = replay(&recs, MissingOutcome::Skip);
        assert_eq!(s.skewed_decisions, 0);
        let n = rows.len();
        // Drop one session's outcome and tamper with one logged feature.
        let victim = ids[3].clone();
        recs.retain(|r| !(matches!(r, LogRecord::Outcome(_)) && sid(r) == victim));
        let dec = recs
            .iter_mut()
            .find_map(|r| match r {
                LogRecord::Decision(d) if d.session_id != victim => Some(d),
                _ => None,
            })
            .unwrap();
        *dec.features.get_mut("page_views").unwrap() += 1.0;
        let lost = sessions[3].decision_points.len();
        let (rows2, s2) = replay(&recs, MissingOutcome::Skip);
        assert_eq!(rows2.len(), n - lost);
        assert_eq!(s2.sessions_without_outcome, usize::from(lost > 0));
        assert_eq!(s2.skewed_decisions, 1);
        assert_eq!(s2.skew_examples[0].feature, "page_views");
        let (rows3, _) = replay(&recs, MissingOutcome::Negative);
        assert_eq!(rows3.len(), n);
    }
}
