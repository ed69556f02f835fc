//! The report's state, maintained from the decision log instead of
//! re-reading it: per session, only what the report uses (its first
//! eligible decision and whether it was offered a voucher), folded from the
//! bytes appended since the previous pass ([`Tail`]).
//!
//! The report over this state is the report over the whole log
//! ([`super::roi_report`]): the same first-eligible rule (earliest `at_ms`,
//! ties by read order: file path, then position in the file), the same
//! session order, the same arithmetic ([`super::assemble`]).
//!
//! Memory: one compact entry per session with an eligible or offered
//! decision (sessions that were neither cost nothing), at most
//! `max_sessions` of them. Past that, the sessions assigned earliest are
//! dropped and the state covers only sessions assigned from
//! [`SessionFold::floor_ms`] on: reports then start there, close to a
//! report with that `since_ms` over the whole log (not equal: a dropped
//! session that decides again counts from its new decision, and the
//! outcomes of dropped sessions count as `unmatched_outcomes`). Below the
//! cap the two are equal.

use super::{assemble, Assigned, Captured, RoiReport};
use crate::decision_log::reader::{LinePos, ReadError, Tail, TailPass};
use crate::decision_log::LOG_FORMAT_VERSION;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The fields of a log line the report reads; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    v: u32,
    at_ms: Option<i64>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    campaign: Option<Cow<'a, str>>,
    eligible: Option<bool>,
    policy_tier_cents: Option<i64>,
    #[serde(borrow)]
    segment: Option<Cow<'a, str>>,
    holdout: Option<bool>,
    action_cents: Option<i64>,
}

/// A session's first eligible decision.
#[derive(Clone, Copy, Debug)]
struct First {
    at_ms: i64,
    pos: LinePos,
    /// Interned campaign and segment names.
    campaign: u32,
    segment: u32,
    policy_tier_cents: i64,
    holdout: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Facts {
    first: Option<First>,
    /// Time of the earliest offer (0: none).
    offered_ms: Option<i64>,
}

impl Facts {
    /// When the session entered the state (for eviction).
    fn since(&self) -> i64 {
        match (self.first, self.offered_ms) {
            (Some(f), Some(o)) => f.at_ms.min(o),
            (Some(f), None) => f.at_ms,
            (None, Some(o)) => o,
            (None, None) => i64::MIN,
        }
    }
}

/// The report's per-session state and where the log was read up to.
#[derive(Debug)]
pub struct SessionFold {
    tail: Tail,
    state: State,
}

#[derive(Debug)]
struct State {
    sessions: BTreeMap<Box<str>, Facts>,
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    /// Paths of the files lines came from (for ties in `at_ms`).
    paths: HashMap<u32, std::path::PathBuf>,
    max_sessions: usize,
    floor_ms: i64,
}

impl State {
    fn new(max_sessions: usize) -> Self {
        State {
            sessions: BTreeMap::new(),
            names: Vec::new(),
            name_ids: HashMap::new(),
            paths: HashMap::new(),
            max_sessions: max_sessions.max(1),
            floor_ms: i64::MIN,
        }
    }
}

impl SessionFold {
    /// An empty state keeping at most `max_sessions` sessions (at least 1).
    pub fn new(max_sessions: usize) -> Self {
        SessionFold {
            tail: Tail::default(),
            state: State::new(max_sessions),
        }
    }

    /// Sessions kept.
    pub fn sessions(&self) -> usize {
        self.state.sessions.len()
    }

    /// Log bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.tail.bytes_read()
    }

    /// Sessions assigned before this are no longer kept (`i64::MIN`: none
    /// was dropped).
    pub fn floor_ms(&self) -> i64 {
        self.state.floor_ms
    }

    /// Folds what was appended to the log under `dir` since the last pass.
    /// A file that shrank makes the state start over from the whole log; a
    /// file deleted by retention leaves its sessions counted. On error the
    /// state is emptied (the next pass starts over).
    pub fn pass(&mut self, dir: &Path) -> Result<TailPass, ReadError> {
        let max = self.state.max_sessions;
        let state = &mut self.state;
        let mut done = self
            .tail
            .pass(dir, |p, n, pos, text| state.fold_line(p, n, pos, text));
        if let Ok(None) = done {
            *self = SessionFold::new(max);
            let state = &mut self.state;
            done = self
                .tail
                .pass(dir, |p, n, pos, text| state.fold_line(p, n, pos, text));
        }
        match done {
            Ok(done) => {
                self.state.evict();
                Ok(done.unwrap_or_default())
            }
            Err(e) => {
                *self = SessionFold::new(max);
                Err(e)
            }
        }
    }
}

