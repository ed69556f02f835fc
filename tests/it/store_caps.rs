//! Caps changed at run time and the spend history, as every ledger
//! (memory, SQLite, Redis) must keep them.

use super::store::*;
use crate::util::NOW_MS;
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{
    Budgets, CampaignBudget, DaySpend, Ledger, LedgerError, MemoryLedger, RedeemOutcome,
    ReserveOutcome, ReserveRequest, DEFAULT_CAMPAIGN, MS_PER_DAY,
};
use nudge::redis::RedisLedger;
use std::sync::Arc;

fn caps(daily: i64, total: Option<i64>, learning: i64) -> CampaignBudget {
    CampaignBudget {
        daily_cap_cents: daily,
        total_cap_cents: total,
        learning_cap_cents: learning,
    }
}

fn invalid_field<T: std::fmt::Debug>(r: Result<T, LedgerError>) -> &'static str {
    match r {
        Err(LedgerError::InvalidArgument { field, .. }) => field,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

/// Caps changed at run time, as every ledger must apply them: the next
/// reservation and snapshot use them, offers already given stay valid, a
/// stale revision changes nothing, and a campaign added at run time can
/// reserve.
async fn live_caps_suite(make: impl Fn(Budgets) -> Arc<dyn Ledger>) {
    // `default`: 3,000 a day of which 300 learning.
    let l = make(budgets(3_000, None));
    let d = DEFAULT_CAMPAIGN;
    let a = code_of_reserved(l.reserve(req(d, "a", &[1_000], NOW_MS)).await.unwrap());
    code_of_reserved(l.reserve(req(d, "b", &[1_000], NOW_MS)).await.unwrap());

    // Lowered under today's spend: new offers are refused, old ones stand.
    assert!(l.set_budget(d, caps(1_500, None, 150), 1).await.unwrap());
    assert_eq!(
        l.reserve(req(d, "c", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
    let snap = l.snapshot(d, NOW_MS).await.unwrap();
    assert_eq!(
        (
            snap.cap_cents,
            snap.reserved_cents,
            snap.remaining_cents,
            snap.learning_cap_cents
        ),
        (1_500, 2_000, 0, 150)
    );
    assert!(l.offer_for(d, "b").await.unwrap().is_some());
    assert_eq!(
        l.redeem(redeem(&a, "a", 20_000, NOW_MS + 1)).await.unwrap(),
        RedeemOutcome::Accepted {
            discount_cents: 1_000,
            replayed: false
        }
    );

    // A stale revision (the config's seed is 0) is ignored.
    assert!(!l.set_budget(d, caps(10_000, None, 1_000), 0).await.unwrap());
    assert_eq!(l.snapshot(d, NOW_MS).await.unwrap().cap_cents, 1_500);
    assert!(matches!(
        l.reserve(req(d, "c", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted { .. }
    ));

    // Raised again: reservations go through up to the new cap; the same
    // revision again is applied again.
    assert!(l.set_budget(d, caps(3_000, None, 300), 2).await.unwrap());
    assert!(l.set_budget(d, caps(3_000, None, 300), 2).await.unwrap());
    assert_eq!(
        reserved_amount(
            l.reserve(req(d, "c", &[2_000, 1_000], NOW_MS))
                .await
                .unwrap()
        ),
        1_000
    );
    assert_eq!(
        l.snapshot(d, NOW_MS).await.unwrap().remaining_cents,
        0,
        "3,000 committed under a cap of 3,000"
    );

    // The learning cap changes likewise.
    assert!(l.set_budget(d, caps(5_000, None, 0), 3).await.unwrap());
    assert_eq!(
        l.reserve(learn(d, "e", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 2_000,
            learning_remaining_cents: 0
        }
    );
    assert!(l.set_budget(d, caps(5_000, None, 600), 4).await.unwrap());
    assert_eq!(
        reserved_amount(l.reserve(learn(d, "e", &[500], NOW_MS)).await.unwrap()),
        500
    );
    assert_eq!(
        l.reserve(learn(d, "f", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::LearningExhausted {
            remaining_cents: 1_500,
            learning_remaining_cents: 100
        }
    );
    // And a lifetime cap set at run time binds at once.
    assert!(l
        .set_budget(d, caps(5_000, Some(3_700), 600), 5)
        .await
        .unwrap());
    assert_eq!(
        l.reserve(req(d, "g", &[500], NOW_MS)).await.unwrap(),
        ReserveOutcome::Exhausted {
            remaining_cents: 200
        }
    );
    let snap = l.snapshot(d, NOW_MS).await.unwrap();
    assert_eq!(
        (snap.total_cap_cents, snap.remaining_cents),
        (Some(3_700), 200)
    );

    // A campaign unknown until its caps are set.
    assert!(matches!(
        l.reserve(req("autumn", "x", &[500], NOW_MS)).await,
        Err(LedgerError::UnknownCampaign(_))
    ));
    assert!(matches!(
        l.snapshot("autumn", NOW_MS).await,
        Err(LedgerError::UnknownCampaign(_))
    ));
    assert!(l
        .set_budget("autumn", caps(800, None, 80), 0)
        .await
        .unwrap());
    let x = l
        .reserve(req("autumn", "x", &[1_000, 500], NOW_MS))
        .await
        .unwrap();
    assert_eq!(reserved_amount(x.clone()), 500);
    let ReserveOutcome::Reserved(x) = x else {
        unreachable!()
    };
    assert_eq!(l.offer_for("autumn", "x").await.unwrap(), Some(x));
    let snap = l.snapshot("autumn", NOW_MS).await.unwrap();
    assert_eq!(
        (snap.cap_cents, snap.reserved_cents, snap.remaining_cents),
        (800, 500, 300)
    );
    assert!(
        l.snapshot(d, NOW_MS).await.unwrap().reserved_cents > 0,
        "other campaigns untouched"
    );

    // Bad caps are refused, naming the field, and change nothing.
    assert_eq!(
        invalid_field(l.set_budget(d, caps(1_000, None, 1_001), 9).await),
        "learning_cap_cents"
    );
    assert_eq!(
        invalid_field(l.set_budget(d, caps(-1, None, 0), 9).await),
        "daily_cap_cents"
    );
    assert_eq!(
        invalid_field(l.set_budget(d, caps(1_000, Some(-1), 0), 9).await),
        "total_cap_cents"
    );
    assert_eq!(
        invalid_field(l.set_budget("", caps(1_000, None, 0), 9).await),
        "campaign"
    );
    assert_eq!(l.snapshot(d, NOW_MS).await.unwrap().cap_cents, 5_000);
    assert!(
        l.set_budget(d, caps(5_000, Some(3_700), 600), 5)
            .await
            .unwrap(),
        "the refused changes left revision 5 in force"
    );
}

/// The spend history: each budget day with offers, oldest first, with its
/// reserved, captured and learning sums (a capture counts on the day the
/// offer was issued), and the day strings and the range checked.
async fn spend_history_suite(make: impl Fn(Budgets) -> Arc<dyn Ledger>) {
    let l = make(budgets(3_000, None));
    let d = DEFAULT_CAMPAIGN;
    let b = budgets(0, None);
    let (day0, day1, day2, day3) = (
        b.day_of(NOW_MS - MS_PER_DAY),
        b.day_of(NOW_MS),
        b.day_of(NOW_MS + MS_PER_DAY),
        b.day_of(NOW_MS + 2 * MS_PER_DAY),
    );
    let next = NOW_MS + MS_PER_DAY;
    let long = |r: ReserveRequest<'static>| ReserveRequest {
        expires_at_ms: NOW_MS + 3 * MS_PER_DAY,
        ..r
    };
    // Day 1: 1,000 captured that day, 300 learning captured the next day.
    let a = code_of_reserved(l.reserve(req(d, "a", &[1_000], NOW_MS)).await.unwrap());
    let e = code_of_reserved(
        l.reserve(long(learn(d, "e", &[300], NOW_MS)))
            .await
            .unwrap(),
    );
    assert!(matches!(
        l.redeem(redeem(&a, "a", 20_000, NOW_MS + 1)).await.unwrap(),
        RedeemOutcome::Accepted { .. }
    ));
    // Day 2: 500 reserved, 700 voided (still an offer made that day).
    code_of_reserved(l.reserve(long(req(d, "c", &[500], next))).await.unwrap());
    let short = ReserveRequest {
        expires_at_ms: next + 1_000,
        ..req(d, "v", &[700], next)
    };
    code_of_reserved(l.reserve(short).await.unwrap());
    assert_eq!(l.void_expired(next + 1_000).await.unwrap(), 1);
    assert!(matches!(
        l.redeem(redeem(&e, "e", 20_000, next + 2_000))
            .await
            .unwrap(),
        RedeemOutcome::Accepted { .. }
    ));
    // Another campaign's spend stays its own.
    code_of_reserved(l.reserve(req("spring", "s", &[500], next)).await.unwrap());

    let day1_spend = DaySpend {
        day: day1.clone(),
        reserved_cents: 0,
        captured_cents: 1_300,
        offers: 2,
        learning_reserved_cents: 0,
        learning_captured_cents: 300,
    };
    let day2_spend = DaySpend {
        day: day2.clone(),
        reserved_cents: 500,
        captured_cents: 0,
        offers: 2,
        learning_reserved_cents: 0,
        learning_captured_cents: 0,
    };
    assert_eq!(
        l.spend_by_day(d, &day0, &day3).await.unwrap(),
        vec![day1_spend.clone(), day2_spend.clone()]
    );
    assert_eq!(
        l.spend_by_day(d, &day2, &day2).await.unwrap(),
        vec![day2_spend]
    );
    assert_eq!(
        l.spend_by_day(d, &day0, &day1).await.unwrap(),
        vec![day1_spend]
    );
    assert!(l.spend_by_day(d, &day3, &day3).await.unwrap().is_empty());
    assert_eq!(
        l.spend_by_day("spring", &day0, &day3).await.unwrap().len(),
        1
    );
    // A full leap year is the longest range.
    assert!(l
        .spend_by_day(d, "2024-01-01", "2025-01-01")
        .await
        .unwrap()
        .is_empty());

    assert_eq!(
        invalid_field(l.spend_by_day(d, "2026-02-30", &day3).await),
        "from_day"
    );
    assert_eq!(
        invalid_field(l.spend_by_day(d, &day0, "tomorrow").await),
        "to_day"
    );
    assert_eq!(
        invalid_field(l.spend_by_day(d, &day3, &day0).await),
        "to_day"
    );
    assert_eq!(
        invalid_field(l.spend_by_day(d, "2024-01-01", "2025-01-02").await),
        "to_day"
    );
    assert!(matches!(
        l.spend_by_day("nope", &day0, &day3).await,
        Err(LedgerError::UnknownCampaign(_))
    ));
}

fn code_of_reserved(o: ReserveOutcome) -> String {
    match o {
        ReserveOutcome::Reserved(o) => o.voucher_code,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

#[tokio::test]
async fn memory_ledger_applies_live_caps() {
    live_caps_suite(|b| Arc::new(MemoryLedger::new(b, key())) as Arc<dyn Ledger>).await;
}

#[tokio::test]
async fn memory_ledger_keeps_the_spend_history() {
    spend_history_suite(|b| Arc::new(MemoryLedger::new(b, key())) as Arc<dyn Ledger>).await;
}

/// A fresh SQLite ledger per call, in `dir`.
fn sqlite_maker(dir: &tempfile::TempDir, name: &str) -> impl Fn(Budgets) -> Arc<dyn Ledger> {
    let n = std::sync::atomic::AtomicUsize::new(0);
    let dir = dir.path().to_owned();
    let name = name.to_owned();
    move |b| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.join(format!("{name}-{i}.sqlite3"));
        Arc::new(SqliteLedger::open(&path, b, key()).unwrap()) as Arc<dyn Ledger>
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_applies_live_caps() {
    let dir = tempfile::tempdir().unwrap();
    live_caps_suite(sqlite_maker(&dir, "caps")).await;
}

/// The history after a restart too: the core is rebuilt from every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_keeps_the_spend_history() {
    let dir = tempfile::tempdir().unwrap();
    spend_history_suite(sqlite_maker(&dir, "history")).await;
    let b = budgets(3_000, None);
    let (from, to) = (b.day_of(NOW_MS - MS_PER_DAY), b.day_of(NOW_MS + MS_PER_DAY));
    let before = {
        let l =
            SqliteLedger::open(&dir.path().join("history-0.sqlite3"), b.clone(), key()).unwrap();
        l.spend_by_day(DEFAULT_CAMPAIGN, &from, &to).await.unwrap()
    };
    assert_eq!(before.len(), 2);
    let l = SqliteLedger::open(&dir.path().join("history-0.sqlite3"), b, key()).unwrap();
    assert_eq!(
        l.spend_by_day(DEFAULT_CAMPAIGN, &from, &to).await.unwrap(),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ledger_applies_live_caps() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    live_caps_suite(|b| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(RedisLedger::new(redis.conn(&format!("caps{i}")), b, key())) as Arc<dyn Ledger>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ledger_keeps_the_spend_history() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    spend_history_suite(|b| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Arc::new(RedisLedger::new(redis.conn(&format!("hist{i}")), b, key())) as Arc<dyn Ledger>
    })
    .await;
}
