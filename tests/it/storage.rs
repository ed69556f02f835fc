//! A full data disk under the ledger and the decision log: Decide keeps
//! answering (a score, no voucher, the ledger's unavailability as the
//! reason), no offer is sent that is not on disk, the budget holds, errors
//! are logged once per interval, and the service recovers by itself. File
//! modes of what the data directory holds.

use crate::decide::hesitant_session;
use crate::util::*;
use nudge::files::DiskFull;
use nudge::grpc::pb::{self, Reason};
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{Budgets, OfferState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

/// Every warning and error logged (level, message), from the test's thread
/// and the writer threads it started.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<(tracing::Level, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Lines {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        let level = *event.metadata().level();
        if level <= tracing::Level::WARN {
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push((level, m.0));
        }
    }
}

/// Captures what this thread, and the writer threads it starts, log.
fn capture() -> (Lines, tracing::subscriber::DefaultGuard) {
    // With a single subscriber registered, tracing decides whether a call
    // site is enabled from the subscriber of whichever thread reaches it
    // first (possibly none, for good); with a second one kept for the life
    // of the process it asks every registered subscriber.
    static KEEP: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    KEEP.get_or_init(|| tracing::Dispatch::new(tracing_subscriber::registry()));
    let lines = Lines::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));
    (lines, guard)
}

