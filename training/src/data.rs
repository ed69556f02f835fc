//! Training data: generated sessions as JSON lines, and the decision-moment
//! rows replayed from them through the one feature path
//! ([`nudge::sim::synth::replay`] = `SessionState::apply` + `features::compute`).

use anyhow::{Context as _, Result};
use nudge::domain::features::{Features, F};
use nudge::sim::synth::{GeneratedSession, Generator, GeneratorConfig, ResponseWorld};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// Intent value (EUR) above which a decision moment counts as "high value"
/// in the reports (the 99 EUR line of the voucher rule).
pub const HIGH_VALUE_EUR: f64 = 99.0;

/// One decision moment.
#[derive(Clone, Debug)]
pub struct Row {
    /// Index of the session in the data set.
    pub session: usize,
    pub features: Features,
    pub converted: bool,
}

impl Row {
    pub fn high_value(&self) -> bool {
        self.features.get(F::intent_value_eur) >= HIGH_VALUE_EUR
    }
}

/// Generates `n` sessions with `seed` in the calibrated world and serialises
/// them as JSON lines, byte-identical to `nudge-train generate`.
pub fn generate_jsonl(n: usize, seed: u64) -> Vec<u8> {
    generate_world_jsonl(n, seed, ResponseWorld::Calibrated)
}

/// [`generate_jsonl`] in another response world (`nudge-train generate
/// --world`).
pub fn generate_world_jsonl(n: usize, seed: u64, world: ResponseWorld) -> Vec<u8> {
    let gen = Generator::new(GeneratorConfig {
        seed,
        world,
        ..GeneratorConfig::default()
    });
    to_jsonl(gen.take(n))
}

/// One JSON object per line, `\n` after each.
pub fn to_jsonl(sessions: impl IntoIterator<Item = GeneratedSession>) -> Vec<u8> {
    let mut out = Vec::new();
    for s in sessions {
        serde_json::to_writer(&mut out, &s).expect("sessions serialise");
        out.push(b'\n');
    }
    out
}

/// Parses JSON lines (blank lines are skipped). A CSV file is refused with
/// a message saying so (see [`csv_hint`]) rather than JSON's "expected
/// value at line 1 column 1".
pub fn parse_jsonl(bytes: &[u8]) -> Result<Vec<GeneratedSession>> {
    if let Some(hint) = csv_hint(bytes) {
        anyhow::bail!("{hint}");
    }
    let text = std::str::from_utf8(bytes).context("data is not UTF-8")?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}", i + 1)))
        .collect()
}

/// `Some(message)` when `bytes` look like a CSV file rather than JSON
/// lines: the first non-blank line is not a JSON value and holds a comma
/// (a header such as `Administrative,Administrative_Duration,...`). The
/// message tells to read it through a feature spec, since without `--spec`
/// the trainer expects generated sessions or service logs.
pub fn csv_hint(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    if first.starts_with('{') || first.starts_with('[') || !first.contains(',') {
        return None;
    }
    let shown: String = first.chars().take(60).collect();
    let more = if first.chars().count() > 60 {
        "..."
    } else {
        ""
    };
    Some(format!(
        "the data looks like a CSV file (header line `{shown}{more}`), not JSON lines: \
         pass --spec SPEC.toml to read a CSV through a feature spec \
         (e.g. --spec training/specs/uci_online_shoppers.toml)"
    ))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decision-moment rows: for each session at most `max_per_session` of its
/// decision points (chosen with `seed`, kept in time order), features by
/// replay, label = the session converted (without a voucher).
pub fn rows(sessions: &[GeneratedSession], max_per_session: usize, seed: u64) -> Vec<Row> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x726f_7773);
    let mut out = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let n = s.decision_points.len();
        let mut picked: Vec<usize> = if n <= max_per_session {
            (0..n).collect()
        } else {
            sample(&mut rng, n, max_per_session).into_vec()
        };
        picked.sort_unstable();
        for k in picked {
            out.push(Row {
                session: i,
                features: nudge::sim::synth::replay(s, &s.decision_points[k]),
                converted: s.outcome.converted,
            });
        }
    }
    out
}

/// Held-out assignment per session (`true` = held out), seeded, so all rows
/// of a session land on the same side. Each session is held out with
/// probability `holdout`.
pub fn holdout_sessions(n_sessions: usize, holdout: f64, seed: u64) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0073_706c_6974);
    (0..n_sessions)
        .map(|_| rng.random::<f64>() < holdout)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_round_trips_and_hash_is_stable() {
        let a = generate_jsonl(50, 3);
        let b = generate_jsonl(50, 3);
        assert_eq!(sha256_hex(&a), sha256_hex(&b));
        let parsed = parse_jsonl(&a).unwrap();
        assert_eq!(parsed.len(), 50);
        // Floats may differ in the last bit after a text round trip, so
        // compare the structure, not the bytes.
        let again = generate_jsonl(50, 3);
        let reparsed = parse_jsonl(&again).unwrap();
        for (x, y) in parsed.iter().zip(&reparsed) {
            assert_eq!(x.session_id, y.session_id);
            assert_eq!(x.events, y.events);
            assert_eq!(x.decision_points, y.decision_points);
            assert_eq!(x.outcome, y.outcome);
        }
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn rows_are_capped_and_split_by_session() {
        let sessions = parse_jsonl(&generate_jsonl(300, 4)).unwrap();
        let r = rows(&sessions, 3, 1);
        let mut per = vec![0usize; sessions.len()];
        for row in &r {
            per[row.session] += 1;
            assert_eq!(row.converted, sessions[row.session].outcome.converted);
        }
        for (i, c) in per.iter().enumerate() {
            assert_eq!(*c, sessions[i].decision_points.len().min(3));
        }
        let h = holdout_sessions(10_000, 0.2, 9);
        let share = h.iter().filter(|v| **v).count() as f64 / 1e4;
        assert!((0.17..0.23).contains(&share));
        assert_eq!(h, holdout_sessions(10_000, 0.2, 9));
    }

    #[test]
    fn a_csv_without_spec_is_named_as_such() {
        let csv = b"Administrative,Administrative_Duration,Revenue\n0,0.0,FALSE\n";
        let e = parse_jsonl(csv).unwrap_err().to_string();
        assert!(e.contains("CSV") && e.contains("--spec"), "{e}");
        assert!(e.contains("Administrative,Administrative_Duration"), "{e}");
        assert!(csv_hint(&generate_jsonl(2, 1)).is_none());
        assert!(csv_hint(b"").is_none());
        assert!(csv_hint(b"\n\n").is_none());
    }
}
