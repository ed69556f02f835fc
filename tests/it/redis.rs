//! The Redis backends: a real `redis-server` per test on a Unix socket in a
//! temporary directory (no TCP port to collide on). The conformance suites
//! themselves are in `store.rs`; this file holds the harness and what only
//! a shared backend has: several replicas on one budget, one session seen
//! by every replica, and a Redis that is down.
//!
//! Without `redis-server` on the PATH these tests print why and pass, except
//! under CI (`CI` set), where `.ci/run` installs it and its absence fails.

use crate::decide::hesitant_session;
use crate::util::{self, decide, NOW_MS};
use nudge::clock::ManualClock;
use nudge::domain::voucher::VoucherKey;
use nudge::engine::{Engine, Reason};
use nudge::grpc::pb;
use nudge::grpc::validate;
use nudge::ledger::{Budgets, Ledger, ReserveOutcome, ReserveRequest};
use nudge::redis::{RedisConn, RedisLedger, RedisSessionStore, RedisSettings};
use nudge::store::{MemorySessionStore, SessionStore};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `redis-server` child process, killed on drop.
pub struct RedisServer {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// SIGKILLs the server (no shutdown, no final fsync) and hands back its
    /// directory.
    pub(crate) fn crash(mut self) -> tempfile::TempDir {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._dir, dir)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisServer {
    /// Connection settings with their own key prefix (one server can hold
    /// several independent deployments).
    pub fn settings(&self, prefix: &str) -> RedisSettings {
        RedisSettings {
            url: format!("unix://{}", self.socket.display()),
            key_prefix: prefix.to_owned(),
            timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }

    pub fn conn(&self, prefix: &str) -> RedisConn {
        RedisConn::new(&self.settings(prefix)).unwrap()
    }
}

/// Starts a private `redis-server`, or returns None (with a message) when
/// there is none and this is not CI.
pub fn redis_server() -> Option<RedisServer> {
    start(tempfile::tempdir().unwrap(), &["--appendonly", "no"])
}

/// Starts `redis-server` with its socket and files in `dir`.
pub(crate) fn start(dir: tempfile::TempDir, extra: &[&str]) -> Option<RedisServer> {
    let socket = dir.path().join("redis.sock");
    let _ = std::fs::remove_file(&socket);
    let spawned = Command::new("redis-server")
        .args(["--port", "0", "--unixsocket"])
        .arg(&socket)
        .args(["--save", "", "--dir"])
        .arg(dir.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is needed under CI (.ci/run installs it): {e}"
            );
            eprintln!("skipped: redis-server not found ({e}); apt-get install redis-server");
            return None;
        }
    };
    let server = RedisServer {
        child,
        socket,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.socket.exists() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

pub(crate) fn key() -> VoucherKey {
    VoucherKey::from_secret("redis test secret")
}

/// Two replicas (separate connections, separate ledger objects) reserve
/// concurrently against one budget, a quarter of the sessions as learning
/// (exploration) offers: the cap and the learning cap hold to the cent,
/// every session has at most one offer, and the counters equal the offers
/// made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_overspend_one_budget() {
    let Some(redis) = redis_server() else { return };
    let cap = 25_000;
    let replicas: Vec<Arc<RedisLedger>> = (0..2)
        .map(|_| {
            Arc::new(RedisLedger::new(
                redis.conn("shared"),
                Budgets::single(cap),
                key(),
            ))
        })
        .collect();
    let mut tasks = Vec::new();
    for i in 0..400u32 {
        let l = replicas[(i % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            // 80 sessions asked 5 times each, through both replicas.
            let session = format!("s{}", i % 80);
            let learning = i % 80 < 20;
            let candidates: &[i64] = match i % 3 {
                0 => &[2_000, 1_000, 500],
                1 => &[1_000, 500],
                _ => &[500],
            };
            let out = l
                .reserve(ReserveRequest {
                    campaign: "default",
                    session_id: &session,
                    candidates,
                    now_ms: NOW_MS,
                    expires_at_ms: NOW_MS + 3_600_000,
                    learning,
                })
                .await
                .unwrap();
            (session, learning, out)
        }));
    }
    let mut reserved = std::collections::HashMap::new();
    let (mut sum, mut learning_sum) = (0, 0);
    for t in tasks {
        let (session, learning, out) = t.await.unwrap();
        if let ReserveOutcome::Reserved(o) = out {
            assert!(
                reserved.insert(session, o.clone()).is_none(),
                "one offer per session"
            );
            sum += o.amount_cents;
            if learning {
                learning_sum += o.amount_cents;
            }
        }
    }
    let snap = replicas[0].snapshot("default", NOW_MS).await.unwrap();
    assert!(sum <= cap, "reserved {sum} > cap {cap}");
    assert_eq!(snap.reserved_cents, sum);
    let learning_cap = snap.learning_cap_cents;
    assert_eq!(learning_cap, cap / 10);
    assert!(
        learning_sum <= learning_cap,
        "learning {learning_sum} > {learning_cap}"
    );
    assert_eq!(snap.learning_reserved_cents, learning_sum);
    assert!(snap.learning_remaining_cents < 500, "{snap:?}");
    assert_eq!(snap.offers as usize, reserved.len());
    assert!(
        snap.remaining_cents < 500,
        "asked until no tier fits: {snap:?}"
    );
    for (session, offer) in &reserved {
        assert_eq!(
            replicas[1].offer_for("default", session).await.unwrap(),
            Some(offer.clone()),
            "the other replica sees the same offer"
        );
    }
}

