//! Sessions and money in separate Redis instances (`sessions.redis_url`): a
//! flood of new session ids fills the sessions' instance (`noeviction`) or
//! churns it (`allkeys-lru`), and money keeps working on its own instance.
//! Same harness as `redis.rs` (a private `redis-server` per role, skipped
//! without one outside CI). Each flood prints its figures (sessions/s,
//! refusals); `cargo test --test it redis_flood -- --nocapture` shows them.

use crate::decide::hesitant_session;
use crate::redis::{redis_server, start, RedisServer};
use crate::util::{self, decide, TestServer};
use nudge::grpc::pb;
use nudge::grpc::pb::offers_client::OffersClient;
use nudge::redis::{check_instances, Finding};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

/// Small enough that a few thousand sessions fill it.
const SESSIONS_MAXMEMORY: &str = "2mb";
const CAP_CENTS: i64 = 20_000;
/// New session ids in one flood (each a Track and a Decide).
const FLOOD: usize = 4_000;
const CONCURRENCY: usize = 8;

fn sessions_instance(policy: &str) -> Option<RedisServer> {
    start(
        tempfile::tempdir().unwrap(),
        &[
            "--appendonly",
            "no",
            "--maxmemory",
            SESSIONS_MAXMEMORY,
            "--maxmemory-policy",
            policy,
        ],
    )
}

/// A server with its ledger on `money` and its sessions on `sessions`; a
/// generous Redis timeout, so that a slow machine is not taken for a full
/// instance.
async fn shop(money: &RedisServer, sessions: &RedisServer) -> TestServer {
    let toml = format!(
        "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\nredis_url = \"{}\"\n[redis]\nurl = \"{}\"\nkey_prefix = \"flood\"\ntimeout_ms = 5000\n[budget]\ndaily_cap_cents = {CAP_CENTS}\n",
        sessions.settings("x").url,
        money.settings("x").url,
    );
    util::start(
        util::settings(&toml),
        util::fixture_model("flat_hesitant.json"),
    )
    .await
}

/// One line of `INFO <section>` as a number.
async fn info(server: &RedisServer, section: &str, field: &str) -> u64 {
    let client = ::redis::Client::open(server.settings("x").url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let text: String = ::redis::cmd("INFO")
        .arg(section)
        .query_async(&mut con)
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
}

#[derive(Debug, Default)]
struct Flood {
    tracks_refused: usize,
    scored_alone: usize,
    offered_cents: i64,
    elapsed: Duration,
}

impl Flood {
    fn add(&mut self, other: Flood) {
        self.tracks_refused += other.tracks_refused;
        self.scored_alone += other.scored_alone;
        self.offered_cents += other.offered_cents;
    }

    fn print(&self, what: &str) {
        eprintln!(
            "{what}: {FLOOD} new sessions (a track and a decide each) in {:.2} s = {:.0} sessions/s; tracks refused {}, decisions scored on their own events {}, vouchers {} cents",
            self.elapsed.as_secs_f64(),
            FLOOD as f64 / self.elapsed.as_secs_f64(),
            self.tracks_refused,
            self.scored_alone,
            self.offered_cents,
        );
    }
}

/// `FLOOD` new sessions, each a Track (its first events) and a Decide (the
/// rest), from `CONCURRENCY` tasks. Every Decide must answer with a score;
/// a refused Track must be UNAVAILABLE naming the session store. The real
/// binary runs on the system clock, so its events are moved to it.
async fn flood(channel: Channel, tag: &str, system_clock: bool) -> Flood {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..CONCURRENCY {
        let mut client = OffersClient::new(channel.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut f = Flood::default();
            let mut events = hesitant_session(20_000);
            if system_clock {
                events = util::on_system_clock(events);
            }
            let (first, rest) = events.split_at(3);
            for i in (t..FLOOD).step_by(CONCURRENCY) {
                let session = format!("{tag}{i}");
                let track = client
                    .track(pb::TrackRequest {
                        session_id: session.clone(),
                        context: decide(&session, vec![]).context,
                        events: first.to_vec(),
                        ..Default::default()
                    })
                    .await;
                if let Err(s) = track {
                    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
                    assert!(s.message().contains("session store"), "{s:?}");
                    f.tracks_refused += 1;
                }
                let d = client
                    .decide(decide(&session, rest.to_vec()))
                    .await
                    .expect("decide answers during a flood")
                    .into_inner();
                assert!(
                    d.purchase_probability > 0.0 && d.purchase_probability < 1.0,
                    "{d:?}"
                );
                if util::reason(&d) == pb::Reason::SessionStoreUnavailable {
                    assert!(d.offer.is_none(), "{d:?}");
                    f.scored_alone += 1;
                }
                if let Some(o) = &d.offer {
                    if util::reason(&d) == pb::Reason::Offered {
                        f.offered_cents += o.amount_cents;
                    }
                }
            }
            f
        }));
    }
    let mut total = Flood::default();
    for t in tasks {
        total.add(t.await.unwrap());
    }
    total.elapsed = started.elapsed();
    total
}

