//! One conformance suite for every `SessionStore` and `Ledger`
//! implementation: memory, SQLite and Redis, and the learning budget suite
//! for every ledger.

use crate::util::NOW_MS;
use nudge::domain::session::{Context, Device, Event, EventKind, Signal};
use nudge::domain::voucher::{self, VoucherKey};
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{
    Budgets, CampaignBudget, Ledger, MemoryLedger, RedeemOutcome, RedeemRequest, ReserveOutcome,
    ReserveRequest, DEFAULT_CAMPAIGN, MS_PER_DAY,
};
use nudge::redis::{RedisLedger, RedisSessionStore};
use nudge::store::{MemorySessionStore, SessionStore, SessionUpdate};
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(1_800);

fn sig(at_ms: i64) -> Event {
    Event {
        at_ms,
        kind: EventKind::Interaction {
            signal: Signal::ImageZoom,
        },
    }
}

fn upd(events: &[Event], now_ms: i64) -> SessionUpdate<'_> {
    SessionUpdate {
        context: None,
        events,
        now_ms,
    }
}

async fn session_store_suite(store: Arc<dyn SessionStore>) {
    // Creates on first use, folds events in order, keeps the context.
    let ctx = Context {
        device: Device::Mobile,
        ..Context::default()
    };
    let s = store
        .apply(
            "a",
            SessionUpdate {
                context: Some(ctx),
                events: &[sig(NOW_MS)],
                now_ms: NOW_MS,
            },
        )
        .await
        .unwrap();
    assert_eq!((s.events, s.context.device), (1, Device::Mobile));
    let s = store
        .apply("a", upd(&[sig(NOW_MS + 1), sig(NOW_MS + 2)], NOW_MS + 10))
        .await
        .unwrap();
    assert_eq!(s.events, 3);
    assert_eq!(
        s.context.device,
        Device::Mobile,
        "context kept when not sent"
    );
    assert_eq!(s.last_event_ms, NOW_MS + 2);

    // Batch read, unknown ids are None.
    let got = store.get_many(&["a", "nope"], NOW_MS + 10).await.unwrap();
    assert_eq!(got[0].as_ref().map(|s| s.events), Some(3));
    assert!(got[1].is_none());

    // Idle TTL: exactly TTL later still live, one ms more and it is gone.
    let ttl_ms = TTL.as_millis() as i64;
    assert!(store.get_many(&["a"], NOW_MS + 10 + ttl_ms).await.unwrap()[0].is_some());
    assert!(store.get_many(&["a"], NOW_MS + 11 + ttl_ms).await.unwrap()[0].is_none());
    let fresh = store
        .apply("a", upd(&[], NOW_MS + 11 + ttl_ms))
        .await
        .unwrap();
    assert_eq!(fresh.events, 0, "an expired session starts afresh");

    // Concurrent updates of one session are never lost.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let evs = [sig(NOW_MS + i)];
            store.apply("c", upd(&evs, NOW_MS)).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let c = store.get_many(&["c"], NOW_MS).await.unwrap();
    assert_eq!(c[0].as_ref().unwrap().events, 32);
}

pub(crate) fn budgets(daily: i64, total: Option<i64>) -> Budgets {
    let mut b = Budgets::single(daily);
    b.campaigns
        .get_mut(DEFAULT_CAMPAIGN)
        .unwrap()
        .total_cap_cents = total;
    b.campaigns.insert(
        "spring".into(),
        CampaignBudget {
            daily_cap_cents: 500,
            total_cap_cents: None,
            learning_cap_cents: 50,
        },
    );
    b
}

pub(crate) fn key() -> VoucherKey {
    VoucherKey::from_secret("conformance-suite secret")
}

pub(crate) fn req<'a>(
    campaign: &'a str,
    session: &'a str,
    candidates: &'a [i64],
    now_ms: i64,
) -> ReserveRequest<'a> {
    ReserveRequest {
        campaign,
        session_id: session,
        candidates,
        now_ms,
        expires_at_ms: now_ms + 3_600_000,
        learning: false,
    }
}

