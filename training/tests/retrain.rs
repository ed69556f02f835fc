//! `nudge-train retrain` on logs of an exploring service: the candidate
//! that learns who responds replaces the shipped priors and earns more than
//! giving nothing; a candidate with inverted lifts is refused; the JSON
//! report keeps its shape.
//!
//! The world: the generator's sessions and purchase draws, every eligible
//! visitor (first moment with an intent value of at least 99 EUR) explored
//! uniformly over none / 5 / 10 / 20 EUR (10 % held out), logged as the
//! service logs (`common::exploration_log`). Vouchers move only deal
//! seekers (a listing sorted by price, the coupon field focused or an item
//! removed from the cart at the decision, about 14 % of the eligible
//! visitors): log-odds `+25 share`, `share` the voucher's share of the
//! intent value; everyone else buys or not as without one, so a voucher
//! there only costs. The signals show who responds, so a response model
//! with signal interactions can find who is worth a voucher, while the
//! shipped priors give vouchers to every hesitant visitor. Margin 30 %, the
//! default config otherwise.

mod common;

use nudge::domain::features::{Features, F};
use nudge::domain::model::{
    voucher_share, Model, ModelFile, Term, Transform, UpliftArm, UpliftFile, VOUCHER_SHARE,
};
use nudge::sim::synth::{GeneratedSession, Generator, GeneratorConfig};
use nudge_train::logs::{self, MissingOutcome};
use nudge_train::retrain::{self, Decision, Written};
use nudge_train::uplift::{randomised_rows, RandomisedRow};
use std::path::{Path, PathBuf};
use std::process::Command;

const SESSIONS: usize = 60_000;
const SEED: u64 = 5;
const MIN_ORDER_CENTS: i64 = 9_900;

fn default_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/default.json")
}

/// The signals of a deal seeker at a decision moment.
const SEEKER_SIGNALS: [F; 4] = [
    F::price_sort,
    F::coupon_field_focus,
    F::cart_removes,
    F::shipping_info,
];

fn deal_seeker(f: &Features) -> bool {
    SEEKER_SIGNALS.iter().any(|&s| f.get(s) > 0.0)
}

/// The generator's order value: the final cart, else the most considered
/// product, else the budget.
fn order_value(s: &GeneratedSession) -> i64 {
    match nudge::sim::synth::state_at(s, usize::MAX).intent_value_cents() {
        v if v > 0 => v,
        _ => (s.truth.basket_eur * 100.0).round() as i64,
    }
}

/// The world's voucher response (a voucher the order cannot redeem does
/// nothing).
fn lift(s: &GeneratedSession, f: &Features, amount: i64, intent: i64) -> f64 {
    if deal_seeker(f) && order_value(s) >= MIN_ORDER_CENTS {
        25.0 * voucher_share(amount, intent)
    } else {
        0.0
    }
}

/// Writes the world's log into `dir` and returns its path.
fn write_log(dir: &Path, sessions: usize, seed: u64) -> PathBuf {
    let sessions: Vec<GeneratedSession> = Generator::new(GeneratorConfig {
        seed,
        ..GeneratorConfig::default()
    })
    .take(sessions)
    .collect();
    let model = Model::load(&default_model_path()).unwrap();
    let log = common::exploration_log(&sessions, &model, 9_900, seed, lift);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("decisions.jsonl"), log).unwrap();
    logs
}

/// The world's log, written once for the tests of this file.
fn shared_log() -> &'static (tempfile::TempDir, PathBuf) {
    static L: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let logs = write_log(dir.path(), SESSIONS, SEED);
        (dir, logs)
    })
}

struct World {
    _dir: tempfile::TempDir,
    report: retrain::RetrainReport,
    out: PathBuf,
}

/// One retrain shared by the tests.
fn world() -> &'static World {
    static W: std::sync::OnceLock<World> = std::sync::OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let logs = shared_log().1.clone();
        let config = dir.path().join("nudge.toml");
        std::fs::write(&config, "[policy]\nmargin_rate = 0.30\n").unwrap();
        let out = dir.path().join("model.json");
        let mut o = retrain::Options::new(logs.clone(), default_model_path(), out.clone());
        o.config = Some(config);
        // A fixed intent penalty and a short response CV keep the test
        // short (the closed loop fixes the intent penalty too).
        o.intent.alphas = Vec::new();
        o.intent.alpha = 1.0;
        o.uplift.alphas = Some(vec![0.1, 1.0, 10.0]);
        o.uplift.cv_folds = 3;
        o.evaluation_share = 0.4;
        let started = std::time::Instant::now();
        let report = retrain::run(&o).expect("retrain");
        println!("retrain took {:.0} s", started.elapsed().as_secs_f64());
        print!("{}", report.text());
        World {
            _dir: dir,
            report,
            out,
        }
    })
}

