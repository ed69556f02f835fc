//! Caps changed at run time on a shared Redis budget: a replica that never
//! heard of the change (its own view still holds the configured caps) can
//! never reserve above a cap another replica lowered, and a stale change
//! cannot undo a newer one.

use crate::redis::{key, redis_server};
use crate::util::NOW_MS;
use nudge::ledger::{
    Budgets, CampaignBudget, Ledger, ReserveOutcome, ReserveRequest, DEFAULT_CAMPAIGN,
};
use nudge::redis::RedisLedger;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

fn caps(daily: i64) -> CampaignBudget {
    CampaignBudget {
        daily_cap_cents: daily,
        total_cap_cents: None,
        learning_cap_cents: daily / 10,
    }
}

/// What a round of concurrent reservations gave: every offer granted, and
/// which of them were asked for after the cap change had returned.
#[derive(Default)]
struct Round {
    granted: i64,
    granted_after_change: i64,
    asked_after_change: usize,
    offers: usize,
}

/// `workers` concurrent loops of `each` reservations (1,000 or 500 cents,
/// fresh sessions named from `round`), alternating between the replicas,
/// while `change` runs once `trigger` cents were granted; `changed` is set
/// when it returned, and the loops keep asking after it.
async fn round(
    replicas: &[Arc<RedisLedger>; 2],
    round: &str,
    (workers, each): (usize, usize),
    trigger: i64,
    change: impl std::future::Future<Output = ()> + Send + 'static,
) -> Round {
    let granted = Arc::new(AtomicI64::new(0));
    let changed = Arc::new(AtomicBool::new(false));
    let changer = {
        let (granted, changed) = (granted.clone(), changed.clone());
        tokio::spawn(async move {
            while granted.load(Ordering::SeqCst) < trigger {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            change.await;
            changed.store(true, Ordering::SeqCst);
        })
    };
    let mut handles = Vec::new();
    for w in 0..workers {
        let replicas = replicas.clone();
        let (granted, changed) = (granted.clone(), changed.clone());
        let round = round.to_owned();
        handles.push(tokio::spawn(async move {
            let mut asked = Vec::with_capacity(each);
            for i in 0..each {
                let l = &replicas[(w + i) % 2];
                let session = format!("{round}-{w}-{i}");
                let after = changed.load(Ordering::SeqCst);
                let out = l
                    .reserve(ReserveRequest {
                        campaign: DEFAULT_CAMPAIGN,
                        session_id: &session,
                        candidates: &[1_000, 500],
                        now_ms: NOW_MS,
                        expires_at_ms: NOW_MS + 3_600_000,
                        learning: false,
                    })
                    .await
                    .unwrap();
                let amount = match out {
                    ReserveOutcome::Reserved(o) => o.amount_cents,
                    ReserveOutcome::Exhausted { .. } => 0,
                    other => panic!("{other:?}"),
                };
                granted.fetch_add(amount, Ordering::SeqCst);
                asked.push((after, amount));
            }
            asked
        }));
    }
    let mut r = Round::default();
    for h in handles {
        for (after, amount) in h.await.unwrap() {
            r.granted += amount;
            r.offers += usize::from(amount > 0);
            if after {
                r.asked_after_change += 1;
                r.granted_after_change += amount;
            }
        }
    }
    changer.await.unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cap_lowered_through_one_replica_binds_the_other_at_once() {
    let Some(redis) = redis_server() else { return };
    let start_cap = 200_000;
    let replicas: [Arc<RedisLedger>; 2] = std::array::from_fn(|_| {
        Arc::new(RedisLedger::new(
            redis.conn("shared"),
            Budgets::single(start_cap),
            key(),
        ))
    });

    // Round 1: replica 0 lowers the cap to 20,000 once 30,000 are granted,
    // so the day is over the new cap when the change commits: nothing may
    // be reserved after it, through either replica.
    let lowered = 20_000;
    let after_lowering = Arc::new(AtomicI64::new(-1));
    let change = {
        let (l, after_lowering) = (replicas[0].clone(), after_lowering.clone());
        async move {
            assert!(l
                .set_budget(DEFAULT_CAMPAIGN, caps(lowered), 1)
                .await
                .unwrap());
            let s = l.snapshot(DEFAULT_CAMPAIGN, NOW_MS).await.unwrap();
            after_lowering.store(s.reserved_cents + s.captured_cents, Ordering::SeqCst);
        }
    };
    let r1 = round(&replicas, "r1", (8, 75), 30_000, change).await;
    let committed_at_change = after_lowering.load(Ordering::SeqCst);
    assert!(
        committed_at_change >= 30_000,
        "lowered at {committed_at_change}"
    );
    assert!(
        r1.asked_after_change > 0,
        "some reservations came after the change"
    );
    assert_eq!(
        r1.granted_after_change, 0,
        "nothing reserved once the lower cap was in force"
    );
    for l in &replicas {
        let s = l.snapshot(DEFAULT_CAMPAIGN, NOW_MS).await.unwrap();
        assert_eq!(s.cap_cents, lowered, "both replicas report the new cap");
        assert_eq!(s.learning_cap_cents, lowered / 10);
        assert_eq!(s.reserved_cents, r1.granted);
        assert_eq!(s.offers as usize, r1.offers);
        assert_eq!(s.remaining_cents, 0);
        assert_eq!(
            s.reserved_cents + s.captured_cents,
            committed_at_change,
            "the committed total did not move after the change"
        );
    }
    assert!(r1.granted <= start_cap);

    // Round 2: replica 1 raises the cap to 10,000 above today's spend; then,
    // mid-round, replica 0 sends a stale, higher cap (revision 2 < 3): it is
    // ignored, by both.
    let raised = r1.granted + 10_000;
    assert!(replicas[1]
        .set_budget(DEFAULT_CAMPAIGN, caps(raised), 3)
        .await
        .unwrap());
    let change = {
        let l = replicas[0].clone();
        async move {
            assert!(!l
                .set_budget(DEFAULT_CAMPAIGN, caps(10 * start_cap), 2)
                .await
                .unwrap());
        }
    };
    let r2 = round(&replicas, "r2", (8, 25), 2_000, change).await;
    for l in &replicas {
        let s = l.snapshot(DEFAULT_CAMPAIGN, NOW_MS).await.unwrap();
        assert_eq!(s.cap_cents, raised);
        assert_eq!(s.reserved_cents, r1.granted + r2.granted);
        assert!(
            s.reserved_cents <= raised,
            "{} reserved under a cap of {raised}",
            s.reserved_cents
        );
        assert_eq!(s.remaining_cents, 0, "asked until nothing fits: {s:?}");
    }
    assert_eq!(r2.granted, 10_000, "the raise was used to the cent");
}

/// A campaign added through one replica is known to the other at once, for
/// reservations, lookups, snapshots and its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_added_through_one_replica_is_known_to_the_other() {
    let Some(redis) = redis_server() else { return };
    let [a, b]: [RedisLedger; 2] = std::array::from_fn(|_| {
        RedisLedger::new(redis.conn("shared"), Budgets::single(10_000), key())
    });
    let asked = |session: &'static str| ReserveRequest {
        campaign: "autumn",
        session_id: session,
        candidates: &[1_000],
        now_ms: NOW_MS,
        expires_at_ms: NOW_MS + 3_600_000,
        learning: false,
    };
    assert!(b.reserve(asked("x")).await.is_err());
    assert!(a.set_budget("autumn", caps(1_500), 1).await.unwrap());
    let ReserveOutcome::Reserved(x) = b.reserve(asked("x")).await.unwrap() else {
        panic!("reserved through the replica that was not told")
    };
    assert_eq!(a.offer_for("autumn", "x").await.unwrap(), Some(x));
    assert!(matches!(
        a.reserve(asked("y")).await.unwrap(),
        ReserveOutcome::Exhausted {
            remaining_cents: 500
        }
    ));
    let s = b.snapshot("autumn", NOW_MS).await.unwrap();
    assert_eq!((s.cap_cents, s.reserved_cents), (1_500, 1_000));
    let day = Budgets::single(0).day_of(NOW_MS);
    let history = b.spend_by_day("autumn", &day, &day).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|d| (d.reserved_cents, d.offers))
            .collect::<Vec<_>>(),
        [(1_000, 1)]
    );
}