impl Lines {
    fn count(&self, needle: &str) -> usize {
        let lines = self.0.lock().unwrap();
        lines.iter().filter(|(_, m)| m.contains(needle)).count()
    }
    fn total(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

const CAP: i64 = 12_000;

fn config() -> nudge::config::Settings {
    settings(&format!(
        "[budget]\ndaily_cap_cents = {CAP}\n[pacing]\nenabled = false\n"
    ))
}

#[tokio::test]
async fn a_full_disk_answers_without_voucher_sends_no_undurable_offer_and_recovers_by_itself() {
    let (lines, _log) = capture();
    let disk = DiskFull::default();
    let data = tempfile::tempdir().unwrap();
    let mut s = start_with_disk(
        config(),
        fixture_model("flat_hesitant.json"),
        data,
        disk.clone(),
    )
    .await;
    let mut c = s.client().await;
    let mut sent: HashMap<String, pb::Offer> = HashMap::new();
    let mut next = 0;
    let mut ask = |c: &mut pb::offers_client::OffersClient<tonic::transport::Channel>| {
        next += 1;
        let id = format!("s{next}");
        let req = decide(&id, hesitant_session(20_000));
        let mut c = c.clone();
        async move { (id, c.decide(req).await.unwrap().into_inner()) }
    };

    // Healthy: offers.
    for _ in 0..3 {
        let (id, r) = ask(&mut c).await;
        assert_eq!(reason(&r), Reason::Offered, "{r:?}");
        sent.insert(id, r.offer.unwrap());
    }
    let first = sent.keys().next().unwrap().clone();

    // The disk fills up (after what was logged reached it): every Decide
    // still answers, with a score, no voucher and the ledger's
    // unavailability as the reason.
    s.engine.log.flush().await;
    disk.set(true);
    let errors_before = lines.total();
    for _ in 0..200 {
        let (_, r) = ask(&mut c).await;
        assert_eq!(reason(&r), Reason::BudgetUnavailable, "{r:?}");
        assert!(r.offer.is_none());
        assert!(r.purchase_probability > 0.0);
    }
    // A session that holds an offer still sees it.
    let again = c
        .decide(decide(&first, hesitant_session(20_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&again), Reason::AlreadyOffered);
    assert_eq!(again.offer.as_ref(), sent.get(&first));
    // Memory agrees with the disk: only what was sent is reserved.
    let sent_cents =
        |sent: &HashMap<String, pb::Offer>| -> i64 { sent.values().map(|o| o.amount_cents).sum() };
    let budget = c.budget(pb::BudgetRequest::default()).await.unwrap();
    assert_eq!(budget.into_inner().reserved_cents, sent_cents(&sent));
    s.engine.log.flush().await;
    assert!(
        s.engine.log.dropped() >= 200,
        "records dropped on a full disk"
    );
    // Errors: once per interval with a count, not once per request.
    let outage_lines = lines.total() - errors_before;
    assert!(
        lines.count("ledger commit failed") >= 1 && lines.count("ledger commit failed") <= 3,
        "{:?}",
        lines.0.lock().unwrap()
    );
    assert!(
        (1..=3).contains(&lines.count("decision log write failed")),
        "{:?}",
        lines.0.lock().unwrap()
    );
    eprintln!(
        "full disk: 201 decisions, {} log records dropped, {outage_lines} warning/error lines",
        s.engine.log.dropped()
    );
    assert!(
        outage_lines <= 12,
        "{outage_lines} lines for 201 decisions: {:?}",
        lines.0.lock().unwrap()
    );

    // Space returns: offers resume by themselves, within the backoff.
    disk.set(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (id, r) = ask(&mut c).await;
        let why = reason(&r);
        if let Some(o) = r.offer {
            assert_eq!(why, Reason::Offered);
            sent.insert(id, o);
            break;
        }
        assert_eq!(why, Reason::BudgetUnavailable);
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(lines.count("ledger storage recovered"), 1);
    // Spend the rest of the budget: never a cent over the cap.
    for _ in 0..100 {
        let (id, r) = ask(&mut c).await;
        match reason(&r) {
            Reason::Offered => {
                sent.insert(id, r.offer.unwrap());
            }
            Reason::BudgetExhausted => break,
            other => panic!("{other:?}: {r:?}"),
        }
    }
    let budget = c
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(budget.reserved_cents, sent_cents(&sent));
    assert!(budget.reserved_cents <= CAP);
    assert!(budget.remaining_cents < 2_000, "{budget:?}");
    s.shutdown().await;

    // After a restart the ledger file holds exactly the offers sent.
    let ledger = SqliteLedger::open(
        &s.data.path().join("ledger.sqlite3"),
        Budgets::single(CAP),
        nudge::domain::voucher::VoucherKey::from_secret(TEST_SECRET),
    )
    .unwrap();
    let rows = ledger.rows().await.unwrap();
    assert_eq!(rows.len(), sent.len());
    for r in &rows {
        let o = &sent[&r.session_id];
        assert_eq!((&r.code, r.amount_cents), (&o.voucher_code, o.amount_cents));
        assert_eq!(r.state, OfferState::Reserved);
    }
    let reserved: i64 = rows.iter().map(|r| r.amount_cents).sum();
    assert!(reserved <= CAP);
    // The decision log holds every offer sent (the disk was fine then).
    let log = nudge::decision_log::reader::read_dir(&s.data.path().join("log")).unwrap();
    let logged: std::collections::HashSet<String> = log
        .iter()
        .filter_map(|r| match r {
            nudge::decision_log::LogRecord::Decision(d) => d.voucher_code.clone(),
            _ => None,
        })
        .collect();
    for o in sent.values() {
        assert!(logged.contains(&o.voucher_code));
    }
}

#[cfg(unix)]
#[tokio::test]
async fn ledger_key_and_log_files_are_not_readable_by_others() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut s = start(config(), fixture_model("flat_hesitant.json")).await;
    let mut c = s.client().await;
    let r = c
        .decide(decide("m", hesitant_session(20_000)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reason(&r), Reason::Offered);
    s.engine.log.flush().await;
    let data = s.data.path().to_owned();
    let db = data.join(nudge::app::LEDGER_FILE);
    assert_eq!(mode(&db), 0o600);
    for side in ["ledger.sqlite3-wal", "ledger.sqlite3-shm"] {
        let p = data.join(side);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{side}");
        }
    }
    let mut logs = 0;
    for e in std::fs::read_dir(data.join("log")).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o640);
        logs += 1;
    }
    assert!(logs > 0);
    s.shutdown().await;
    // A ledger of an earlier build, readable by everyone, is tightened.
    nudge::files::set_mode(&db, 0o644).unwrap();
    let _ = SqliteLedger::open(
        &db,
        Budgets::single(CAP),
        nudge::domain::voucher::VoucherKey::random(),
    )
    .unwrap();
    assert_eq!(mode(&db), 0o600);

    // The generated voucher key is owner-only, and an existing one readable
    // by others is made so.
    let mut settings = config();
    settings.data_dir = data.clone();
    let key = data.join(nudge::app::VOUCHER_KEY_FILE);
    nudge::app::voucher_key(&settings, None).unwrap();
    assert_eq!(mode(&key), 0o600);
    nudge::files::set_mode(&key, 0o644).unwrap();
    nudge::app::voucher_key(&settings, None).unwrap();
    assert_eq!(mode(&key), 0o600);
}

/// The disk fills and frees again and again under concurrent reservations
/// and redemptions: every answered offer and redemption is on disk, nothing
/// on disk was refused to its caller, and the memory equals the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_disk_never_sets_memory_apart_from_the_file() {
    use nudge::ledger::{Ledger, RedeemOutcome, RedeemRequest, ReserveOutcome, ReserveRequest};
    const CAP: i64 = 1_000_000;
    let (lines, _log) = capture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let key = nudge::domain::voucher::VoucherKey::random();
    let disk = DiskFull::default();
    let ledger =
        SqliteLedger::open_with(&path, Budgets::single(CAP), key.clone(), disk.clone()).unwrap();
    // Full from the start, then flipped every 23rd operation.
    disk.set(true);
    let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..6 {
        let ledger = ledger.clone();
        let (disk, ops) = (disk.clone(), ops.clone());
        tasks.push(tokio::spawn(async move {
            // (session, offer, redeemed)
            let mut got: Vec<(String, nudge::ledger::Offer, bool)> = Vec::new();
            for i in 0..150 {
                if ops.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 23 == 22 {
                    disk.set(!disk.is_set());
                }
                let session = format!("t{t}-{i}");
                let r = ledger
                    .reserve(ReserveRequest {
                        campaign: "default",
                        session_id: &session,
                        candidates: &[500],
                        now_ms: NOW_MS,
                        expires_at_ms: NOW_MS + 3_600_000,
                        learning: false,
                    })
                    .await;
                if let Ok(ReserveOutcome::Reserved(o)) = r {
                    got.push((session, o, false));
                }
                // Redeem every third offer received so far.
                if let Some(g) = got.iter_mut().filter(|g| !g.2).nth(2) {
                    let r = ledger
                        .redeem(RedeemRequest {
                            code: &g.1.voucher_code,
                            session_id: &g.0,
                            order_value_cents: 20_000,
                            min_order_cents: 0,
                            now_ms: NOW_MS + 1,
                        })
                        .await;
                    if let Ok(RedeemOutcome::Accepted { .. }) = r {
                        g.2 = true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            got
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.extend(t.await.unwrap());
    }
    // Space returns for good: the next write after the backoff succeeds.
    disk.set(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = ledger
            .reserve(ReserveRequest {
                campaign: "default",
                session_id: "after",
                candidates: &[500],
                now_ms: NOW_MS,
                expires_at_ms: NOW_MS + 3_600_000,
                learning: false,
            })
            .await;
        if let Ok(ReserveOutcome::Reserved(o)) = r {
            got.push(("after".to_owned(), o, false));
            break;
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "flapping disk: {} of 900 reservations answered, {} redeemed",
        got.len(),
        got.iter().filter(|g| g.2).count()
    );
    let memory = ledger.rows().await.unwrap();
    let file = SqliteLedger::open(&path, Budgets::single(CAP), key)
        .unwrap()
        .rows()
        .await
        .unwrap();
    assert_eq!(memory, file, "memory equals the file");
    assert_eq!(file.len(), got.len(), "every row on disk was answered");
    let by_session: HashMap<_, _> = file.iter().map(|r| (r.session_id.clone(), r)).collect();
    for (session, offer, redeemed) in &got {
        let row = by_session[session];
        assert_eq!(row.code, offer.voucher_code);
        let want = if *redeemed {
            OfferState::Captured
        } else {
            OfferState::Reserved
        };
        assert_eq!(row.state, want, "{session}");
    }
    let committed: i64 = file.iter().map(|r| r.amount_cents).sum();
    assert!(committed <= CAP);
    // Thirty outages: a few lines, each with its count.
    for line in ["ledger commit failed", "ledger storage recovered"] {
        assert!(
            (1..=3).contains(&lines.count(line)),
            "{line}: {:?}",
            lines.0.lock().unwrap()
        );
    }
}

/// Decides per second with the disk healthy and full, on a ledger of 200,000
/// rows. A measurement, run by hand (the debug build's bookkeeping checks
/// walk the whole ledger on every reservation, hence the two settings):
/// `cargo test --config 'profile.dev.package.nudge.opt-level=2' --config
/// 'profile.dev.package.nudge.debug-assertions=false' --test it
/// storage::decide_rate -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn decide_rate_with_a_full_disk() {
    const ROWS: usize = 200_000;
    const CLIENTS: usize = 16;
    const WINDOW: Duration = Duration::from_secs(5);
    let data = tempfile::tempdir().unwrap();
    {
        // A large ledger from earlier days, as a long-running shop has.
        let l = SqliteLedger::open(
            &data.path().join("ledger.sqlite3"),
            Budgets::single(1),
            nudge::domain::voucher::VoucherKey::random(),
        )
        .unwrap();
        drop(l);
        let mut conn = rusqlite::Connection::open(data.path().join("ledger.sqlite3")).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..ROWS {
            tx.execute(
                "INSERT INTO offers (code, campaign, session_id, day, amount_cents, issued_ms, \
                 expires_ms, state) VALUES (?1, 'default', ?2, '2026-01-01', 500, 0, 1, 'voided')",
                rusqlite::params![format!("OLD{i:08}"), format!("old-{i}")],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let disk = DiskFull::default();
    let s = start_with_disk(
        settings("[budget]\ndaily_cap_cents = 1000000000\n[pacing]\nenabled = false\n"),
        fixture_model("flat_hesitant.json"),
        data,
        disk.clone(),
    )
    .await;
    let channel = s.channel().await;
    let run = |tag: &'static str, expect: Reason| {
        let channel = channel.clone();
        async move {
            let stop = Instant::now() + WINDOW;
            let mut tasks = Vec::new();
            for k in 0..CLIENTS {
                let mut c = pb::offers_client::OffersClient::new(channel.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        let req = decide(&format!("{tag}-{k}-{n}"), hesitant_session(20_000));
                        let r = c.decide(req).await.unwrap().into_inner();
                        assert_eq!(reason(&r), expect, "{r:?}");
                        n += 1;
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap();
            }
            total as f64 / WINDOW.as_secs_f64()
        }
    };
    let healthy = run("ok", Reason::Offered).await;
    disk.set(true);
    let full = run("full", Reason::BudgetUnavailable).await;
    disk.set(false);
    eprintln!(
        "decide rate on a {ROWS}-row ledger, {CLIENTS} clients: healthy {healthy:.0}/s, disk full {full:.0}/s ({:.0} %)",
        100.0 * full / healthy
    );
    s.stop().await;
}