#[test]
fn retrain_replaces_the_priors_with_a_response_that_beats_no_voucher() {
    let w = world();
    let r = &w.report;
    for s in &r.selection {
        println!(
            "{:<22} alpha {:>6}: served {:.4} EUR/session ({} offers), point {:.4}, Qini {:?}",
            s.setting,
            s.alpha,
            s.value.dr.estimate / 100.0,
            nudge_train::uplift::value::offers(&s.value),
            s.value_point.dr.estimate / 100.0,
            s.qini
        );
    }
    let written = ModelFile::load(&w.out).unwrap();
    let refs = &written.uplift.as_ref().unwrap().training["references"];
    for k in ["no_voucher", "base"] {
        println!(
            "validation reference {k}: {:.4} EUR/session",
            refs[k]["dr"]["estimate"].as_f64().unwrap() / 100.0
        );
    }
    assert_eq!(r.decision, Decision::Replaced, "{:?}", r.reasons);
    assert_eq!(r.written, Written::Candidate);
    let cand = r.candidate.as_ref().expect("a candidate");
    assert!(cand.dr.estimate > r.current.dr.estimate);
    assert!(cand.dr.lo >= r.current.dr.lo);
    assert!(
        cand.dr.estimate > r.no_voucher.dr.estimate,
        "candidate {:?} vs no voucher {:?}",
        cand.dr,
        r.no_voucher.dr
    );
    assert!(r.gain_over_no_voucher.unwrap().estimate > 0.0);
    assert!(cand.offers > 0, "it offers vouchers");
    // The written file is the candidate, served by the service's loader.
    let m = Model::load(&w.out).unwrap();
    assert_eq!(m.version(), cand.version);
    assert!(m.has_uplift());
    // And in truth (the world's probabilities, all randomised sessions) it
    // earns more than no voucher and than the priors.
    let (_, logs) = shared_log();
    let (_, _, records) = logs::read_records(logs).unwrap();
    let (rows, _, _) = randomised_rows(&records, MissingOutcome::Skip).unwrap();
    let refs: Vec<&RandomisedRow> = rows.iter().collect();
    let policy = nudge::config::RawConfig::default()
        .validate()
        .unwrap()
        .policy;
    let truth = |m: &Model| {
        let a = nudge_train::uplift::rule_actions(m, &policy, &refs, None).unwrap();
        true_value(&refs, &a) / 100.0
    };
    let (t_cand, t_priors) = (
        truth(&m),
        truth(&Model::load(&default_model_path()).unwrap()),
    );
    let t_none = true_value(&refs, &vec![0; refs.len()]) / 100.0;
    println!(
        "true value per session: candidate {t_cand:.4}, priors {t_priors:.4}, none {t_none:.4} EUR"
    );
    assert!(t_cand > t_none && t_cand > t_priors);
}

/// The shipped intent model with a hand-written response: `+20 share` and,
/// per deal-seeker signal, `sign * 10 log1p(count)`, intercept `-3` for
/// `sign > 0`. With `sign = 1` it is the world's shape (seekers respond);
/// with `sign = -1` its lifts are inverted: large for everyone but the
/// seekers, the visitors a voucher does not move.
fn hand_model(sign: f64) -> Model {
    hand_file(sign).compile().unwrap()
}

/// [`hand_model`]'s file.
fn hand_file(sign: f64) -> ModelFile {
    let mut f = ModelFile::load(&default_model_path()).unwrap();
    f.version = format!("hand-{}", if sign > 0.0 { "right" } else { "inverted" });
    let term = |feature: &str, transforms, coef| Term {
        feature: feature.into(),
        category: None,
        transforms,
        times: None,
        coef,
    };
    let treated = |amount_cents| {
        let mut terms: Vec<Term> = SEEKER_SIGNALS
            .iter()
            .map(|&s| {
                let name = nudge::domain::features::FEATURES[s as usize].name;
                term(name, vec![Transform::Log1p], sign * 10.0)
            })
            .collect();
        terms.push(term(VOUCHER_SHARE, vec![], 20.0));
        UpliftArm {
            amount_cents,
            intercept: if sign > 0.0 { -3.0 } else { 0.0 },
            terms,
            covariance: None,
        }
    };
    f.uplift = Some(UpliftFile {
        arms: vec![
            UpliftArm {
                amount_cents: 0,
                intercept: 0.0,
                terms: vec![],
                covariance: None,
            },
            treated(500),
            treated(1_000),
            treated(2_000),
        ],
        lower_bound_z: None,
        training: serde_json::Value::Null,
    });
    f
}

