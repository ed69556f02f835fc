//! Streaming: rows from a folder of any size in memory bounded by the
//! sessions open at a time, not by the folder.

use super::{close, LogSummary, MissingOutcome, Skew, MAX_SKEW_EXAMPLES};
use crate::data::Row;
use anyhow::{bail, Result};
use nudge::decision_log::reader;
use nudge::domain::features::{self, Features, FEATURES};
use nudge::domain::session::SessionState;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// What every record has: enough for the first pass (the join keys).
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    v: u32,
    #[serde(borrow)]
    session_id: std::borrow::Cow<'a, str>,
    #[serde(default)]
    converted: bool,
    #[serde(default)]
    order_value_cents: i64,
    #[serde(default)]
    at_ms: i64,
}

#[derive(serde::Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Events,
    Decision,
    Outcome,
}

/// What the replay needs of a record: one flat struct rather than the
/// tagged [`LogRecord`] (serde buffers an internally tagged enum into an
/// intermediate tree before reading it, which for a decision's feature map
/// costs more than the parse itself), with the logged features read
/// straight into [`FEATURES`] order.
#[derive(serde::Deserialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: Kind,
    v: u32,
    at_ms: i64,
    #[serde(borrow)]
    session_id: std::borrow::Cow<'a, str>,
    #[serde(default)]
    context: Option<nudge::domain::session::Context>,
    #[serde(default)]
    events: Vec<nudge::domain::session::Event>,
    #[serde(default, deserialize_with = "logged_features")]
    features: Option<Box<Logged>>,
    // A decision's own fields (see [`DecisionFacts`]).
    #[serde(default)]
    probability: f64,
    #[serde(default)]
    intent_value_cents: i64,
    #[serde(default)]
    eligible: bool,
    #[serde(default)]
    action_cents: i64,
    #[serde(default)]
    holdout: bool,
    #[serde(default)]
    explored: bool,
    #[serde(default)]
    reason: String,
}

/// Logged feature values in [`FEATURES`] order; NaN = not logged (JSON has
/// no NaN, so a logged value is never NaN).
type Logged = [f64; features::N_FEATURES];

fn logged_features<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Box<Logged>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Box<Logged>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of feature names to numbers")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Box::new([f64::NAN; features::N_FEATURES]);
            while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                let v: f64 = m.next_value()?;
                // Names this build does not know are not compared (as
                // `replay` does).
                if let Some(j) = features::index_of(&k) {
                    out[j] = v;
                }
            }
            Ok(Some(out))
        }
    }
    d.deserialize_map(V)
}

/// The first pass's knowledge of one session.
struct Known {
    /// Events and decision records of the session not yet seen by the
    /// second pass (outcomes are known from the first).
    remaining: u32,
    decisions: u32,
    /// The last outcome record's label and order value.
    outcome: Option<(bool, i64)>,
}

/// One buffered record of an open session.
enum Pending {
    Events {
        context: Option<nudge::domain::session::Context>,
        events: Vec<nudge::domain::session::Event>,
    },
    Decision(Box<Logged>, DecisionFacts),
}

/// What the uplift reads of a logged decision besides its features.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecisionFacts {
    pub probability: f64,
    pub intent_value_cents: i64,
    pub eligible: bool,
    pub action_cents: i64,
    pub holdout: bool,
    pub explored: bool,
    pub reason: String,
}

impl From<&nudge::decision_log::DecisionRecord> for DecisionFacts {
    fn from(d: &nudge::decision_log::DecisionRecord) -> Self {
        DecisionFacts {
            probability: d.probability,
            intent_value_cents: d.intent_value_cents,
            eligible: d.eligible,
            action_cents: d.action_cents,
            holdout: d.holdout,
            explored: d.explored,
            reason: d.reason.clone(),
        }
    }
}

/// One replayed decision of a [`ReplayedSession`].
#[derive(Clone, Debug)]
pub struct ReplayedDecision {
    pub at_ms: i64,
    /// The features replayed from the session's events.
    pub features: Features,
    pub facts: DecisionFacts,
}

