//! Helpers shared by the training integration tests (each test binary
//! uses some of them).
#![allow(dead_code)]

use nudge::decision_log::LogRecord;
use nudge::domain::features::Features;
use nudge::domain::logistic::sigmoid;
use nudge::domain::model::{ClientFeatures, Model};
use nudge::sim::synth::GeneratedSession;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A minimal executor: the simulator needs no reactor (in-memory ledger and
/// store, a log writer thread), only something to poll its futures.
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The actions an exploring service draws from: none and the default tiers.
pub const ACTIONS: [i64; 4] = [0, 500, 1_000, 2_000];

/// A decision log of generated sessions as a service exploring every
/// eligible visitor would write it. A session's first decision moment with
/// an intent value of at least `min_intent_cents` is its randomised one:
/// the visitor is held out with probability 0.1, else the action is drawn
/// uniformly from [`ACTIONS`]; earlier moments are not eligible
/// (`intent_too_low`) and later ones answer `already_offered`. Every
/// decision logs `model`'s probability. The outcome is the generator's own
/// purchase draw against `sigmoid(base_logit + lift(session, features,
/// amount, intent))` (common random numbers: no voucher reproduces the
/// generated outcome when `lift` is 0 there), with the generator's order
/// value (final cart, else the most considered product, else the budget).
pub fn exploration_log(
    sessions: &[GeneratedSession],
    model: &Model,
    min_intent_cents: i64,
    seed: u64,
    lift: impl Fn(&GeneratedSession, &Features, i64, i64) -> f64,
) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let index: std::collections::HashMap<&str, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.session_id.as_str(), i))
        .collect();
    // Per session: (randomised yet, lift of the drawn action).
    let mut state: Vec<(bool, f64)> = vec![(false, 0.0); sessions.len()];
    let log = nudge_train::logs::generated_to_log(sessions);
    let mut out = Vec::new();
    for line in std::str::from_utf8(&log).unwrap().lines() {
        let mut r: LogRecord = serde_json::from_str(line).unwrap();
        match &mut r {
            LogRecord::Decision(d) => {
                let i = index[d.session_id.as_str()];
                let f = nudge_train::replay::features_of(d).unwrap();
                d.probability = model
                    .score(&f, &ClientFeatures::default())
                    .unwrap()
                    .probability;
                d.model_version = model.version().to_owned();
                if state[i].0 {
                    d.eligible = true;
                    d.reason = "already_offered".into();
                } else if d.intent_value_cents < min_intent_cents {
                    d.reason = "intent_too_low".into();
                } else {
                    let holdout = rng.random::<f64>() < 0.1;
                    let a = if holdout {
                        0
                    } else {
                        ACTIONS[rng.random_range(0..ACTIONS.len())]
                    };
                    d.eligible = true;
                    d.holdout = holdout;
                    d.explored = !holdout;
                    d.propensity = if holdout { 1.0 } else { 0.25 };
                    d.action_cents = a;
                    d.reason = match (holdout, a) {
                        (true, _) => "holdout",
                        (false, 0) => "exploration_no_voucher",
                        _ => "offered",
                    }
                    .into();
                    state[i] = (true, lift(&sessions[i], &f, a, d.intent_value_cents));
                }
            }
            LogRecord::Outcome(o) => {
                let i = index[o.session_id.as_str()];
                let s = &sessions[i];
                let converted = s.truth.purchase_uniform < sigmoid(s.truth.base_logit + state[i].1);
                o.converted = converted;
                o.order_value_cents = if !converted {
                    0
                } else {
                    match nudge::sim::synth::state_at(s, usize::MAX).intent_value_cents() {
                        v if v > 0 => v,
                        _ => (s.truth.basket_eur * 100.0).round() as i64,
                    }
                };
            }
            LogRecord::Events(_) => {}
        }
        out.extend(serde_json::to_vec(&r).unwrap());
        out.push(b'\n');
    }
    out
}
