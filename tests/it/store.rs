//! One conformance suite for every `SessionStore` and `Ledger`
//! implementation: memory, SQLite and Redis.

use crate::util::NOW_MS;
use nudge::domain::session::{Context, Device, Event, EventKind, Signal};
use nudge::domain::voucher::{self, VoucherKey};
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{
    Budgets, CampaignBudget, Ledger, MemoryLedger, Outcome, RedeemOutcome, RedeemRequest,
    ReserveOutcome, ReserveRequest, DEFAULT_CAMPAIGN, MS_PER_DAY,
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

fn budgets(daily: i64, total: Option<i64>) -> Budgets {
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
        },
    );
    b
}

fn key() -> VoucherKey {
    VoucherKey::from_secret("conformance-suite secret")
}

fn req<'a>(
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
    }
}

fn redeem<'a>(code: &'a str, session: &'a str, order: i64, now_ms: i64) -> RedeemRequest<'a> {
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
            discount_cents: 1_000
        }
    );
    assert_eq!(
        l.redeem(redeem(&a.voucher_code, "a", 20_000, NOW_MS + 3))
            .await
            .unwrap(),
        RedeemOutcome::AlreadyRedeemed
    );
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

    // Outcomes are idempotent.
    let o = Outcome {
        session_id: "a".into(),
        converted: true,
        order_value_cents: 20_000,
        at_ms: NOW_MS,
    };
    assert!(l.record_outcome(o.clone()).await.unwrap());
    assert!(!l
        .record_outcome(Outcome {
            at_ms: NOW_MS + 5,
            ..o.clone()
        })
        .await
        .unwrap());
    assert!(
        l.record_outcome(Outcome {
            order_value_cents: 25_000,
            ..o.clone()
        })
        .await
        .unwrap(),
        "a correction is recorded"
    );
    let all = l.outcomes(0).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].order_value_cents, 25_000);
    assert_eq!(l.outcomes(all[0].at_ms).await.unwrap(), all);
    assert!(l.outcomes(all[0].at_ms + 1).await.unwrap().is_empty());

    // Zero cap: nothing is ever reserved.
    let z = make(budgets(0, None));
    assert_eq!(
        z.reserve(req(d, "a", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
}

#[tokio::test]
async fn memory_ledger_conforms() {
    ledger_suite(|b| Arc::new(MemoryLedger::new(b, key())) as Arc<dyn Ledger>).await;
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
        l.redeem(redeem(&a.voucher_code, "a", 20_000, NOW_MS))
            .await
            .unwrap(),
        RedeemOutcome::AlreadyRedeemed
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