/// One finished, labelled session as [`stream_sessions`] hands it over.
#[derive(Debug)]
pub struct ReplayedSession<'a> {
    /// Index of the session in first-seen order (as a row's `session`).
    pub session: usize,
    pub session_id: &'a str,
    pub converted: bool,
    /// The last outcome record's order value; 0 without one.
    pub order_value_cents: i64,
    /// Its decisions in time order (ties in read order).
    pub decisions: &'a [ReplayedDecision],
}

/// What [`stream_sessions`] learnt besides the sessions it handed over.
#[derive(Debug)]
pub struct Streamed {
    /// Sessions seen (`ReplayedSession::session` indexes `0..sessions`).
    pub sessions: usize,
    pub summary: LogSummary,
    /// SHA-256 of the files' bytes in read order (as [`super::read_records`]).
    pub sha256: String,
    /// The earliest and latest decision time of all decision records,
    /// labelled or not (`i64::MAX`, `i64::MIN` without any).
    pub decisions_span_ms: (i64, i64),
}

/// Training rows read from logs by [`read_rows`]: `rows` in the order of
/// [`replay`] (sessions in first-seen order, a session's decisions in time
/// order), so a fit on them equals a fit on [`read`]'s rows.
#[derive(Debug)]
pub struct LogRows {
    pub rows: Vec<Row>,
    /// Sessions seen (row `session` indexes `0..sessions`).
    pub sessions: usize,
    pub summary: LogSummary,
    /// SHA-256 of the files' bytes in read order (as [`read_records`]).
    pub sha256: String,
}

/// The log folder's files in reading order and their total size (for the
/// progress bars); an error when there is none.
pub fn log_files_and_size(path: &Path) -> Result<(Vec<std::path::PathBuf>, u64)> {
    let files = reader::log_files(path)?;
    if files.is_empty() {
        bail!("{} holds no log files (*.jsonl)", path.display());
    }
    let total = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    Ok((files, total))
}

/// Reads and replays logs at `path` (file or folder) into training rows
/// with the semantics of [`super::read`], by [`stream_sessions`]: memory is
/// the rows, the join keys and the sessions open at a time.
pub fn read_rows(path: &Path, missing: MissingOutcome) -> Result<LogRows> {
    let mut rows: Vec<Row> = Vec::new();
    let s = stream_sessions(path, missing, |s| {
        rows.extend(s.decisions.iter().map(|d| Row {
            session: s.session,
            features: d.features,
            converted: s.converted,
        }));
    })?;
    // Sessions in first-seen order, each one's rows already in time order.
    rows.sort_by_key(|r| r.session);
    Ok(LogRows {
        rows,
        sessions: s.sessions,
        summary: s.summary,
        sha256: s.sha256,
    })
}