/// The true expected net value per session (cents) of taking `actions[i]`
/// at `rows[i]`, from the world's purchase probabilities.
fn true_value(rows: &[&RandomisedRow], actions: &[i64]) -> f64 {
    let sessions: std::collections::HashMap<String, GeneratedSession> =
        Generator::new(GeneratorConfig {
            seed: SEED,
            ..GeneratorConfig::default()
        })
        .take(SESSIONS)
        .map(|s| (s.session_id.clone(), s))
        .collect();
    let mut total = 0.0;
    for (r, &a) in rows.iter().zip(actions) {
        let s = &sessions[&r.session_id];
        let v = order_value(s);
        let p = nudge::domain::logistic::sigmoid(
            s.truth.base_logit + lift(s, &r.features, a, r.intent_value_cents),
        );
        let cost = if v >= MIN_ORDER_CENTS { a as f64 } else { 0.0 };
        total += p * (0.3 * v as f64 - cost);
    }
    total / rows.len() as f64
}

#[test]
fn a_candidate_with_inverted_lifts_is_refused() {
    let (_, logs) = shared_log();
    let (_, _, records) = logs::read_records(logs).unwrap();
    let (rows, _, _) = randomised_rows(&records, MissingOutcome::Skip).unwrap();
    let refs: Vec<&RandomisedRow> = rows.iter().collect();
    let settings = nudge::config::RawConfig::default().validate().unwrap();
    let value = nudge_train::replay::Options::new(
        &settings.policy,
        settings.min_order_cents,
        nudge_train::replay::Reward::Net,
    );
    let serving = Model::load(&default_model_path()).unwrap();
    let truth = |m: &Model| {
        let a = nudge_train::uplift::rule_actions(m, &settings.policy, &refs, None).unwrap();
        true_value(&refs, &a) / 100.0
    };
    // The inverted response is refused: it loses money, off-policy and in
    // truth.
    let inverted = hand_model(-1.0);
    let c = retrain::compare(&serving, &inverted, &refs, &settings.policy, &value).unwrap();
    let (d, reasons) = retrain::decide(&c);
    println!(
        "{reasons:#?}\nserving {:?} ({} offers, true {:.4}), inverted {:?} ({} offers, true {:.4}), none {:?} (true {:.4})",
        c.current.dr,
        c.current.offers,
        truth(&serving),
        c.candidate.dr,
        c.candidate.offers,
        truth(&inverted),
        c.no_voucher.dr,
        true_value(&refs, &vec![0; refs.len()]) / 100.0
    );
    assert_eq!(d, Decision::Kept);
    assert!(c.candidate.offers > 0, "the inverted candidate does offer");
    assert!(
        c.candidate.dr.estimate < c.no_voucher.dr.estimate,
        "and loses money: {:?} vs none {:?}",
        c.candidate.dr,
        c.no_voucher.dr
    );
    assert!(c.difference.estimate < 0.0, "{:?}", c.difference);
    // The same response with the sign right passes the same comparison.
    let right = hand_model(1.0);
    let c = retrain::compare(&serving, &right, &refs, &settings.policy, &value).unwrap();
    let (d, reasons) = retrain::decide(&c);
    println!("{reasons:#?}\nright: true {:.4}", truth(&right));
    assert_eq!(d, Decision::Replaced);
}

#[test]
fn retrain_json_shape_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let logs = write_log(dir.path(), 8_000, 17);
    let current = dir.path().join("current.json");
    std::fs::copy(default_model_path(), &current).unwrap();
    let out = dir.path().join("out.json");
    let o = Command::new(env!("CARGO_BIN_EXE_nudge-train"))
        .args([
            "retrain",
            "--json",
            "--intent-alpha",
            "1",
            "--learner",
            "pooled",
        ])
        .args(["--interactions", "none,signals", "--seed", "3"])
        .arg("--logs")
        .arg(&logs)
        .arg("--current")
        .arg(&current)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&v),
        [
            "candidate",
            "candidate_value",
            "candidate_version",
            "current",
            "current_value",
            "current_version",
            "decision",
            "difference",
            "evaluation",
            "format",
            "gain_over_no_voucher",
            "no_voucher",
            "out",
            "promoted",
            "reasons",
            "rule",
            "selection",
            "unit",
            "written"
        ]
    );
    assert_eq!(v["format"], "nudge-retrain/1");
    assert!(["replaced", "kept"].contains(&v["decision"].as_str().unwrap()));
    assert_eq!(v["unit"], "cents per session");
    let interval = ["estimate", "hi", "lo", "se"];
    for side in ["current", "candidate", "no_voucher"] {
        let s = &v[side];
        let mut want = vec!["actions", "dr", "ips", "offers", "version"];
        if side == "candidate" {
            want.push("setting");
            want.sort();
        }
        assert_eq!(keys(s), want, "{side}");
        assert_eq!(keys(&s["dr"]), interval);
        assert_eq!(keys(&s["ips"]), interval);
    }
    assert_eq!(keys(&v["difference"]), interval);
    assert_eq!(keys(&v["gain_over_no_voucher"]), interval);
    assert_eq!(
        keys(&v["evaluation"]),
        [
            "randomised_sessions",
            "rows_per_arm",
            "seed",
            "sessions",
            "share"
        ]
    );
    assert!(v["reasons"].as_array().unwrap().len() >= 2);
    let sel = v["selection"].as_array().unwrap();
    assert_eq!(sel.len(), 2);
    assert_eq!(
        keys(&sel[0]),
        [
            "alpha",
            "alpha_cv",
            "chosen",
            "converged",
            "interactions",
            "learner",
            "qini",
            "setting",
            "value",
            "value_point"
        ]
    );
    assert_eq!(keys(&sel[0]["value"]), ["actions", "dr", "ips", "sessions"]);
    assert_eq!(v["current_value"], v["current"]["dr"]["estimate"]);
    assert_eq!(v["candidate_value"], v["candidate"]["dr"]["estimate"]);
    assert_eq!(v["current_version"], v["current"]["version"]);
    assert_eq!(v["candidate_version"], v["candidate"]["version"]);
    // What was written, and the exit status, match the decision.
    match v["written"].as_str().unwrap() {
        "nothing" => {
            assert_eq!(v["promoted"], false);
            assert_eq!(o.status.code(), Some(3));
            assert!(!out.exists());
        }
        "candidate" => {
            assert_eq!(v["promoted"], true);
            assert_eq!(o.status.code(), Some(0));
            let m = Model::load(&out).unwrap();
            assert_eq!(m.version(), v["candidate"]["version"].as_str().unwrap());
        }
        other => panic!("written {other}"),
    }
}

