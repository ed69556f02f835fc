//! The Redis backends beyond the replica scenarios: the ledger answers as
//! the in-process core (differential), large batches, review regressions,
//! connection faults, the binary on Redis and TLS. Same harness as
//! `redis.rs` (a private `redis-server` per test, skipped without one
//! outside CI).

use crate::decide::hesitant_session;
use crate::redis::{engine_on, key, redis_server, start};
use crate::util::{self, decide, NOW_MS};
use nudge::engine::Reason;
use nudge::grpc::pb;
use nudge::grpc::validate;
use nudge::ledger::{Budgets, Ledger, ReserveOutcome, ReserveRequest};
use nudge::redis::{RedisConn, RedisLedger, RedisSessionStore, RedisSettings};
use nudge::store::SessionStore;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
fn two_campaigns() -> Budgets {
    let mut b = Budgets::single(3_000);
    let d = b.campaigns.get_mut("default").unwrap();
    d.total_cap_cents = Some(5_000);
    d.learning_cap_cents = 1_000;
    b.campaigns.insert(
        "spring".into(),
        nudge::ledger::CampaignBudget {
            daily_cap_cents: 1_500,
            total_cap_cents: None,
            learning_cap_cents: 1_500,
        },
    );
    b
}

/// Differential: the same random operations (reserve with mixed candidates,
/// main or learning, in two campaigns, daily, learning and lifetime caps,
/// day changes, redemptions by the right and the wrong session, below the
/// minimum and expired, voids) give the same answers, snapshots (learning
/// counters included) and captures (with their learning flag) from the
/// in-process core and from Redis. Codes differ (random nonces) and are
/// compared by role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ledger_answers_as_the_in_process_core() {
    use nudge::ledger::{MemoryLedger, RedeemRequest, MS_PER_DAY};
    use rand::{Rng, SeedableRng};
    let Some(redis) = redis_server() else { return };
    for seed in 0..100u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mem = MemoryLedger::new(two_campaigns(), key());
        let red = RedisLedger::new(redis.conn(&format!("d{seed}")), two_campaigns(), key());
        let mut now = NOW_MS;
        let mut codes: std::collections::HashMap<(String, String), (String, String)> =
            Default::default();
        let cands: [&[i64]; 4] = [
            &[2_000, 1_000, 500],
            &[500],
            &[1_000, 0, 500],
            &[2_500, 1_500],
        ];
        for step in 0..120 {
            let camp = if rng.random_bool(0.7) {
                "default"
            } else {
                "spring"
            };
            let sess = format!("s{}", rng.random_range(0..20));
            match rng.random_range(0..10) {
                0..=3 => {
                    let r = ReserveRequest {
                        campaign: camp,
                        session_id: &sess,
                        candidates: cands[rng.random_range(0..4)],
                        now_ms: now,
                        expires_at_ms: now + rng.random_range(1..6) * 3_600_000,
                        learning: rng.random_bool(0.5),
                    };
                    let (a, b) = (mem.reserve(r).await.unwrap(), red.reserve(r).await.unwrap());
                    let norm = |o: &ReserveOutcome| match o {
                        ReserveOutcome::Reserved(o) => {
                            format!("R{} {}", o.amount_cents, o.expires_at_ms)
                        }
                        ReserveOutcome::AlreadyOffered(o) => {
                            format!("A{} {}", o.amount_cents, o.expires_at_ms)
                        }
                        ReserveOutcome::Exhausted { remaining_cents } => {
                            format!("E{remaining_cents}")
                        }
                        ReserveOutcome::LearningExhausted {
                            remaining_cents,
                            learning_remaining_cents,
                        } => format!("L{remaining_cents} {learning_remaining_cents}"),
                    };
                    assert_eq!(norm(&a), norm(&b), "seed {seed} step {step}");
                    if let (ReserveOutcome::Reserved(x), ReserveOutcome::Reserved(y)) = (&a, &b) {
                        codes.insert(
                            (camp.into(), sess.clone()),
                            (x.voucher_code.clone(), y.voucher_code.clone()),
                        );
                    }
                }
                4..=6 => {
                    let keys: Vec<_> = codes.keys().cloned().collect();
                    if keys.is_empty() {
                        continue;
                    }
                    let k = &keys[rng.random_range(0..keys.len())];
                    let by = if rng.random_bool(0.15) {
                        sess.clone()
                    } else {
                        k.1.clone()
                    };
                    let order = rng.random_range(0..20_000);
                    let (cm, cr) = codes[k].clone();
                    let req = |code| RedeemRequest {
                        code,
                        session_id: &by,
                        order_value_cents: order,
                        min_order_cents: 9_900,
                        now_ms: now,
                    };
                    assert_eq!(
                        mem.redeem(req(&cm)).await.unwrap(),
                        red.redeem(req(&cr)).await.unwrap(),
                        "seed {seed} step {step}"
                    );
                }
                7 => now += rng.random_range(0..4) * 3_600_000 + rng.random_range(0..2),
                8 => now += rng.random_range(0..2) * MS_PER_DAY / 2,
                _ => assert_eq!(
                    mem.void_expired(now).await.unwrap(),
                    red.void_expired(now).await.unwrap(),
                    "void seed {seed} step {step}"
                ),
            }
            for c in ["default", "spring"] {
                assert_eq!(
                    mem.snapshot(c, now).await.unwrap(),
                    red.snapshot(c, now).await.unwrap(),
                    "snapshot seed {seed} step {step}"
                );
            }
        }
        let strip = |v: Vec<nudge::ledger::Captured>| {
            let mut v: Vec<_> = v
                .into_iter()
                .map(|c| {
                    (
                        c.captured_ms,
                        c.session_id,
                        c.campaign,
                        c.amount_cents,
                        c.learning,
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            strip(mem.captured(0).await.unwrap()),
            strip(red.captured(0).await.unwrap()),
            "captured seed {seed}"
        );
    }
}

/// More expired offers than one void script handles (500): every one is
/// voided, in batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voids_more_offers_than_one_batch() {
    let Some(redis) = redis_server() else { return };
    let l = RedisLedger::new(redis.conn("v"), Budgets::single(100_000_000), key());
    for i in 0..1_234 {
        let s = format!("s{i}");
        let r = l
            .reserve(ReserveRequest {
                campaign: "default",
                session_id: &s,
                candidates: &[500],
                now_ms: NOW_MS,
                expires_at_ms: NOW_MS + 3_600_000,
                learning: false,
            })
            .await
            .unwrap();
        assert!(matches!(r, ReserveOutcome::Reserved(_)));
    }
    assert_eq!(l.void_expired(NOW_MS + 3_600_000).await.unwrap(), 1_234);
    assert_eq!(
        l.snapshot("default", NOW_MS).await.unwrap().reserved_cents,
        0
    );
}