/// A voucher offered before the flood; returns its code and amount.
async fn offer_before(server: &TestServer) -> (String, i64) {
    let d = server
        .client()
        .await
        .decide(decide("before", hesitant_session(20_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(util::reason(&d), pb::Reason::Offered, "{d:?}");
    let o = d.offer.unwrap();
    (o.voucher_code, o.amount_cents)
}

/// After a flood: the voucher offered before it redeems, Budget answers,
/// and the ledger holds exactly the vouchers answered, within the cap.
async fn money_still_works(server: &TestServer, code: String, amount: i64, flood: &Flood) {
    let mut c = server.client().await;
    let r = c
        .redeem(pb::RedeemRequest {
            voucher_code: code,
            session_id: "before".into(),
            order_value_cents: 20_000,
        })
        .await
        .expect("redeem works while sessions are flooded")
        .into_inner();
    assert_eq!(r.status, pb::RedeemStatus::Accepted as i32, "{r:?}");
    assert_eq!(r.discount_cents, amount);
    let b = c
        .budget(pb::BudgetRequest::default())
        .await
        .expect("budget works while sessions are flooded")
        .into_inner();
    assert!(b.reserved_cents + b.captured_cents <= CAP_CENTS, "{b:?}");
    assert_eq!(b.captured_cents, amount, "{b:?}");
    assert_eq!(b.reserved_cents, flood.offered_cents, "{b:?}");
    assert_eq!(b.remaining_cents, CAP_CENTS - amount - flood.offered_cents);
}

/// Regression: with `noeviction` a flood of new session ids filled Redis,
/// and with sessions in the ledger's instance every offer and redemption
/// failed with it. Sessions on their own full instance: Track is refused
/// as UNAVAILABLE naming the session store, Decide scores the request's
/// own events (no voucher, the reason says why), money is untouched; once
/// memory is freed (as when the sessions expire) tracking resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_flood_on_a_full_instance_leaves_money_working() {
    let Some(money) = redis_server() else { return };
    let Some(sessions) = sessions_instance("noeviction") else {
        return;
    };
    let server = shop(&money, &sessions).await;
    let (code, amount) = offer_before(&server).await;
    let f = flood(server.channel().await, "full", false).await;
    f.print("noeviction, 2 MB");
    assert!(f.tracks_refused > 0, "the sessions' instance filled: {f:?}");
    assert!(f.scored_alone > 0, "{f:?}");
    assert_eq!(info(&sessions, "stats", "evicted_keys").await, 0);
    money_still_works(&server, code, amount, &f).await;

    let client = ::redis::Client::open(sessions.settings("x").url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("FLUSHALL")
        .query_async(&mut con)
        .await
        .unwrap();
    let t = server
        .client()
        .await
        .track(pb::TrackRequest {
            session_id: "after".into(),
            events: hesitant_session(20_000),
            ..Default::default()
        })
        .await
        .expect("tracking resumes once memory is freed")
        .into_inner();
    assert_eq!(t.session_events, 7);
    server.stop().await;
}

/// The recommended set-up: sessions on an `allkeys-lru` instance with a
/// `maxmemory`. The same flood evicts old sessions instead: nothing is
/// refused, every decision sees its session, money is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_flood_on_an_lru_instance_evicts_old_sessions() {
    let Some(money) = redis_server() else { return };
    let Some(sessions) = sessions_instance("allkeys-lru") else {
        return;
    };
    let server = shop(&money, &sessions).await;
    let (code, amount) = offer_before(&server).await;
    let f = flood(server.channel().await, "lru", false).await;
    f.print("allkeys-lru, 2 MB");
    assert_eq!((f.tracks_refused, f.scored_alone), (0, 0), "{f:?}");
    let evicted = info(&sessions, "stats", "evicted_keys").await;
    eprintln!("allkeys-lru, 2 MB: {evicted} sessions evicted");
    assert!(evicted > 0, "the flood outgrew the instance");
    money_still_works(&server, code, amount, &f).await;
    assert_eq!(
        info(&money, "stats", "evicted_keys").await,
        0,
        "money is never evicted"
    );
    server.stop().await;
}

/// One instance for both under `volatile-lru`: only session keys have a
/// TTL, so the flood evicts sessions and never money.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn session_flood_on_a_shared_volatile_lru_instance_evicts_sessions_only() {
    let Some(shared) = sessions_instance("volatile-lru") else {
        return;
    };
    let server = shop(&shared, &shared).await;
    let (code, amount) = offer_before(&server).await;
    let f = flood(server.channel().await, "shared", false).await;
    f.print("one instance, volatile-lru, 2 MB");
    assert_eq!((f.tracks_refused, f.scored_alone), (0, 0), "{f:?}");
    assert!(info(&shared, "stats", "evicted_keys").await > 0);
    money_still_works(&server, code, amount, &f).await;
    server.stop().await;
}

/// What the service warns about at start, read from real instances:
/// nothing for the recommended set-up; sessions in the ledger's instance
/// (found by its run id, whatever the URL); a sessions' instance that
/// never evicts or has no memory bound; a ledger that does not fsync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_check_names_risky_instances() {
    let durable = ["--appendonly", "yes", "--appendfsync", "always"];
    let Some(money) = start(tempfile::tempdir().unwrap(), &durable) else {
        return;
    };
    let Some(lru) = sessions_instance("allkeys-lru") else {
        return;
    };
    let Some(full) = sessions_instance("noeviction") else {
        return;
    };
    let Some(plain) = redis_server() else { return };
    let ledger = money.conn("c");
    assert_eq!(
        check_instances(&ledger, Some(&lru.conn("c")), false).await,
        vec![]
    );
    assert_eq!(check_instances(&ledger, None, false).await, vec![]);
    assert_eq!(
        check_instances(&ledger, Some(&money.conn("sessions")), false).await,
        vec![Finding::SessionsShareLedger {
            policy: "noeviction".into()
        }]
    );
    assert_eq!(
        check_instances(&ledger, Some(&full.conn("c")), false).await,
        vec![Finding::SessionsNeverEvict]
    );
    assert_eq!(
        check_instances(&plain.conn("c"), Some(&plain.conn("c")), true).await,
        vec![
            Finding::LedgerNotFsynced {
                appendonly: "no".into(),
                appendfsync: "everysec".into()
            },
            Finding::SessionsShareLedger {
                policy: "noeviction".into()
            }
        ]
    );
    assert_eq!(
        check_instances(&lru.conn("c"), Some(&plain.conn("c")), false).await,
        vec![
            Finding::LedgerMayEvict {
                policy: "allkeys-lru".into()
            },
            Finding::LedgerNotFsynced {
                appendonly: "no".into(),
                appendfsync: "everysec".into()
            },
            Finding::SessionsNeverEvict,
            Finding::SessionsUnbounded,
        ]
    );
}

