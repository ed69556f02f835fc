//! One conformance suite for every `SessionStore` and `Ledger`
//! implementation (the Redis ones join by adding a line to each test list).

use crate::util::NOW_MS;
use nudge::ledger::{Ledger, MemoryLedger, ReserveOutcome, ReserveRequest, MS_PER_DAY};
use nudge::session::{Context, Device, Event, EventKind, Signal};
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

async fn ledger_suite(make: impl Fn(i64) -> Arc<dyn Ledger>) {
    let req = |session: &'static str, candidates: &'static [i64], now_ms: i64| ReserveRequest {
        session_id: session,
        candidates,
        voucher_code: format!("CODE-{session}"),
        now_ms,
        expires_at_ms: now_ms + 1_000,
    };
    let l = make(1_000);
    assert!(
        matches!(l.reserve(req("a", &[2_000, 1_000], NOW_MS)).await.unwrap(),
        ReserveOutcome::Reserved(ref o) if o.amount_cents == 1_000)
    );
    assert!(matches!(l.reserve(req("a", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::AlreadyOffered(ref o) if o.voucher_code == "CODE-a"));
    assert_eq!(
        l.reserve(req("b", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
    assert_eq!(l.offer_for("a").await.unwrap().unwrap().amount_cents, 1_000);
    assert!(l.offer_for("b").await.unwrap().is_none());
    let snap = l.snapshot(NOW_MS).await.unwrap();
    assert_eq!(
        (
            snap.cap_cents,
            snap.reserved_cents,
            snap.remaining_cents,
            snap.offers
        ),
        (1_000, 1_000, 0, 1)
    );
    // A new UTC day has a fresh cap.
    let next_day = (NOW_MS / MS_PER_DAY + 1) * MS_PER_DAY;
    assert!(matches!(
        l.reserve(req("b", &[500], next_day)).await.unwrap(),
        ReserveOutcome::Reserved(_)
    ));

    // Zero cap: nothing is ever reserved.
    let z = make(0);
    assert_eq!(
        z.reserve(req("a", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_session_store_conforms() {
    session_store_suite(Arc::new(MemorySessionStore::new(TTL, 10_000))).await;
}

#[tokio::test]
async fn memory_ledger_conforms() {
    ledger_suite(|cap| Arc::new(MemoryLedger::new(cap)) as Arc<dyn Ledger>).await;
}