impl State {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.name_ids.get(name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.name_ids.insert(name.into(), id);
        id
    }

    fn fold_line(
        &mut self,
        path: &Path,
        line_no: usize,
        pos: LinePos,
        text: &str,
    ) -> Result<(), ReadError> {
        // The cap holds during a pass too (the first pass after a start
        // reads the whole log), with a fifth of slack so that eviction's
        // cost spreads over many lines.
        if self.sessions.len() > self.max_sessions.saturating_add(self.max_sessions / 5) {
            self.evict();
        }
        // The report reads decisions only: the writer puts the tag first,
        // so the other records (a quarter of the bytes) are not parsed.
        if text.starts_with(r#"{"type":"events","#) || text.starts_with(r#"{"type":"outcome","#) {
            return Ok(());
        }
        let bad = |msg: &str| ReadError::Parse {
            path: path.to_owned(),
            line: line_no,
            source: <serde_json::Error as serde::de::Error>::custom(msg),
        };
        let l: Line = serde_json::from_str(text).map_err(|source| ReadError::Parse {
            path: path.to_owned(),
            line: line_no,
            source,
        })?;
        if l.v != LOG_FORMAT_VERSION {
            return Err(ReadError::Version {
                path: path.to_owned(),
                line: line_no,
                found: l.v,
            });
        }
        match l.kind.as_ref() {
            "events" | "outcome" => return Ok(()),
            "decision" => {}
            other => return Err(bad(&format!("unknown record type {other:?}"))),
        }
        let (
            Some(at_ms),
            Some(session_id),
            Some(campaign),
            Some(eligible),
            Some(tier),
            Some(segment),
            Some(holdout),
            Some(action_cents),
        ) = (
            l.at_ms,
            l.session_id,
            l.campaign,
            l.eligible,
            l.policy_tier_cents,
            l.segment,
            l.holdout,
            l.action_cents,
        )
        else {
            return Err(bad("a decision record lacks a field the report reads"));
        };
        if at_ms < self.floor_ms || !(eligible || action_cents > 0) {
            return Ok(());
        }
        let first = if eligible {
            Some(First {
                at_ms,
                pos,
                campaign: self.intern(&campaign),
                segment: self.intern(&segment),
                policy_tier_cents: tier,
                holdout,
            })
        } else {
            None
        };
        self.paths
            .entry(pos.file)
            .or_insert_with(|| path.to_owned());
        let facts = match self.sessions.get_mut(session_id.as_ref()) {
            Some(f) => f,
            None => self.sessions.entry(session_id.as_ref().into()).or_default(),
        };
        if action_cents > 0 {
            facts.offered_ms = Some(facts.offered_ms.map_or(at_ms, |o| o.min(at_ms)));
        }
        if let Some(new) = first {
            let earlier = match &facts.first {
                None => true,
                Some(prev) => {
                    new.at_ms < prev.at_ms
                        || (new.at_ms == prev.at_ms
                            && (path, new.pos.offset)
                                < (self.paths[&prev.pos.file].as_path(), prev.pos.offset))
                }
            };
            if earlier {
                facts.first = Some(new);
            }
        }
        Ok(())
    }

    /// Keeps at most `max_sessions`: drops the earliest-assigned tenth
    /// beyond it and raises the floor past them.
    fn evict(&mut self) {
        if self.sessions.len() <= self.max_sessions {
            return;
        }
        let keep = self.max_sessions - self.max_sessions / 10;
        let mut times: Vec<i64> = self.sessions.values().map(Facts::since).collect();
        let k = times.len() - keep.max(1);
        let (_, cutoff, _) = times.select_nth_unstable(k - 1);
        let cutoff = *cutoff;
        self.sessions.retain(|_, f| f.since() > cutoff);
        self.floor_ms = self.floor_ms.max(cutoff.saturating_add(1));
        tracing::warn!(
            max_sessions = self.max_sessions,
            floor_ms = self.floor_ms,
            "report state full, earliest sessions dropped"
        );
    }
}