/// Regression: every Decide on a failing session store logged a warning, so
/// a flood wrote a line per request. The binary with its sessions on a full
/// instance: the flood is logged once per 10 s with its count, and the
/// start-up names the sessions' instance that does not evict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_logs_a_session_flood_once_per_interval() {
    let Some(money) = redis_server() else { return };
    let Some(sessions) = sessions_instance("noeviction") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\nredis_url = \"{}\"\n[redis]\nurl = \"{}\"\ntimeout_ms = 5000\n",
            dir.path().join("data"),
            sessions.settings("x").url,
            money.settings("x").url,
        ),
    )
    .unwrap();
    let (mut child, addr, mut logs) = util::spawn_nudge_with_logs(
        &["--config".as_ref(), config.as_os_str()],
        &[("NUDGE_VOUCHER_SECRET", util::TEST_SECRET)],
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let f = flood(channel, "bin", true).await;
    f.print("binary, noeviction, 2 MB");
    let _ = child.kill();
    let _ = child.wait();
    let lines = logs.collect(Duration::from_secs(5));
    let down: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("session store unavailable"))
        .collect();
    eprintln!(
        "binary: {} session store failures logged in {} lines",
        f.tracks_refused + f.scored_alone,
        down.len()
    );
    assert!(f.tracks_refused > 0, "{f:?}");
    let most = 2 + f.elapsed.as_secs() / 10;
    assert!(
        !down.is_empty() && down.len() as u64 <= most,
        "{} lines for {} failures in {:?}: {down:#?}",
        down.len(),
        f.tracks_refused + f.scored_alone,
        f.elapsed
    );
    assert!(down[0].contains("count=1"), "{}", down[0]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("the sessions' redis instance does not evict")),
        "{lines:#?}"
    );
}