/// A session's events sent to one replica are seen by the other; the offer
/// one replica makes is redeemed at the other (shared voucher secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_between_replicas() {
    let Some(redis) = redis_server() else { return };
    let url = redis.settings("x").url;
    let toml = format!(
        "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n[redis]\nurl = \"{url}\"\nkey_prefix = \"replicas\"\n[budget]\ndaily_cap_cents = 100000\n"
    );
    let a = util::start(
        util::settings(&toml),
        util::fixture_model("flat_hesitant.json"),
    )
    .await;
    let b = util::start(
        util::settings(&toml),
        util::fixture_model("flat_hesitant.json"),
    )
    .await;
    let events = hesitant_session(20_000);
    let (first, rest) = events.split_at(2);
    let mut ca = a.client().await;
    let mut cb = b.client().await;
    ca.track(pb::TrackRequest {
        session_id: "moving".into(),
        context: decide("moving", vec![]).context,
        events: first.to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let d = cb
        .decide(decide_without_context("moving", rest.to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(util::reason(&d), pb::Reason::Offered, "{d:?}");
    let seen = b
        .engine
        .sessions
        .get_many(&["moving"], NOW_MS)
        .await
        .unwrap();
    assert_eq!(
        seen[0].as_ref().map(|s| s.events as usize),
        Some(events.len()),
        "replica b folded replica a's events"
    );
    let offer = d.offer.unwrap();
    // The same session asking the first replica gets the same offer back.
    let again = ca
        .decide(decide_without_context("moving", vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.offer.as_ref().map(|o| &o.voucher_code),
        Some(&offer.voucher_code)
    );
    let r = ca
        .redeem(pb::RedeemRequest {
            voucher_code: offer.voucher_code.clone(),
            session_id: "moving".into(),
            order_value_cents: 20_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.discount_cents, offer.amount_cents, "{r:?}");
    let snap = b.engine.ledger.snapshot("default", NOW_MS).await.unwrap();
    assert_eq!(
        (snap.captured_cents, snap.reserved_cents),
        (offer.amount_cents, 0)
    );
    a.stop().await;
    b.stop().await;
}

pub(crate) fn decide_without_context(session: &str, events: Vec<pb::Event>) -> pb::DecideRequest {
    pb::DecideRequest {
        context: None,
        ..decide(session, events)
    }
}

pub(crate) fn engine_on(store: Arc<dyn SessionStore>, ledger: Arc<dyn Ledger>) -> Engine {
    Engine::new(
        &util::settings(""),
        Arc::new(util::fixture_model("flat_hesitant.json")),
        store,
        ledger,
        Arc::new(ManualClock::new(NOW_MS)),
        key(),
        nudge::decision_log::writer::DecisionLog::disabled(),
    )
}

/// Nothing listens: decisions are scored, no voucher, and the reason says
/// why; the service does not hang past the Redis timeout.
#[tokio::test]
async fn redis_down_scores_but_gives_no_voucher() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RedisSettings {
        url: format!(
            "unix://{}",
            Path::new(dir.path()).join("none.sock").display()
        ),
        key_prefix: "down".into(),
        timeout: Duration::from_millis(200),
        tls_ca_file: None,
    };
    let ledger = Arc::new(RedisLedger::new(
        RedisConn::new(&settings).unwrap(),
        Budgets::single(100_000),
        key(),
    ));
    let e = engine_on(
        Arc::new(MemorySessionStore::new(Duration::from_secs(60), 100)),
        ledger,
    );
    let started = Instant::now();
    let req = decide("f", hesitant_session(20_000));
    let d = e
        .decide(validate::decide(&req, &e.limits, NOW_MS).unwrap())
        .await
        .unwrap();
    assert_eq!(d.reason, Reason::BudgetUnavailable);
    assert!(d.offer.is_none());
    assert!((d.purchase_probability - 0.3).abs() < 1e-9);
    assert!(started.elapsed() < Duration::from_secs(5));

    let store = Arc::new(RedisSessionStore::new(
        RedisConn::new(&settings).unwrap(),
        Duration::from_secs(60),
    ));
    let e = engine_on(
        store,
        Arc::new(nudge::ledger::MemoryLedger::with_daily_cap(100_000)),
    );
    let d = e
        .decide(validate::decide(&req, &e.limits, NOW_MS).unwrap())
        .await
        .unwrap();
    assert_eq!(d.reason, Reason::SessionStoreUnavailable);
    assert!(d.offer.is_none());
    assert_eq!(d.intent_value_cents, 20_000, "the request alone was scored");
}

/// Regression guard: a session's floats survive the JSON round trip through
/// Redis bit for bit (serde_json's `float_roundtrip`), so a replica that
/// reads a session scores exactly what the one that wrote it would have.
#[tokio::test]
async fn redis_session_floats_roundtrip_exactly() {
    let Some(redis) = redis_server() else { return };
    let store = RedisSessionStore::new(redis.conn("floats"), Duration::from_secs(60));
    let scrolls = [0.1f32, 0.7, 0.333_333_34, 0.999_999];
    let events: Vec<nudge::domain::session::Event> = scrolls
        .iter()
        .enumerate()
        .map(|(i, s)| nudge::domain::session::Event {
            at_ms: NOW_MS + i as i64,
            kind: nudge::domain::session::EventKind::PageView {
                page: nudge::domain::session::PageKind::Home,
                product: None,
                price_cents: 0,
                dwell_ms: 1_000,
                scroll_depth: *s,
            },
        })
        .collect();
    let written = store
        .apply(
            "f",
            nudge::store::SessionUpdate {
                context: None,
                events: &events,
                now_ms: NOW_MS,
            },
        )
        .await
        .unwrap();
    let read = store.get_many(&["f"], NOW_MS).await.unwrap()[0]
        .clone()
        .unwrap();
    assert_eq!(read, written);
    assert_eq!(read.scroll_sum.to_bits(), written.scroll_sum.to_bits());
}

/// With the documented durable settings (`appendonly yes`, `appendfsync
/// always`), every offer a reserve answered survives Redis being SIGKILLed:
/// after a restart on the same files the offers, the one-per-session rule
/// and the day's reserved total are all there, and the running service's
/// connection heals by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_survive_a_redis_crash_with_appendfsync_always() {
    let durable = ["--appendonly", "yes", "--appendfsync", "always"];
    let Some(redis) = start(tempfile::tempdir().unwrap(), &durable) else {
        return;
    };
    let ledger = RedisLedger::new(redis.conn("d"), Budgets::single(1_000_000), key());
    let mut offers = Vec::new();
    for i in 0..50 {
        let session = format!("s{i}");
        let out = ledger
            .reserve(ReserveRequest {
                campaign: "default",
                session_id: &session,
                candidates: &[1_000],
                now_ms: NOW_MS,
                expires_at_ms: NOW_MS + 3_600_000,
                learning: false,
            })
            .await
            .unwrap();
        let ReserveOutcome::Reserved(o) = out else {
            panic!("{out:?}")
        };
        offers.push((session, o));
    }
    let dir = redis.crash();
    // While Redis is down: an error (no voucher), not a hang or a panic.
    assert!(ledger.snapshot("default", NOW_MS).await.is_err());
    let _redis = start(dir, &durable).unwrap();
    // The same ledger (connection manager) reconnects by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger.snapshot("default", NOW_MS).await.is_err() {
        assert!(Instant::now() < deadline, "no reconnect after a restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (session, o) in &offers {
        assert_eq!(
            ledger.offer_for("default", session).await.unwrap().as_ref(),
            Some(o)
        );
    }
    let snap = ledger.snapshot("default", NOW_MS).await.unwrap();
    assert_eq!((snap.reserved_cents, snap.offers), (50_000, 50));
    let again = ledger
        .reserve(ReserveRequest {
            campaign: "default",
            session_id: "s0",
            candidates: &[1_000],
            now_ms: NOW_MS,
            expires_at_ms: NOW_MS + 3_600_000,
            learning: false,
        })
        .await
        .unwrap();
    assert_eq!(again, ReserveOutcome::AlreadyOffered(offers[0].1.clone()));
}

/// Two replicas share one Redis; sessions decide on one replica and redeem
/// and report their outcome on the other. `nudge report --log-dir` over a
/// folder holding both replicas' logs joins every decision to the shared
/// outcomes and redemptions: the report counts every session once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_joins_the_logs_of_two_replicas() {
    let Some(redis) = redis_server() else { return };
    let url = redis.settings("x").url;
    let toml = format!(
        "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n[redis]\nurl = \"{url}\"\nkey_prefix = \"report\"\n[budget]\ndaily_cap_cents = 1000000\n[experiment]\nholdout_share = 0.5\nexplore_share = 0.0\n"
    );
    let mut a = util::start(
        util::settings(&toml),
        util::fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut b = util::start(
        util::settings(&toml),
        util::fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut clients = [a.client().await, b.client().await];
    let (mut treated, mut held, mut cost, mut conversions) = (0u64, 0u64, 0i64, 0u64);
    for i in 0..40usize {
        let session = format!("r{i}");
        let r = clients[i % 2]
            .decide(decide(&session, hesitant_session(20_000)))
            .await
            .unwrap()
            .into_inner();
        let other = &mut clients[(i + 1) % 2];
        let buys = i % 3 != 0;
        if r.holdout {
            held += 1;
        } else {
            treated += 1;
            let offer = r.offer.expect("treated sessions get the offer");
            if buys {
                let red = other
                    .redeem(pb::RedeemRequest {
                        voucher_code: offer.voucher_code,
                        session_id: session.clone(),
                        order_value_cents: 20_000,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(red.status, pb::RedeemStatus::Accepted as i32);
                cost += red.discount_cents;
            }
        }
        conversions += u64::from(buys);
        other
            .record_outcome(pb::RecordOutcomeRequest {
                session_id: session,
                converted: buys,
                order_value_cents: if buys { 20_000 } else { 0 },
            })
            .await
            .unwrap();
    }
    a.shutdown().await;
    b.shutdown().await;
    let merged = tempfile::tempdir().unwrap();
    for (name, s) in [("a", &a), ("b", &b)] {
        let to = merged.path().join(name);
        std::fs::create_dir(&to).unwrap();
        for f in std::fs::read_dir(s.data.path().join("log")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let config = merged.path().join("nudge.toml");
    std::fs::write(&config, &toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["report", "--json", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(merged.path())
        .arg("--log-dir")
        .arg(merged.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: nudge::report::RoiReport = serde_json::from_slice(&out.stdout).unwrap();
    let total = &report.campaigns[0].total;
    assert_eq!(
        (total.treatment.sessions, total.holdout.sessions),
        (treated, held)
    );
    assert_eq!(
        total.treatment.conversions + total.holdout.conversions,
        conversions
    );
    assert_eq!(total.treatment.voucher_cost_cents, cost);
}