impl SessionFold {
    /// The report over the state, the ledger's latest outcome per session
    /// (converted, order value) and its captures. Sessions assigned before
    /// the floor are gone: the report then starts at the floor.
    pub fn report(
        &self,
        latest: &std::collections::HashMap<&str, (bool, i64)>,
        captured: &[Captured],
        margin_rate: f64,
        since_ms: Option<i64>,
    ) -> RoiReport {
        let st = &self.state;
        let since_ms = if st.floor_ms > since_ms.unwrap_or(i64::MIN) {
            Some(st.floor_ms)
        } else {
            since_ms
        };
        let sessions = st.sessions.iter().filter_map(|(id, f)| {
            let first = f.first?;
            Some(Assigned {
                session_id: id,
                campaign: &st.names[first.campaign as usize],
                policy_tier_cents: first.policy_tier_cents,
                segment: &st.names[first.segment as usize],
                holdout: first.holdout,
                at_ms: first.at_ms,
                offered: f.offered_ms.is_some(),
            })
        });
        // Outcomes of sessions the state does not hold (no eligible or
        // offered decision, or dropped past the session cap).
        let unmatched = latest
            .keys()
            .filter(|s| !st.sessions.contains_key(**s))
            .count() as u64;
        assemble(
            sessions,
            |s| latest.get(s).copied(),
            captured,
            margin_rate,
            since_ms,
            unmatched,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::{DecisionRecord, LogRecord, OutcomeRecord};
    use crate::report::{latest_outcomes, roi_report, ReportInput};
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap as Map;

    /// A log of several replicas' folders and files, with ties in `at_ms`,
    /// decisions of one session in several files, offers, outcomes and
    /// captures.
    struct Generated {
        /// File (relative path) -> its lines.
        files: Map<String, Vec<String>>,
        outcomes: Vec<OutcomeRecord>,
        captured: Vec<Captured>,
    }

    fn generate(seed: u64, sessions: usize) -> Generated {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let names = [
            "replica-a/decisions-20260101T00-0001.jsonl",
            "replica-a/decisions-20260101T01-0002.jsonl",
            "replica-b/decisions-20260101T00-0001.jsonl",
            "decisions-20260101T00-0001.jsonl",
        ];
        let mut files: Map<String, Vec<String>> = Map::new();
        let (mut outcomes, mut captured) = (Vec::new(), Vec::new());
        for i in 0..sessions {
            let session_id = format!("s{}", rng.random_range(0..sessions));
            for _ in 0..rng.random_range(1..4) {
                let eligible = rng.random_bool(0.7);
                let holdout = rng.random_bool(0.3);
                let action_cents = if !holdout && rng.random_bool(0.5) {
                    [500, 1000][rng.random_range(0..2)]
                } else {
                    0
                };
                let d = DecisionRecord {
                    v: LOG_FORMAT_VERSION,
                    at_ms: rng.random_range(0..40),
                    session_id: session_id.clone(),
                    visitor_id: None,
                    campaign: ["a", "b"][rng.random_range(0..2)].into(),
                    model_version: "m".into(),
                    features: [("x".to_owned(), rng.random::<f64>())].into(),
                    client_features: Map::new(),
                    client_categorical: Map::new(),
                    probability: 0.3,
                    segment: ["hesitant", "cold"][rng.random_range(0..2)].into(),
                    intent_value_cents: 20_000,
                    eligible,
                    policy_tier_cents: [0, 500, 1000][rng.random_range(0..3)],
                    action_cents,
                    propensity: 1.0,
                    holdout,
                    explored: false,
                    learning: false,
                    lambda: 0.0,
                    reason: "offered".into(),
                    voucher_code: None,
                    last_exit_intent_ms: None,
                };
                if action_cents > 0 && rng.random_bool(0.5) {
                    captured.push(Captured {
                        campaign: d.campaign.clone(),
                        session_id: session_id.clone(),
                        amount_cents: action_cents,
                        learning: rng.random_bool(0.2),
                    });
                }
                let file = names[rng.random_range(0..names.len())];
                let line = serde_json::to_string(&LogRecord::Decision(d)).unwrap();
                files.entry(file.into()).or_default().push(line);
            }
            if rng.random_bool(0.6) {
                let o = OutcomeRecord {
                    v: LOG_FORMAT_VERSION,
                    at_ms: rng.random_range(0..60),
                    session_id: session_id.clone(),
                    converted: rng.random_bool(0.5),
                    order_value_cents: rng.random_range(1..30_000),
                };
                let line = serde_json::to_string(&LogRecord::Outcome(o.clone())).unwrap();
                files
                    .entry(names[i % names.len()].into())
                    .or_default()
                    .push(line);
                outcomes.push(o);
            }
        }
        Generated {
            files,
            outcomes,
            captured,
        }
    }

    fn full_read(dir: &Path, g: &Generated, since_ms: Option<i64>) -> RoiReport {
        let decisions: Vec<DecisionRecord> = crate::decision_log::reader::read_dir(dir)
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Decision(d) => Some(d),
                _ => None,
            })
            .collect();
        roi_report(&ReportInput {
            decisions: &decisions,
            outcomes: &g.outcomes,
            captured: &g.captured,
            margin_rate: 0.3,
            since_ms,
        })
    }

