use crate::util::NOW_MS;
use nudge::domain::voucher::VoucherKey;
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{
    Budgets, Ledger, MemoryLedger, OfferRow, OfferState, RedeemOutcome, RedeemRequest,
    ReserveOutcome, ReserveRequest,
};
use nudge::redis::RedisLedger;
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    Issue {
        session: u8,
        big_first: bool,
        learning: bool,
    },
    Redeem {
        session: u8,
        order_cents: i64,
    },
    Advance {
        ms: i64,
    },
    Expire,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, any::<bool>(), any::<bool>())
            .prop_map(|(session, big_first, learning)| Op::Issue { session, big_first, learning }),
        3 => (0u8..24, 0i64..30_000).prop_map(|(session, order_cents)| Op::Redeem { session, order_cents }),
        2 => (0i64..8 * 3_600_000).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Expire),
        1 => Just(Op::Restart),
    ]
}

const CAP: i64 = 4_000;
/// The learning part of `CAP`.
const LEARNING_CAP: i64 = 1_500;
const TTL_MS: i64 = 6 * 3_600_000;

fn budgets() -> Budgets {
    let mut b = Budgets::single(CAP);
    for c in b.campaigns.values_mut() {
        c.learning_cap_cents = LEARNING_CAP;
    }
    b
}

fn key() -> VoucherKey {
    VoucherKey::from_secret("ledger property test secret")
}

/// captured + reserved <= cap for every budget day, and its learning part
/// <= the learning cap, from the rows.
fn check_rows(rows: &[OfferRow]) -> Result<(), TestCaseError> {
    let mut per_day: HashMap<&str, i64> = HashMap::new();
    let mut learning_per_day: HashMap<&str, i64> = HashMap::new();
    let mut sessions = std::collections::HashSet::new();
    for r in rows {
        if r.state != OfferState::Voided {
            prop_assert!(
                sessions.insert(&r.session_id),
                "two live offers for {}",
                r.session_id
            );
            *per_day.entry(&r.day).or_default() += r.amount_cents;
            if r.learning {
                *learning_per_day.entry(&r.day).or_default() += r.amount_cents;
            }
        }
    }
    for (day, spent) in per_day {
        prop_assert!(spent <= CAP, "day {day}: {spent} > {CAP}");
    }
    for (day, spent) in learning_per_day {
        prop_assert!(
            spent <= LEARNING_CAP,
            "day {day}: learning {spent} > {LEARNING_CAP}"
        );
    }
    Ok(())
}