/// A learning (exploration) reservation.
pub(crate) fn learn<'a>(
    campaign: &'a str,
    session: &'a str,
    candidates: &'a [i64],
    now_ms: i64,
) -> ReserveRequest<'a> {
    ReserveRequest {
        learning: true,
        ..req(campaign, session, candidates, now_ms)
    }
}

pub(crate) fn redeem<'a>(
    code: &'a str,
    session: &'a str,
    order: i64,
    now_ms: i64,
) -> RedeemRequest<'a> {
    RedeemRequest {
        code,
        session_id: session,
        order_value_cents: order,
        min_order_cents: 9_900,
        now_ms,
    }
}

/// The behaviour every ledger must have. `make(daily, total)` builds a
/// fresh, empty ledger.
async fn ledger_suite(make: impl Fn(Budgets) -> Arc<dyn Ledger>) {
    let l = make(budgets(1_000, None));
    let d = "default";
    // Authorise: the first candidate that fits; one offer per session.
    let ReserveOutcome::Reserved(a) = l
        .reserve(req(d, "a", &[2_000, 1_000], NOW_MS))
        .await
        .unwrap()
    else {
        panic!("reserved")
    };
    assert_eq!(a.amount_cents, 1_000);
    assert!(
        voucher::verify(&key(), &a.voucher_code, "a").is_ok(),
        "codes verify"
    );
    assert!(
        matches!(l.reserve(req(d, "a", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::AlreadyOffered(ref o) if *o == a)
    );
    assert_eq!(
        l.reserve(req(d, "b", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
    assert_eq!(l.offer_for(d, "a").await.unwrap(), Some(a.clone()));
    assert!(l.offer_for(d, "b").await.unwrap().is_none());
    assert!(
        l.offer_for("spring", "a").await.unwrap().is_none(),
        "per campaign"
    );
    let snap = l.snapshot(d, NOW_MS).await.unwrap();
    assert_eq!(
        (
            snap.cap_cents,
            snap.reserved_cents,
            snap.captured_cents,
            snap.remaining_cents,
            snap.offers
        ),
        (1_000, 1_000, 0, 0, 1)
    );
    // Unknown campaign.
    assert!(l.reserve(req("nope", "x", &[500], NOW_MS)).await.is_err());

    // Capture: below minimum, wrong session, then exactly once.
    assert_eq!(
        l.redeem(redeem(&a.voucher_code, "a", 5_000, NOW_MS + 1))
            .await
            .unwrap(),
        RedeemOutcome::OrderBelowMinimum {
            min_order_cents: 9_900
        }
    );
    assert_eq!(
        l.redeem(redeem(&a.voucher_code, "b", 20_000, NOW_MS + 1))
            .await
            .unwrap(),
        RedeemOutcome::Invalid
    );
    assert_eq!(
        l.redeem(redeem("0000-0000-0000-0000", "a", 20_000, NOW_MS + 1))
            .await
            .unwrap(),
        RedeemOutcome::Invalid
    );
    assert_eq!(
        l.redeem(redeem(&a.voucher_code, "a", 20_000, NOW_MS + 2))
            .await
            .unwrap(),
        RedeemOutcome::Accepted {
            discount_cents: 1_000,
            replayed: false,
        }
    );
    crate::store_rules::redeem_replay(&*l, &a.voucher_code, NOW_MS + 2).await;
    let snap = l.snapshot(d, NOW_MS + 3).await.unwrap();
    assert_eq!(
        (
            snap.reserved_cents,
            snap.captured_cents,
            snap.remaining_cents
        ),
        (0, 1_000, 0)
    );
    let cap = l.captured(0).await.unwrap();
    assert_eq!(cap.len(), 1);
    assert_eq!(
        l.captured(NOW_MS + 2).await.unwrap(),
        cap,
        "since is inclusive"
    );
    assert!(l.captured(NOW_MS + 3).await.unwrap().is_empty());
    assert_eq!(
        (cap[0].session_id.as_str(), cap[0].amount_cents),
        ("a", 1_000)
    );

    // Void: an expired reserve is released; a late redemption is EXPIRED.
    let ReserveOutcome::Reserved(s) = l.reserve(req("spring", "s", &[500], NOW_MS)).await.unwrap()
    else {
        panic!("reserved")
    };
    assert_eq!(
        l.snapshot("spring", NOW_MS).await.unwrap().remaining_cents,
        0
    );
    assert_eq!(l.void_expired(NOW_MS + 3_599_999).await.unwrap(), 0);
    assert_eq!(l.void_expired(NOW_MS + 3_600_000).await.unwrap(), 1);
    assert_eq!(
        l.snapshot("spring", NOW_MS + 3_600_000)
            .await
            .unwrap()
            .remaining_cents,
        500
    );
    assert_eq!(
        l.redeem(redeem(&s.voucher_code, "s", 20_000, NOW_MS + 3_600_001))
            .await
            .unwrap(),
        RedeemOutcome::Expired
    );
    // Expired but not yet swept: redemption voids it on the spot.
    let ReserveOutcome::Reserved(t) = l
        .reserve(req("spring", "t", &[500], NOW_MS + 3_600_000))
        .await
        .unwrap()
    else {
        panic!("reserved")
    };
    assert_eq!(
        l.redeem(redeem(&t.voucher_code, "t", 20_000, NOW_MS + 7_200_000))
            .await
            .unwrap(),
        RedeemOutcome::Expired
    );
    assert_eq!(
        l.snapshot("spring", NOW_MS + 7_200_000)
            .await
            .unwrap()
            .reserved_cents,
        0
    );

    // A new day has a fresh daily cap; a lifetime cap still binds.
    let l2 = make(budgets(1_000, Some(1_500)));
    let next_day = NOW_MS + MS_PER_DAY;
    assert!(matches!(
        l2.reserve(req(d, "x", &[1_000], NOW_MS)).await.unwrap(),
        ReserveOutcome::Reserved(_)
    ));
    assert_eq!(
        l2.reserve(req(d, "y", &[1_000, 500], next_day))
            .await
            .unwrap(),
        ReserveOutcome::Reserved(l2.offer_for(d, "y").await.unwrap().unwrap())
    );
    assert_eq!(
        l2.offer_for(d, "y").await.unwrap().unwrap().amount_cents,
        500,
        "lifetime cap leaves 500"
    );
    assert!(matches!(
        l2.reserve(req(d, "z", &[500], next_day)).await.unwrap(),
        ReserveOutcome::Exhausted { .. }
    ));

    crate::store_rules::outcome_rule(&*l).await;
    crate::store_rules::reoffer_after_expiry(&make).await;

    // Zero cap: nothing is ever reserved.
    let z = make(budgets(0, None));
    assert_eq!(
        z.reserve(req(d, "a", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
}

/// `default`: 10,000 a day of which 1,500 learning; `spring`: 1,000 a day,
/// all of it usable for learning, lifetime 1,800.
fn learning_budgets() -> Budgets {
    let mut b = Budgets::single(10_000);
    b.campaigns
        .get_mut(DEFAULT_CAMPAIGN)
        .unwrap()
        .learning_cap_cents = 1_500;
    b.campaigns.insert(
        "spring".into(),
        CampaignBudget {
            daily_cap_cents: 1_000,
            total_cap_cents: Some(1_800),
            learning_cap_cents: 1_000,
        },
    );
    b
}

pub(crate) async fn code_of(l: &dyn Ledger, campaign: &str, session: &str) -> String {
    l.offer_for(campaign, session)
        .await
        .unwrap()
        .expect("an offer")
        .voucher_code
}

pub(crate) fn reserved_amount(o: ReserveOutcome) -> i64 {
    match o {
        ReserveOutcome::Reserved(o) => o.amount_cents,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// The learning budget, as every ledger must keep it: a learning
/// reservation fits both the learning and the main remainder, learning
/// money is main money too, release and void give it back, captures carry
/// the flag, a new day starts afresh, and concurrent learning reservations
/// never take a cent more than the learning cap.
async fn learning_budget_suite(make: impl Fn(Budgets) -> Arc<dyn Ledger>) {
    let l = make(learning_budgets());
    let d = DEFAULT_CAMPAIGN;
    // The learning cap is respected; the first candidate that fits both wins.
    assert_eq!(
        reserved_amount(l.reserve(learn(d, "a", &[1_000], NOW_MS)).await.unwrap()),
        1_000
    );
    assert_eq!(
        l.reserve(learn(d, "b", &[1_000], NOW_MS)).await.unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 9_000,
            learning_remaining_cents: 500
        }
    );
    assert_eq!(
        reserved_amount(
            l.reserve(learn(d, "b", &[1_000, 500], NOW_MS))
                .await
                .unwrap()
        ),
        500
    );
    assert_eq!(
        l.reserve(learn(d, "c", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 8_500,
            learning_remaining_cents: 0
        }
    );
    // Main reservations go on: learning money is part of the day's spend,
    // and the main cap is still the cap.
    assert_eq!(
        reserved_amount(l.reserve(req(d, "m", &[5_000], NOW_MS)).await.unwrap()),
        5_000
    );
    let s = l.snapshot(d, NOW_MS).await.unwrap();
    assert_eq!(
        (
            s.reserved_cents,
            s.remaining_cents,
            s.learning_cap_cents,
            s.learning_reserved_cents,
            s.learning_captured_cents,
            s.learning_remaining_cents
        ),
        (6_500, 3_500, 1_500, 1_500, 0, 0)
    );
    assert_eq!(
        reserved_amount(
            l.reserve(req(d, "n", &[4_000, 3_500], NOW_MS))
                .await
                .unwrap()
        ),
        3_500
    );
    assert_eq!(
        l.reserve(req(d, "o", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
    // The main budget binds a learning reservation too (spring: all of its
    // cap may be learning, but not more than is left of it).
    assert_eq!(
        reserved_amount(l.reserve(req("spring", "p", &[800], NOW_MS)).await.unwrap()),
        800
    );
    assert_eq!(
        l.reserve(learn("spring", "q", &[500], NOW_MS))
            .await
            .unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 200,
            learning_remaining_cents: 200
        }
    );
    assert_eq!(
        reserved_amount(
            l.reserve(learn("spring", "q", &[500, 200], NOW_MS))
                .await
                .unwrap()
        ),
        200
    );

    // Capture keeps learning money in the learning counters; the capture
    // carries the flag.
    for (campaign, session, amount) in [
        (d, "a", 1_000),
        (d, "m", 5_000),
        ("spring", "p", 800),
        ("spring", "q", 200),
    ] {
        let code = code_of(l.as_ref(), campaign, session).await;
        assert_eq!(
            l.redeem(redeem(&code, session, 20_000, NOW_MS + 1))
                .await
                .unwrap(),
            RedeemOutcome::Accepted {
                discount_cents: amount,
                replayed: false,
            }
        );
    }
    let s = l.snapshot(d, NOW_MS + 1).await.unwrap();
    assert_eq!(
        (
            s.learning_reserved_cents,
            s.learning_captured_cents,
            s.captured_cents
        ),
        (500, 1_000, 6_000)
    );
    let mut caps: Vec<(String, bool)> = l
        .captured(0)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.session_id, c.learning))
        .collect();
    caps.sort();
    assert_eq!(
        caps,
        vec![
            ("a".into(), true),
            ("m".into(), false),
            ("p".into(), false),
            ("q".into(), true)
        ]
    );

    // Void gives learning money back (and main money with it); a late
    // redemption of a learning voucher is expired.
    let b = code_of(l.as_ref(), d, "b").await;
    assert_eq!(l.void_expired(NOW_MS + 3_600_000).await.unwrap(), 2);
    let s = l.snapshot(d, NOW_MS + 3_600_000).await.unwrap();
    assert_eq!(
        (
            s.reserved_cents,
            s.learning_reserved_cents,
            s.learning_captured_cents,
            s.learning_remaining_cents,
            s.remaining_cents
        ),
        (0, 0, 1_000, 500, 4_000)
    );
    assert_eq!(
        l.redeem(redeem(&b, "b", 20_000, NOW_MS + 3_600_001))
            .await
            .unwrap(),
        RedeemOutcome::Expired
    );
    let spring = l.snapshot("spring", NOW_MS + 3_600_000).await.unwrap();
    assert_eq!(
        (
            spring.learning_reserved_cents,
            spring.learning_captured_cents,
            spring.learning_remaining_cents
        ),
        (0, 200, 0)
    );
    assert_eq!(
        reserved_amount(
            l.reserve(learn(d, "r", &[500], NOW_MS + 3_600_000))
                .await
                .unwrap()
        ),
        500
    );

    // A new day: the learning cap is whole again; yesterday's learning
    // capture stays on yesterday. The lifetime cap still binds learning.
    let tomorrow = NOW_MS + MS_PER_DAY;
    let s = l.snapshot(d, tomorrow).await.unwrap();
    assert_eq!(
        (
            s.learning_reserved_cents,
            s.learning_captured_cents,
            s.learning_remaining_cents
        ),
        (0, 0, 1_500)
    );
    assert_eq!(
        reserved_amount(l.reserve(learn(d, "t", &[1_500], tomorrow)).await.unwrap()),
        1_500
    );
    // spring: 1,000 of its 1,800 lifetime are spent (800 + 200 captured).
    let s = l.snapshot("spring", tomorrow).await.unwrap();
    assert_eq!((s.remaining_cents, s.learning_remaining_cents), (800, 800));
    assert_eq!(
        l.reserve(learn("spring", "u", &[1_000], tomorrow))
            .await
            .unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 800,
            learning_remaining_cents: 800
        }
    );

    // Concurrent learning reservations on a fresh ledger: exactly the
    // learning cap's worth, to the cent, and none from a zero cap.
    let fresh = make(learning_budgets());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let l = fresh.clone();
        tasks.push(tokio::spawn(async move {
            let s = format!("c{i}");
            l.reserve(learn(DEFAULT_CAMPAIGN, &s, &[500, 200], NOW_MS))
                .await
                .unwrap()
        }));
    }
    let mut reserved = 0;
    for t in tasks {
        if let ReserveOutcome::Reserved(o) = t.await.unwrap() {
            reserved += o.amount_cents;
        }
    }
    assert_eq!(reserved, 1_500);
    let s = fresh.snapshot(DEFAULT_CAMPAIGN, NOW_MS).await.unwrap();
    assert_eq!(
        (s.learning_reserved_cents, s.reserved_cents),
        (1_500, 1_500)
    );
    let mut zero = learning_budgets();
    zero.campaigns
        .get_mut(DEFAULT_CAMPAIGN)
        .unwrap()
        .learning_cap_cents = 0;
    assert_eq!(
        make(zero)
            .reserve(learn(d, "z", &[500], NOW_MS))
            .await
            .unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 10_000,
            learning_remaining_cents: 0
        }
    );
}

#[tokio::test]
async fn memory_ledger_conforms() {
    ledger_suite(|b| Arc::new(MemoryLedger::new(b, key())) as Arc<dyn Ledger>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_ledger_keeps_the_learning_budget() {
    learning_budget_suite(|b| Arc::new(MemoryLedger::new(b, key())) as Arc<dyn Ledger>).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_keeps_the_learning_budget() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    learning_budget_suite(|b| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("learning-{i}.sqlite3"));
        Arc::new(SqliteLedger::open(&path, b, key()).unwrap()) as Arc<dyn Ledger>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ledger_keeps_the_learning_budget() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    learning_budget_suite(|b| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(RedisLedger::new(redis.conn(&format!("lb{i}")), b, key())) as Arc<dyn Ledger>
    })
    .await;
}

/// Regression: a ledger file written before offers had a `learning` column
/// opens, keeps its offers and budget (all main money), and then books
/// learning offers; opening it again is a no-op migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_opens_a_database_without_the_learning_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.sqlite3");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE offers (
                code TEXT PRIMARY KEY, campaign TEXT NOT NULL, session_id TEXT NOT NULL,
                day TEXT NOT NULL, amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
                issued_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('reserved', 'captured', 'voided')),
                settled_ms INTEGER, order_value_cents INTEGER, UNIQUE (campaign, session_id));
             CREATE INDEX offers_open ON offers (state, expires_ms);
             CREATE TABLE outcomes (session_id TEXT PRIMARY KEY, converted INTEGER NOT NULL,
                order_value_cents INTEGER NOT NULL, at_ms INTEGER NOT NULL);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO offers VALUES ('OLD-CODE', 'default', 'old', '2026-11-22', 1000, ?1, ?2, 'reserved', NULL, NULL)",
            rusqlite::params![NOW_MS, NOW_MS + 3_600_000],
        )
        .unwrap();
    }
    let budgets = learning_budgets();
    for _ in 0..2 {
        let l = SqliteLedger::open(&path, budgets.clone(), key()).unwrap();
        let s = l.snapshot(DEFAULT_CAMPAIGN, NOW_MS).await.unwrap();
        assert!(s.reserved_cents >= 1_000, "the old offer still counts");
        assert_eq!(s.learning_cap_cents, 1_500);
        let rows = l.rows().await.unwrap();
        let old = rows.iter().find(|r| r.session_id == "old").unwrap();
        assert!(!old.learning, "old offers were main money");
        assert_eq!(
            l.offer_for(DEFAULT_CAMPAIGN, "old")
                .await
                .unwrap()
                .map(|o| o.amount_cents),
            Some(1_000)
        );
        // Learning offers are booked and survive the reopen.
        match l
            .reserve(learn(DEFAULT_CAMPAIGN, "new", &[1_500], NOW_MS))
            .await
            .unwrap()
        {
            ReserveOutcome::Reserved(_) | ReserveOutcome::AlreadyOffered(_) => {}
            other => panic!("{other:?}"),
        }
        let s = l.snapshot(DEFAULT_CAMPAIGN, NOW_MS).await.unwrap();
        assert_eq!(
            (
                s.reserved_cents,
                s.learning_reserved_cents,
                s.learning_remaining_cents
            ),
            (2_500, 1_500, 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    ledger_suite(|b| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("ledger-{i}.sqlite3"));
        Arc::new(SqliteLedger::open(&path, b, key()).unwrap()) as Arc<dyn Ledger>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_restores_budget_and_offers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite3");
    let (a, before) = {
        let l = SqliteLedger::open(&path, budgets(2_000, None), key()).unwrap();
        let ReserveOutcome::Reserved(a) = l
            .reserve(req("default", "a", &[1_000], NOW_MS))
            .await
            .unwrap()
        else {
            panic!()
        };
        l.reserve(req("default", "b", &[500], NOW_MS))
            .await
            .unwrap();
        l.redeem(redeem(&a.voucher_code, "a", 20_000, NOW_MS))
            .await
            .unwrap();
        (a, l.snapshot("default", NOW_MS).await.unwrap())
    };
    let l = SqliteLedger::open(&path, budgets(2_000, None), key()).unwrap();
    assert_eq!(l.snapshot("default", NOW_MS).await.unwrap(), before);
    assert_eq!(l.offer_for("default", "a").await.unwrap(), Some(a.clone()));
    assert_eq!(
        l.redeem(redeem(&a.voucher_code, "a", 20_001, NOW_MS))
            .await
            .unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
    assert!(
        matches!(
            l.redeem(redeem(&a.voucher_code, "a", 20_000, NOW_MS))
                .await
                .unwrap(),
            RedeemOutcome::Accepted { replayed: true, .. }
        ),
        "a retry is still answered after a restart, marked as a retry"
    );
    assert!(matches!(
        l.reserve(req("default", "b", &[500], NOW_MS))
            .await
            .unwrap(),
        ReserveOutcome::AlreadyOffered(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ledger_conforms() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    ledger_suite(|b| {
        // A fresh, empty ledger: its own key prefix on the same server.
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(RedisLedger::new(redis.conn(&format!("l{i}")), b, key())) as Arc<dyn Ledger>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_session_store_conforms() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    session_store_suite(Arc::new(RedisSessionStore::new(redis.conn("s"), TTL))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_session_store_conforms() {
    session_store_suite(Arc::new(MemorySessionStore::new(TTL, 10_000))).await;
}