/// Regression (review): Redis minted every candidate before the budget
/// check, so an amount the code cannot carry failed a reservation that the
/// in-process core answers from the next candidate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmintable_candidate_is_skipped_as_in_the_core() {
    use nudge::ledger::MemoryLedger;
    let Some(redis) = redis_server() else { return };
    let mem = MemoryLedger::new(Budgets::single(1_000), key());
    let red = RedisLedger::new(redis.conn("u"), Budgets::single(1_000), key());
    let r = ReserveRequest {
        campaign: "default",
        session_id: "x",
        candidates: &[30_000, 500],
        now_ms: NOW_MS,
        expires_at_ms: NOW_MS + 3_600_000,
        learning: false,
    };
    let (a, b) = (mem.reserve(r).await.unwrap(), red.reserve(r).await.unwrap());
    assert!(
        matches!(b, ReserveOutcome::Reserved(ref o) if o.amount_cents == 500),
        "{b:?}"
    );
    assert!(matches!(a, ReserveOutcome::Reserved(ref o) if o.amount_cents == 500));
    // Asked again with an odd amount: the offer it holds, as in the core.
    let again = ReserveRequest {
        candidates: &[150],
        ..r
    };
    assert!(matches!(
        mem.reserve(again).await.unwrap(),
        ReserveOutcome::AlreadyOffered(_)
    ));
    assert!(matches!(
        red.reserve(again).await.unwrap(),
        ReserveOutcome::AlreadyOffered(_)
    ));
}

/// Regression (review): a stored session that does not parse failed every
/// request of that session until the key expired; now it starts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_session_starts_afresh() {
    let Some(redis) = redis_server() else { return };
    let store = RedisSessionStore::new(redis.conn("c"), Duration::from_secs(60));
    let client = redis::Client::open(redis.settings("c").url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("{c}:sess:z")
        .arg("{\"state\":{}}")
        .query_async(&mut con)
        .await
        .unwrap();
    let got = store.get_many(&["nope", "z"], NOW_MS).await.unwrap();
    assert_eq!((got[0].is_none(), got[1].is_none()), (true, true));
    let ev = [nudge::domain::session::Event {
        at_ms: NOW_MS,
        kind: nudge::domain::session::EventKind::Interaction {
            signal: nudge::domain::session::Signal::ImageZoom,
        },
    }];
    let s = store
        .apply(
            "z",
            nudge::store::SessionUpdate {
                context: None,
                events: &ev,
                now_ms: NOW_MS,
            },
        )
        .await
        .unwrap();
    assert_eq!(s.events, 1);
}