/// Runs `ops` against a ledger; `reopen` builds it (again, for Restart).
async fn run(
    ops: Vec<Op>,
    mut reopen: impl FnMut() -> (Arc<dyn Ledger>, Option<SqliteLedger>),
) -> Result<(), TestCaseError> {
    let (mut ledger, mut sqlite) = reopen();
    let mut now = NOW_MS;
    // The session's latest offer: its code and expiry.
    let mut codes: HashMap<u8, (String, i64)> = HashMap::new();
    let mut redeemed: HashMap<u8, bool> = HashMap::new();
    let mut orders: HashMap<u8, i64> = HashMap::new();
    for op in ops {
        match op {
            Op::Issue {
                session,
                big_first,
                learning,
            } => {
                let c: &[i64] = if big_first {
                    &[2_000, 1_000, 500]
                } else {
                    &[500]
                };
                let r = ledger
                    .reserve(ReserveRequest {
                        campaign: "default",
                        session_id: &format!("s{session}"),
                        candidates: c,
                        now_ms: now,
                        expires_at_ms: now + TTL_MS,
                        learning,
                    })
                    .await
                    .unwrap();
                match r {
                    ReserveOutcome::Reserved(o) => {
                        // A second offer only once the first expired unredeemed.
                        if let Some((_, expires)) = codes.get(&session) {
                            prop_assert!(*expires <= now, "second live offer for s{session}");
                            prop_assert!(!redeemed.get(&session).copied().unwrap_or(false));
                        }
                        codes.insert(session, (o.voucher_code, o.expires_at_ms));
                        redeemed.insert(session, false);
                    }
                    ReserveOutcome::AlreadyOffered(o) => {
                        prop_assert_eq!(codes.get(&session).map(|c| &c.0), Some(&o.voucher_code));
                    }
                    ReserveOutcome::Exhausted { remaining_cents } => {
                        prop_assert!(!learning);
                        prop_assert!(
                            remaining_cents < c[c.len() - 1],
                            "a candidate fitted but none was reserved"
                        );
                    }
                    ReserveOutcome::LearningExhausted {
                        remaining_cents,
                        learning_remaining_cents,
                    } => {
                        prop_assert!(learning);
                        prop_assert!(learning_remaining_cents <= remaining_cents);
                        prop_assert!(
                            learning_remaining_cents < c[c.len() - 1],
                            "a candidate fitted the learning budget but none was reserved"
                        );
                    }
                }
            }
            Op::Redeem {
                session,
                order_cents,
            } => {
                let Some((code, _)) = codes.get(&session) else {
                    continue;
                };
                let r = ledger
                    .redeem(RedeemRequest {
                        code,
                        session_id: &format!("s{session}"),
                        order_value_cents: order_cents,
                        min_order_cents: 9_900,
                        now_ms: now,
                    })
                    .await
                    .unwrap();
                if let RedeemOutcome::Accepted { .. } = r {
                    // Again only as a retry of the same redemption.
                    if redeemed.get(&session).copied().unwrap_or(false) {
                        prop_assert_eq!(orders.get(&session), Some(&order_cents), "redeemed twice");
                    }
                    redeemed.insert(session, true);
                    orders.insert(session, order_cents);
                }
                if r == RedeemOutcome::AlreadyRedeemed {
                    prop_assert!(redeemed.get(&session).copied().unwrap_or(false));
                }
            }
            Op::Advance { ms } => now += ms,
            Op::Expire => {
                ledger.void_expired(now).await.unwrap();
            }
            Op::Restart => {
                drop(ledger);
                drop(sqlite.take());
                (ledger, sqlite) = reopen();
            }
        }
        let snap = ledger.snapshot("default", now).await.unwrap();
        prop_assert!(snap.reserved_cents + snap.captured_cents <= CAP);
        prop_assert!(snap.remaining_cents >= 0);
        prop_assert_eq!(
            snap.remaining_cents,
            CAP - snap.reserved_cents - snap.captured_cents
        );
        let learning = snap.learning_reserved_cents + snap.learning_captured_cents;
        prop_assert!(learning <= LEARNING_CAP);
        prop_assert!(snap.learning_reserved_cents <= snap.reserved_cents);
        prop_assert!(snap.learning_captured_cents <= snap.captured_cents);
        prop_assert_eq!(
            snap.learning_remaining_cents,
            (LEARNING_CAP - learning).min(snap.remaining_cents)
        );
        if let Some(s) = &sqlite {
            check_rows(&s.rows().await.unwrap())?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random interleavings of issue (main or learning), redeem, expire,
    /// time and restart: captured + reserved <= budget and its learning
    /// part <= the learning budget at every step, one live offer per session,
    /// one redemption per code, and a restart restores the exact state.
    #[test]
    fn sqlite_ledger_never_overspends_across_interleavings_and_restarts(
        ops in prop::collection::vec(op(), 1..60)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        rt.block_on(run(ops, || {
            let l = SqliteLedger::open(&path, budgets(), key()).unwrap();
            (Arc::new(l.clone()) as Arc<dyn Ledger>, Some(l))
        }))?;
    }

    #[test]
    fn memory_ledger_never_overspends_across_interleavings(
        ops in prop::collection::vec(op(), 1..80)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let shared = Arc::new(MemoryLedger::new(budgets(), key()));
        // A memory ledger has no restart: "restart" keeps the same state.
        rt.block_on(run(ops, || (shared.clone() as Arc<dyn Ledger>, None)))?;
    }
}

/// The same interleavings against Redis, where "restart" is a new ledger
/// and connection (a replica restarting, or another replica taking over) on
/// the same keys. One server for every case, a fresh key prefix per case.
#[test]
fn redis_ledger_never_overspends_across_interleavings_and_restarts() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let case = std::sync::atomic::AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    let result = runner.run(&prop::collection::vec(op(), 1..60), |ops| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let prefix = format!(
            "p{}",
            case.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        rt.block_on(run(ops, || {
            let l = RedisLedger::new(redis.conn(&prefix), budgets(), key());
            (Arc::new(l) as Arc<dyn Ledger>, None)
        }))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