    fn maintained(fold: &SessionFold, g: &Generated, since_ms: Option<i64>) -> RoiReport {
        let latest = latest_outcomes(g.outcomes.iter().map(|o| {
            (
                o.session_id.as_str(),
                o.at_ms,
                o.converted,
                o.order_value_cents,
            )
        }));
        fold.report(&latest, &g.captured, 0.3, since_ms)
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Written in two parts (one cut mid-line), folded after each: the
        /// maintained report is the full read's, for every window.
        #[test]
        fn maintained_report_equals_the_full_read(seed in any::<u64>(), sessions in 1usize..120, cut in 0.0f64..1.0) {
            let g = generate(seed, sessions);
            let dir = tempfile::tempdir().unwrap();
            let mut fold = SessionFold::new(1_000_000);
            let texts: Vec<(std::path::PathBuf, String)> = g
                .files
                .iter()
                .map(|(f, lines)| (dir.path().join(f), lines.join("\n") + "\n"))
                .collect();
            for (path, text) in &texts {
                let mut at = (text.len() as f64 * cut) as usize;
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                append(path, &text[..at]);
            }
            fold.pass(dir.path()).unwrap();
            for (path, text) in &texts {
                let at = std::fs::metadata(path).unwrap().len() as usize;
                append(path, &text[at..]);
            }
            let second = fold.pass(dir.path()).unwrap();
            let total: u64 = texts.iter().map(|(_, t)| t.len() as u64).sum();
            prop_assert_eq!(fold.bytes_read(), total);
            prop_assert!(second.bytes <= total);
            for since in [None, Some(0), Some(13), Some(39), Some(40)] {
                prop_assert_eq!(maintained(&fold, &g, since), full_read(dir.path(), &g, since));
            }
        }
    }

