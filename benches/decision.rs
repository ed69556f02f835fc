//! Criterion benchmarks of the in-process hot paths:
//! - `apply_event`: folding one event into a session aggregate;
//! - `assess`: features + score + segment + voucher rule (the decision path);
//! - `engine_decide`: the full in-process Decide (session store update,
//!   assess, ledger), without gRPC;
//! - `engine_decide_redis`: the same with the Redis session store and
//!   ledger on a private `redis-server` over a Unix socket (skipped with a
//!   message when there is no `redis-server`).
//!
//! Run: `cargo bench --bench decision`.

use criterion::{criterion_group, criterion_main, Criterion};
use nudge::app::memory_engine;
use nudge::clock::ManualClock;
use nudge::config::Settings;
use nudge::decision_log::writer::DecisionLog;
use nudge::domain::model::{ClientFeatures, Model};
use nudge::domain::session::{
    Context, Event, EventKind, PageKind, ProductKey, SessionState, Signal,
};
use nudge::domain::voucher::VoucherKey;
use nudge::engine::DecideInput;
use nudge::engine::{assess, Engine};
use nudge::redis::{RedisConn, RedisLedger, RedisSessionStore, RedisSettings};
use std::hint::black_box;
use std::sync::Arc;

const NOW: i64 = 1_795_341_600_000;

fn hesitant_events() -> Vec<Event> {
    let mut v = Vec::new();
    let mut t = NOW - 600_000;
    for i in 0..12 {
        t += 20_000;
        v.push(Event {
            at_ms: t,
            kind: EventKind::PageView {
                page: if i % 3 == 0 {
                    PageKind::Category
                } else {
                    PageKind::Product
                },
                product: Some(ProductKey::of(&format!("p{}", i % 5))),
                price_cents: 12_000 + 500 * (i % 5),
                dwell_ms: 40_000,
                scroll_depth: 0.6,
            },
        });
    }
    v.push(Event {
        at_ms: t + 1_000,
        kind: EventKind::CartAdd {
            product: ProductKey::of("p1"),
            unit_price_cents: 12_500,
            quantity: 1,
        },
    });
    v.push(Event {
        at_ms: t + 2_000,
        kind: EventKind::Interaction {
            signal: Signal::CouponFieldFocus,
        },
    });
    v
}

fn model() -> Model {
    Model::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/default.json"
    )))
    .expect("models/default.json")
}

/// The default settings, offering on the configured priors, so that the
/// measured Decide goes through the voucher rule's ranking and the ledger's
/// reservation as with a learned model.
fn offering_settings() -> Settings {
    let mut settings = Settings::default();
    settings.policy.offer_on_priors = true;
    settings
}

fn benches(c: &mut Criterion) {
    let events = hesitant_events();
    let mut state = SessionState::new(Context::default());
    events.iter().for_each(|e| state.apply(e));
    let model = model();
    let settings = offering_settings();
    let client = ClientFeatures::default();

    let one = events[3];
    c.bench_function("apply_event", |b| {
        let mut s = state.clone();
        b.iter(|| s.apply(black_box(&one)))
    });

    c.bench_function("assess (features + score + policy)", |b| {
        b.iter(|| {
            assess(
                black_box(&state),
                &client,
                None,
                NOW,
                &model,
                &settings.policy,
                0.0,
            )
            .unwrap()
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = memory_engine(&settings, model.clone(), Arc::new(ManualClock::new(NOW)));
    bench_decide(
        c,
        "engine_decide (store + assess + ledger, 1 new event)",
        &engine,
        &rt,
        one,
    );
}

/// Decide with one new event on 10,000 rotating sessions.
fn bench_decide(
    c: &mut Criterion,
    name: &str,
    engine: &Engine,
    rt: &tokio::runtime::Runtime,
    event: Event,
) {
    let mut i = 0u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            i += 1;
            let input = DecideInput {
                session_id: format!("s{}", i % 10_000),
                visitor_id: None,
                context: None,
                events: vec![event],
                client: ClientFeatures::default(),
                intent_value_cents: None,
                campaign: String::new(),
            };
            rt.block_on(engine.decide(input)).unwrap()
        })
    });
}

/// A private redis-server on a Unix socket, killed on drop (the directory
/// holding the socket is removed with it).
struct Redis(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_server() -> Option<(Redis, String)> {
    let dir = tempfile::tempdir().ok()?;
    let sock = dir.path().join("redis.sock");
    let child = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--save",
            "",
            "--appendonly",
            "no",
            "--unixsocket",
        ])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let redis = Redis(child, dir);
    for _ in 0..500 {
        if sock.exists() {
            return Some((redis, format!("unix://{}", sock.display())));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

fn redis_benches(c: &mut Criterion) {
    let Some((_redis, url)) = redis_server() else {
        eprintln!("engine_decide_redis skipped: no redis-server (apt-get install redis-server)");
        return;
    };
    let settings = offering_settings();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = rt.enter();
    let conn = RedisConn::new(&RedisSettings {
        url,
        key_prefix: "bench".into(),
        timeout: std::time::Duration::from_secs(5),
        tls_ca_file: None,
    })
    .unwrap();
    let key = VoucherKey::from_secret("bench secret, not for production");
    let engine = Engine::new(
        &settings,
        Arc::new(model()),
        Arc::new(RedisSessionStore::new(conn.clone(), settings.idle_ttl)),
        Arc::new(RedisLedger::new(
            conn,
            settings.budgets.clone(),
            key.clone(),
        )),
        Arc::new(ManualClock::new(NOW)),
        key,
        DecisionLog::disabled(),
    );
    bench_decide(
        c,
        "engine_decide_redis (redis store + assess + redis ledger, 1 new event)",
        &engine,
        &rt,
        hesitant_events()[3],
    );
}

criterion_group!(decision, benches, redis_benches);
criterion_main!(decision);