/// Reads and replays logs at `path` (file or folder) with the semantics of
/// [`super::replay`], in two streaming passes over the files (one line in
/// memory at a time), and hands each labelled session with a decision to
/// `sink` once all its records are read, in the order sessions finish:
///
/// 1. The join keys: per session its number of records, of decisions and
///    its outcome (a few dozen bytes per session), and the lineage hash.
/// 2. The sessions: a session's events and decision records are buffered
///    (the decision's logged features as numbers, not strings) until the
///    last of them counted in pass 1 has been read; then they are ordered
///    by time, replayed, compared with the logged features, handed over
///    and dropped. The outcome is not waited for: pass 1 has its label and
///    order value, and the service writes it when the shop reports the
///    order, often long after the session's last decision (at the end of a
///    simulated day, all of them), so waiting would hold every session.
///    Sessions with no decision, or skipped for a missing outcome, are
///    never buffered.
///
/// Memory is the sessions open at a time in read order, the keys and what
/// `sink` keeps. For one service's folder a session's records lie within
/// its idle time-to-live, so few are open at once. Replica folders read one
/// after the other keep the sessions that span replicas open until the
/// later folder: still correct, at the cost of buffering them.
///
/// The second pass reads each file only up to the length the first saw, so
/// a folder the service is still writing gives consistent counts.
pub fn stream_sessions(
    path: &Path,
    missing: MissingOutcome,
    mut sink: impl FnMut(&ReplayedSession<'_>),
) -> Result<Streamed> {
    let (files, total) = log_files_and_size(path)?;

    // Pass 1: join keys and hash.
    let mut digest = Sha256::new();
    let mut index: HashMap<Box<str>, u32> = HashMap::new();
    let mut known: Vec<Known> = Vec::new();
    let mut summary = LogSummary {
        missing_outcome: Some(missing),
        ..LogSummary::default()
    };
    let mut span = (i64::MAX, i64::MIN);
    let bar = crate::progress::bytes(total, "scan");
    let seen = std::cell::Cell::new(0u64);
    let lengths = reader::each_line(
        &files,
        None,
        |b| {
            digest.update(b);
            seen.set(seen.get() + b.len() as u64);
        },
        |line| {
            let h: Head = reader::parse_line(line, |h: &Head| h.v)?;
            summary.records += 1;
            let k = match index.get(h.session_id.as_ref()) {
                Some(&k) => k as usize,
                None => {
                    index.insert(h.session_id.as_ref().into(), known.len() as u32);
                    known.push(Known {
                        remaining: 0,
                        decisions: 0,
                        outcome: None,
                    });
                    known.len() - 1
                }
            };
            let s = &mut known[k];
            s.remaining += u32::from(h.kind != Kind::Outcome);
            match h.kind {
                Kind::Decision => {
                    s.decisions += 1;
                    span = (span.0.min(h.at_ms), span.1.max(h.at_ms));
                }
                Kind::Outcome => {
                    if s.outcome.is_some() {
                        summary.duplicate_outcomes += 1;
                    }
                    s.outcome = Some((h.converted, h.order_value_cents));
                }
                Kind::Events => {}
            }
            if summary.records.is_multiple_of(4096) {
                bar.set_position(seen.get());
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    summary.sessions = known.len();
    summary.files = files.iter().map(|f| f.display().to_string()).collect();

    // Which sessions are replayed, with their label and order value.
    let mut label: Vec<Option<(bool, i64)>> = Vec::with_capacity(known.len());
    for s in &known {
        summary.decisions += s.decisions as usize;
        let l = match (s.outcome, missing) {
            (Some(o), _) => Some(o),
            (None, m) => {
                if s.decisions > 0 {
                    summary.sessions_without_outcome += 1;
                    summary.decisions_without_outcome += s.decisions as usize;
                }
                (m == MissingOutcome::Negative).then_some((false, 0))
            }
        };
        label.push(if s.decisions > 0 { l } else { None });
    }

    // Pass 2: sessions.
    let bar = crate::progress::bytes(lengths.iter().sum(), "replay");
    let mut open: HashMap<u32, Vec<(i64, Pending)>> = HashMap::new();
    let mut examples: Vec<(usize, Skew)> = Vec::new();
    let seen = std::cell::Cell::new(0u64);
    let mut lines = 0usize;
    let mut finish = |ki: usize, id: &str, recs, summary: &mut LogSummary| {
        let (converted, order_value_cents) =
            label[ki].expect("only labelled sessions are buffered");
        let decisions = replay_session(ki, id, recs, summary, &mut examples);
        summary.rows += decisions.len();
        sink(&ReplayedSession {
            session: ki,
            session_id: id,
            converted,
            order_value_cents,
            decisions: &decisions,
        });
    };
    reader::each_line(
        &files,
        Some(&lengths),
        |b| seen.set(seen.get() + b.len() as u64),
        |line| {
            lines += 1;
            if lines.is_multiple_of(4096) {
                bar.set_position(seen.get());
                bar.set_message(crate::progress::rate(summary.rows, &bar));
            }
            let b: Body = reader::parse_line(line, |b: &Body| b.v)?;
            let Some(&k) = index.get(b.session_id.as_ref()) else {
                return Ok(());
            };
            // The label and order value came from the first pass.
            if b.kind == Kind::Outcome {
                return Ok(());
            }
            let ki = k as usize;
            let s = &mut known[ki];
            s.remaining = s.remaining.saturating_sub(1);
            let done = s.remaining == 0;
            // Sessions that are not replayed need only their count.
            if label[ki].is_none() {
                return Ok(());
            }
            let p = match b.kind {
                Kind::Events => Pending::Events {
                    context: b.context,
                    events: b.events,
                },
                Kind::Decision => Pending::Decision(
                    b.features
                        .unwrap_or_else(|| Box::new([f64::NAN; features::N_FEATURES])),
                    DecisionFacts {
                        probability: b.probability,
                        intent_value_cents: b.intent_value_cents,
                        eligible: b.eligible,
                        action_cents: b.action_cents,
                        holdout: b.holdout,
                        explored: b.explored,
                        reason: b.reason,
                    },
                ),
                Kind::Outcome => return Ok(()),
            };
            open.entry(k).or_default().push((b.at_ms, p));
            if done {
                let recs = open.remove(&k).unwrap_or_default();
                finish(ki, &b.session_id, recs, &mut summary);
            }
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    // Sessions whose last counted record never came (a file shrank between
    // the passes) are replayed with what was read.
    let mut rest: Vec<(u32, Vec<(i64, Pending)>)> = open.into_iter().collect();
    rest.sort_by_key(|(k, _)| *k);
    if !rest.is_empty() {
        let ids: HashMap<u32, &str> = index.iter().map(|(id, k)| (*k, &**id)).collect();
        for (k, recs) in rest {
            finish(k as usize, ids[&k], recs, &mut summary);
        }
    }
    examples.sort_by_key(|(k, _)| *k);
    summary.skew_examples = examples.into_iter().map(|(_, s)| s).collect();
    summary.skew_examples.truncate(MAX_SKEW_EXAMPLES);
    Ok(Streamed {
        sessions: known.len(),
        summary,
        sha256: crate::data::hex(&digest.finalize()),
        decisions_span_ms: span,
    })
}

/// Replays one finished session's buffered records (the rules of
/// [`super::replay`]) into its decisions in time order.
fn replay_session(
    si: usize,
    id: &str,
    mut recs: Vec<(i64, Pending)>,
    summary: &mut LogSummary,
    examples: &mut Vec<(usize, Skew)>,
) -> Vec<ReplayedDecision> {
    recs.sort_by_key(|(at, _)| *at);
    let mut state = SessionState::default();
    let mut own_examples = 0usize;
    let mut out = Vec::new();
    for (at_ms, r) in recs {
        match r {
            Pending::Events { context, events } => {
                if let Some(ctx) = context {
                    state.context = ctx;
                }
                events.iter().for_each(|ev| state.apply(ev));
            }
            Pending::Decision(logged, facts) => {
                let f: Features = features::compute(&state, at_ms);
                let mut skewed = false;
                for ((def, &v), &l) in FEATURES.iter().zip(f.0.iter()).zip(logged.iter()) {
                    let logged = (!l.is_nan()).then_some(l);
                    if !logged.is_some_and(|l| close(l, v)) {
                        skewed = true;
                        // Only the first sessions' examples are kept: at
                        // most MAX_SKEW_EXAMPLES per session suffice.
                        if own_examples < MAX_SKEW_EXAMPLES {
                            own_examples += 1;
                            examples.push((
                                si,
                                Skew {
                                    session_id: id.to_owned(),
                                    at_ms,
                                    feature: def.name.to_owned(),
                                    logged,
                                    replayed: v,
                                },
                            ));
                        }
                    }
                }
                summary.skewed_decisions += usize::from(skewed);
                out.push(ReplayedDecision {
                    at_ms,
                    features: f,
                    facts,
                });
            }
        }
    }
    // Keep the examples of the earliest sessions only.
    if examples.len() > 4 * MAX_SKEW_EXAMPLES {
        examples.sort_by_key(|(k, _)| *k);
        examples.truncate(MAX_SKEW_EXAMPLES);
    }
    out
}