/// A Redis that accepts connections and never answers: each Decide still
/// answers (score, no voucher) within a few timeouts, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_redis_costs_a_bounded_wait() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in listener.incoming() {
            keep.push(s);
        }
    });
    let settings = RedisSettings {
        url: format!("redis://{addr}/0"),
        key_prefix: "silent".into(),
        timeout: Duration::from_millis(200),
        tls_ca_file: None,
    };
    let conn = RedisConn::new(&settings).unwrap();
    let e = engine_on(
        Arc::new(RedisSessionStore::new(
            conn.clone(),
            Duration::from_secs(60),
        )),
        Arc::new(RedisLedger::new(conn, Budgets::single(100_000), key())),
    );
    for i in 0..3 {
        let req = decide(&format!("f{i}"), hesitant_session(20_000));
        let started = Instant::now();
        let d = e
            .decide(validate::decide(&req, &e.limits, NOW_MS).unwrap())
            .await
            .unwrap();
        assert_eq!(d.reason, Reason::SessionStoreUnavailable);
        assert!(d.offer.is_none());
        assert!(
            started.elapsed() < Duration::from_millis(1_500),
            "decide {i} took {:?}",
            started.elapsed()
        );
    }
}

/// Many connections (replicas) updating one session concurrently: no
/// update is lost and none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_through_several_connections_are_never_lost() {
    let Some(redis) = redis_server() else { return };
    let stores: Vec<Arc<RedisSessionStore>> = (0..4)
        .map(|_| {
            Arc::new(RedisSessionStore::new(
                redis.conn("cc"),
                Duration::from_secs(60),
            ))
        })
        .collect();
    let n = 300;
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = stores[i % 4].clone();
        tasks.push(tokio::spawn(async move {
            let ev = [nudge::domain::session::Event {
                at_ms: NOW_MS + i as i64,
                kind: nudge::domain::session::EventKind::Interaction {
                    signal: nudge::domain::session::Signal::ImageZoom,
                },
            }];
            s.apply(
                "hot",
                nudge::store::SessionUpdate {
                    context: None,
                    events: &ev,
                    now_ms: NOW_MS,
                },
            )
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = stores[0].get_many(&["hot"], NOW_MS).await.unwrap();
    assert_eq!(got[0].as_ref().map(|s| s.events), Some(n as u32));
}

/// Zeroes the server's command counts (`CONFIG RESETSTAT`).
async fn reset_stats(con: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(con)
        .await
        .unwrap();
}

/// Commands the server ran since the last reset, by name (sorted), without the
/// `INFO` and `CONFIG` that ask.
async fn calls_since_reset(con: &mut redis::aio::MultiplexedConnection) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            let asking = name == "info" || name.starts_with("config");
            (!asking).then(|| (name.to_owned(), calls))
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect()
}

/// One image zoom on `session` through `store`; the session's event count.
async fn zoom(store: &RedisSessionStore, session: &str, i: i64) -> u32 {
    let ev = [nudge::domain::session::Event {
        at_ms: NOW_MS + i,
        kind: nudge::domain::session::EventKind::Interaction {
            signal: nudge::domain::session::Signal::ImageZoom,
        },
    }];
    let update = nudge::store::SessionUpdate {
        context: None,
        events: &ev,
        now_ms: NOW_MS,
    };
    store.apply(session, update).await.unwrap().events
}

/// A session update is one round trip: a replica folds onto the value it
/// last wrote and sends the write at once. When another replica wrote in
/// between, or the value was changed behind its back, the refused write
/// brings the current value back, the fold is redone on it, and nothing is
/// lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_update_is_one_round_trip_and_a_stale_guess_loses_nothing() {
    let Some(redis) = redis_server() else { return };
    let a = RedisSessionStore::new(redis.conn("rt"), Duration::from_secs(60));
    let b = RedisSessionStore::new(redis.conn("rt"), Duration::from_secs(60));
    let client = redis::Client::open(redis.settings("rt").url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Loads the script once, so that what follows counts only updates.
    assert_eq!(zoom(&a, "warm", 0).await, 1);
    reset_stats(&mut con).await;
    for i in 0..10 {
        assert_eq!(zoom(&a, "s", i).await, i as u32 + 1);
    }
    // Redis counts the script's own GET and SET too; a separate read
    // before each script would show as twenty GETs.
    assert_eq!(
        calls_since_reset(&mut con).await,
        vec![
            ("evalsha".to_owned(), 10),
            ("get".to_owned(), 10),
            ("set".to_owned(), 10)
        ],
        "ten updates of one session by one replica: ten scripts, no reads"
    );
    // Another replica's write: a's next guess is stale and costs a trip.
    assert_eq!(zoom(&b, "s", 10).await, 11);
    assert_eq!(zoom(&a, "s", 11).await, 12);
    // Changed behind every replica's back: deleted, then rewritten.
    let _: () = redis::cmd("DEL")
        .arg("{rt}:sess:s")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(zoom(&a, "s", 12).await, 1);
    assert_eq!(zoom(&b, "s", 13).await, 2);
    assert_eq!(zoom(&a, "s", 14).await, 3);
    let got = b.get_many(&["s"], NOW_MS).await.unwrap();
    assert_eq!(got[0].as_ref().map(|s| s.events), Some(3));
}

/// The binary with a Redis config: refuses to start without a shared
/// voucher secret (saying which), and with one serves decisions on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_on_redis_only_with_a_shared_secret() {
    let Some(redis) = redis_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"bin\"\n",
            dir.path().join("data"),
            redis.settings("bin").url
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .env_remove("NUDGE_VOUCHER_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NUDGE_VOUCHER_SECRET"), "{err}");

    let (mut child, addr) = util::spawn_nudge(
        &["--config".as_ref(), config.as_os_str()],
        &[(
            "NUDGE_VOUCHER_SECRET",
            "binary test secret, not for production",
        )],
    );
    let mut c = pb::offers_client::OffersClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let r = c
        .decide(decide(
            "bin-1",
            util::on_system_clock(hesitant_session(20_000)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(util::reason(&r), pb::Reason::BudgetUnavailable, "{r:?}");
    assert_ne!(
        util::reason(&r),
        pb::Reason::SessionStoreUnavailable,
        "{r:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// TLS (`rediss://`): a private `redis-server` with a certificate signed by
/// a throw-away CA (made with the `openssl` CLI). With `tls_ca_file` the
/// ledger works over TLS; trusting only the system's roots, the same
/// server is refused (no voucher, not a panic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if !crate::tls::test_certificates(d) {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let tls = tempfile::tempdir().unwrap();
    let path = |f: &str| d.join(f).display().to_string();
    let Some(_redis) = start(
        tls,
        &[
            "--appendonly",
            "no",
            "--tls-port",
            &port,
            "--tls-cert-file",
            &path("server.crt"),
            "--tls-key-file",
            &path("server.key"),
            "--tls-ca-cert-file",
            &path("ca.crt"),
            "--tls-auth-clients",
            "no",
        ],
    ) else {
        return;
    };
    let settings = |ca: Option<PathBuf>| RedisSettings {
        url: format!("rediss://127.0.0.1:{port}/0"),
        key_prefix: "tls".into(),
        timeout: Duration::from_secs(2),
        tls_ca_file: ca,
    };
    let ledger = RedisLedger::new(
        RedisConn::new(&settings(Some(d.join("ca.crt")))).unwrap(),
        Budgets::single(1_000),
        key(),
    );
    let req = ReserveRequest {
        campaign: "default",
        session_id: "tls",
        candidates: &[500],
        now_ms: NOW_MS,
        expires_at_ms: NOW_MS + 3_600_000,
        learning: false,
    };
    // The server may still be opening its TLS port.
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        match ledger.reserve(req).await {
            Ok(o) => break o,
            Err(e) => {
                assert!(Instant::now() < deadline, "no TLS connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(matches!(out, ReserveOutcome::Reserved(_)), "{out:?}");
    assert_eq!(
        ledger
            .snapshot("default", NOW_MS)
            .await
            .unwrap()
            .reserved_cents,
        500
    );
    let untrusting = RedisLedger::new(
        RedisConn::new(&settings(None)).unwrap(),
        Budgets::single(1_000),
        key(),
    );
    assert!(untrusting.snapshot("default", NOW_MS).await.is_err());
}