/// `nudge-train retrain` with `current` as the serving model on `logs`:
/// its exit status and JSON report.
fn retrain_cli(logs: &Path, current: &Path, out: &Path) -> (Option<i32>, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_nudge-train"))
        .args(["retrain", "--json", "--intent-alpha", "1"])
        .args(["--learner", "pooled", "--interactions", "signals"])
        .args(["--alphas", "1", "--evaluation-share", "0.4"])
        .arg("--logs")
        .arg(logs)
        .arg("--current")
        .arg(current)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}{}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code(), v)
}

/// The promotion contract on one log: against a serving model that offers
/// the largest voucher to every hesitant visitor the fitted candidate is
/// promoted (exit 0, written, its
/// lineage naming the parent); against one the candidate values below it
/// is refused (exit 3, the existing `--out` untouched).
#[test]
fn retrain_promotes_a_better_candidate_and_leaves_out_alone_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let logs = write_log(dir.path(), 12_000, 23);
    let write = |name: &str, f: &ModelFile| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(f).unwrap()).unwrap();
        p
    };
    // A serving model that believes every voucher moves everyone: it
    // gives the largest tier to every hesitant visitor, which only pays
    // for the deal seekers.
    let mut generous = hand_file(1.0);
    generous.version = "generous".into();
    for arm in &mut generous.uplift.as_mut().unwrap().arms {
        if arm.amount_cents > 0 {
            arm.terms.clear();
            arm.intercept = 3.0;
        }
    }
    // The hand-written response with its lifts inverted: on this log's
    // evaluation sessions it values above the candidate fitted from them
    // (9.45 against 9.21 EUR/session), so the candidate is refused.
    let (worse, better) = (
        write("generous.json", &generous),
        write("inverted.json", &hand_file(-1.0)),
    );

    let out = dir.path().join("next.json");
    let (code, v) = retrain_cli(&logs, &worse, &out);
    println!("against the generous model: {code:?} {:#}", v["reasons"]);
    assert_eq!(code, Some(0), "{:#}", v["reasons"]);
    assert_eq!(v["promoted"], true);
    assert_eq!(v["current_version"], "generous");
    assert!(v["candidate_value"].as_f64().unwrap() > v["current_value"].as_f64().unwrap());
    let written = ModelFile::load(&out).unwrap();
    assert_eq!(written.version, v["candidate_version"].as_str().unwrap());
    assert_eq!(written.training["parent_version"], "generous");
    assert!(written.training["trainer"].is_string(), "the lineage stays");

    let before = b"the previous night's file".to_vec();
    std::fs::write(&out, &before).unwrap();
    let (code, v) = retrain_cli(&logs, &better, &out);
    println!("against the inverted model: {code:?} {:#}", v["reasons"]);
    assert_eq!(code, Some(3), "{:#}", v["reasons"]);
    assert_eq!(v["promoted"], false);
    assert_eq!(v["written"], "nothing");
    assert_eq!(v["current_version"], "hand-inverted");
    assert!(v["candidate_value"].is_number() && v["current_value"].is_number());
    assert_eq!(std::fs::read(&out).unwrap(), before, "--out untouched");
}