    #[test]
    fn a_pass_reads_only_the_bytes_appended_since_the_last() {
        let g = generate(7, 200);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions-20260101T00-0001.jsonl");
        let lines: Vec<&String> = g.files.values().flatten().collect();
        let (head, rest) = lines.split_at(lines.len() / 2);
        let text = |ls: &[&String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        append(&path, &text(head));
        let mut fold = SessionFold::new(1_000_000);
        let first = fold.pass(dir.path()).unwrap();
        assert_eq!(first.bytes, text(head).len() as u64);
        assert_eq!(
            fold.pass(dir.path()).unwrap(),
            TailPass::default(),
            "nothing new"
        );

        // Half a line is left for the next pass.
        let tail = text(rest);
        let (a, b) = tail.split_at(tail.len() - 5);
        append(&path, a);
        let rotated = dir.path().join("decisions-20260101T01-0002.jsonl");
        append(&rotated, &text(head[..3].as_ref()));
        let second = fold.pass(dir.path()).unwrap();
        let whole_lines = a.rfind('\n').unwrap() as u64 + 1;
        assert_eq!(second.bytes, whole_lines + text(&head[..3]).len() as u64);
        append(&path, b);
        let third = fold.pass(dir.path()).unwrap();
        assert_eq!(third.bytes, (tail.len() as u64) - whole_lines);
        assert_eq!(maintained(&fold, &g, None), full_read(dir.path(), &g, None));
    }

    #[test]
    fn a_rewritten_file_starts_the_state_over_and_a_deleted_one_stays_counted() {
        let g = generate(3, 100);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions-20260101T00-0001.jsonl");
        let lines: Vec<&String> = g.files.values().flatten().collect();
        let text = |ls: &[&String]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();
        append(&path, &text(&lines));
        let mut fold = SessionFold::new(1_000_000);
        fold.pass(dir.path()).unwrap();
        std::fs::write(&path, text(&lines[..lines.len() / 3])).unwrap();
        fold.pass(dir.path()).unwrap();
        assert_eq!(maintained(&fold, &g, None), full_read(dir.path(), &g, None));
        // Log retention deletes an old file: its sessions stay in the
        // report, and the pass does not start over from the rest.
        let kept = fold.sessions();
        assert!(kept > 0);
        std::fs::remove_file(&path).unwrap();
        let after = fold.pass(dir.path()).unwrap();
        assert_eq!(after.bytes, 0);
        assert_eq!(fold.sessions(), kept);
    }

    #[test]
    fn a_bad_line_names_file_and_line_and_the_next_pass_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions-20260101T00-0001.jsonl");
        let g = generate(5, 20);
        let good: String = g
            .files
            .values()
            .flatten()
            .map(|l| format!("{l}\n"))
            .collect();
        append(&path, &good);
        append(&path, "{\"type\":\"decision\",\"v\":1}\n");
        let mut fold = SessionFold::new(1_000_000);
        let e = fold.pass(dir.path()).unwrap_err().to_string();
        assert!(e.contains("decisions-20260101T00-0001.jsonl line"), "{e}");
        assert_eq!((fold.sessions(), fold.bytes_read()), (0, 0));
        std::fs::write(&path, &good).unwrap();
        fold.pass(dir.path()).unwrap();
        assert_eq!(maintained(&fold, &g, None), full_read(dir.path(), &g, None));
    }

    #[test]
    fn past_max_sessions_the_earliest_are_dropped_and_reports_start_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = String::new();
        for i in 0..100i64 {
            let d = generate(i as u64, 1)
                .files
                .into_values()
                .flatten()
                .next()
                .unwrap();
            let mut d: serde_json::Value = serde_json::from_str(&d).unwrap();
            d["session_id"] = format!("s{i:03}").into();
            d["at_ms"] = (i * 10).into();
            d["eligible"] = true.into();
            lines += &format!("{d}\n");
        }
        append(&dir.path().join("decisions-20260101T00-0001.jsonl"), &lines);
        let mut fold = SessionFold::new(50);
        fold.pass(dir.path()).unwrap();
        assert!(fold.sessions() <= 50, "{}", fold.sessions());
        let floor = fold.floor_ms();
        assert!(floor > 0 && floor <= 1000, "{floor}");
        let g = Generated {
            files: Map::new(),
            outcomes: Vec::new(),
            captured: Vec::new(),
        };
        let r = maintained(&fold, &g, None);
        assert_eq!(r.since_ms, Some(floor));
        assert_eq!(r, full_read(dir.path(), &g, Some(floor)));
    }

    fn rss_bytes() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// Memory per kept session: resident growth over 200,000 sessions with
    /// ids of 26 bytes. A measurement, run by hand:
    /// `cargo test --lib report::sessions -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement"]
    fn memory_per_session() {
        const N: usize = 200_000;
        let template: serde_json::Value =
            serde_json::from_str(&generate(1, 1).files.into_values().flatten().next().unwrap())
                .unwrap();
        let lines: Vec<String> = (0..N)
            .map(|i| {
                let mut d = template.clone();
                d["session_id"] = format!("session-{i:012}-abcdef").into();
                d["at_ms"] = (i as i64).into();
                d["eligible"] = true.into();
                d["action_cents"] = 500.into();
                d.to_string()
            })
            .collect();
        let mut fold = SessionFold::new(1_000_000);
        let path = Path::new("decisions.jsonl");
        let before = rss_bytes();
        for (i, l) in lines.iter().enumerate() {
            let pos = LinePos {
                file: 0,
                offset: i as u64 * 500,
            };
            fold.state.fold_line(path, i + 1, pos, l).unwrap();
        }
        let after = rss_bytes();
        assert_eq!(fold.sessions(), N);
        println!(
            "report state: {N} sessions, resident growth {:.0} bytes/session (size_of entry {} + key)",
            after.saturating_sub(before) as f64 / N as f64,
            std::mem::size_of::<Facts>() + std::mem::size_of::<Box<str>>()
        );
    }
}
