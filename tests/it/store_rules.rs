//! Conformance cases every ledger runs (from `store::ledger_suite`): the
//! outcome rule and a new offer once the session's offer expired.

use crate::store::{budgets, key, redeem, req};
use crate::util::NOW_MS;
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{
    Budgets, Ledger, Outcome, OutcomeRecorded, RedeemOutcome, ReserveOutcome, REDEEM_REPLAY_MS,
};
use std::sync::Arc;

/// A session's first outcome is recorded, a repeat changes nothing, "not
/// converted" may become "converted" once, a converted outcome is final.
pub(crate) async fn outcome_rule(l: &dyn Ledger) {
    // Outcomes are idempotent; a converted outcome is final.
    let o = Outcome {
        session_id: "a".into(),
        converted: true,
        order_value_cents: 20_000,
        at_ms: NOW_MS,
    };
    assert_eq!(
        l.record_outcome(o.clone()).await.unwrap(),
        OutcomeRecorded::New
    );
    assert_eq!(
        l.record_outcome(Outcome {
            at_ms: NOW_MS + 5,
            ..o.clone()
        })
        .await
        .unwrap(),
        OutcomeRecorded::Unchanged
    );
    for refused in [
        Outcome {
            order_value_cents: 25_000,
            ..o.clone()
        },
        Outcome {
            converted: false,
            order_value_cents: 0,
            ..o.clone()
        },
    ] {
        assert_eq!(
            l.record_outcome(refused).await.unwrap(),
            OutcomeRecorded::Refused { current: o.clone() },
            "a converted outcome is final"
        );
    }
    let all = l.outcomes(0).await.unwrap();
    assert_eq!(all, vec![o.clone()]);
    assert_eq!(l.outcomes(all[0].at_ms).await.unwrap(), all);
    assert!(l.outcomes(all[0].at_ms + 1).await.unwrap().is_empty());
    // "Not converted" at the end of a session, then a delayed order: the
    // conversion replaces it, once.
    let not = Outcome {
        session_id: "late".into(),
        converted: false,
        order_value_cents: 0,
        at_ms: NOW_MS,
    };
    let late = Outcome {
        converted: true,
        order_value_cents: 9_000,
        at_ms: NOW_MS + 60_000,
        ..not.clone()
    };
    assert_eq!(
        l.record_outcome(not.clone()).await.unwrap(),
        OutcomeRecorded::New
    );
    assert_eq!(
        l.record_outcome(not.clone()).await.unwrap(),
        OutcomeRecorded::Unchanged
    );
    assert_eq!(
        l.record_outcome(late.clone()).await.unwrap(),
        OutcomeRecorded::New
    );
    assert_eq!(
        l.record_outcome(not.clone()).await.unwrap(),
        OutcomeRecorded::Refused {
            current: late.clone()
        }
    );
    assert_eq!(l.outcomes(0).await.unwrap(), vec![o.clone(), late]);
}

/// An expired offer kept being returned as already offered, so the session
/// could never get another. A voided offer (by the sweeper, or by the
/// reservation itself when it finds its offer past expiry) frees the
/// session; the old reserve is released exactly once.
pub(crate) async fn reoffer_after_expiry(make: &impl Fn(Budgets) -> Arc<dyn Ledger>) {
    let l = make(budgets(1_500, None));
    let d = "default";
    let offered = |r: ReserveOutcome| match r {
        ReserveOutcome::Reserved(o) => o,
        other => panic!("expected a new offer, got {other:?}"),
    };
    let first = offered(l.reserve(req(d, "x", &[1_000], NOW_MS)).await.unwrap());
    let expired = first.expires_at_ms;
    // Still live one ms before expiry.
    assert!(matches!(
        l.reserve(req(d, "x", &[500], expired - 1)).await.unwrap(),
        ReserveOutcome::AlreadyOffered(ref o) if *o == first
    ));
    // Past expiry, before any sweep: the reservation voids it and offers anew
    // (1,000 released, so 1,000 fits again under the 1,500 cap).
    let second = offered(l.reserve(req(d, "x", &[1_000], expired)).await.unwrap());
    assert_ne!(second.voucher_code, first.voucher_code);
    let snap = l.snapshot(d, expired).await.unwrap();
    assert_eq!((snap.reserved_cents, snap.offers), (1_000, 2));
    assert_eq!(l.offer_for(d, "x").await.unwrap(), Some(second.clone()));
    assert_eq!(
        l.redeem(redeem(&first.voucher_code, "x", 20_000, expired))
            .await
            .unwrap(),
        RedeemOutcome::Expired
    );
    // The sweeper does not release the voided reserve a second time.
    assert_eq!(l.void_expired(expired).await.unwrap(), 0);
    assert_eq!(l.snapshot(d, expired).await.unwrap().reserved_cents, 1_000);

    // Voided by the sweeper: no offer until the next reservation.
    let later = second.expires_at_ms;
    assert_eq!(l.void_expired(later).await.unwrap(), 1);
    assert_eq!(l.offer_for(d, "x").await.unwrap(), None);
    let third = offered(l.reserve(req(d, "x", &[500], later)).await.unwrap());
    assert_eq!(l.snapshot(d, later).await.unwrap().reserved_cents, 500);
    // A redeemed offer is not freed by its expiry.
    assert!(matches!(
        l.redeem(redeem(&third.voucher_code, "x", 20_000, later))
            .await
            .unwrap(),
        RedeemOutcome::Accepted {
            discount_cents: 500,
            replayed: false,
        }
    ));
    assert!(matches!(
        l.reserve(req(d, "x", &[500], third.expires_at_ms + 1)).await.unwrap(),
        ReserveOutcome::AlreadyOffered(ref o) if *o == third
    ));
}

/// A session offered again after its offer expired has two rows on disk;
/// after a restart its offer is the new one and the budget is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_reopens_with_the_session_s_latest_offer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reoffer.sqlite3");
    let open = || SqliteLedger::open(&path, budgets(1_500, None), key()).unwrap();
    let at = NOW_MS + 3_600_000;
    let (second, before) = {
        let l = open();
        l.reserve(req("default", "x", &[1_000], NOW_MS))
            .await
            .unwrap();
        let ReserveOutcome::Reserved(second) =
            l.reserve(req("default", "x", &[1_000], at)).await.unwrap()
        else {
            panic!("offered again at the first offer's expiry")
        };
        (second, l.snapshot("default", at).await.unwrap())
    };
    let l = open();
    assert_eq!(l.offer_for("default", "x").await.unwrap(), Some(second));
    assert_eq!(l.snapshot("default", at).await.unwrap(), before);
    assert_eq!(l.rows().await.unwrap().len(), 2);
}

/// A Redeem retried after a lost answer got ALREADY_REDEEMED although the
/// money was captured. `code` (session "a", 1,000 off) was captured with an
/// order of 20,000 at `captured_ms`: the same redemption within the replay
/// window is accepted again, capturing nothing; another order value, or the
/// same after the window, is already redeemed. A retry says it is one, so
/// the shop never gives the discount to a second order of the same value.
pub(crate) async fn redeem_replay(l: &dyn Ledger, code: &str, captured_ms: i64) {
    let before = l.snapshot("default", captured_ms).await.unwrap();
    let accepted = RedeemOutcome::Accepted {
        discount_cents: 1_000,
        replayed: true,
    };
    for at in [captured_ms + 1, captured_ms + REDEEM_REPLAY_MS - 1] {
        assert_eq!(
            l.redeem(redeem(code, "a", 20_000, at)).await.unwrap(),
            accepted
        );
    }
    for (order, at) in [
        (20_001, captured_ms + 1),
        (19_999, captured_ms + 1),
        (20_000, captured_ms + REDEEM_REPLAY_MS),
    ] {
        assert_eq!(
            l.redeem(redeem(code, "a", order, at)).await.unwrap(),
            RedeemOutcome::AlreadyRedeemed,
            "{order} at {at}"
        );
    }
    assert_eq!(
        l.redeem(redeem(code, "b", 20_000, captured_ms + 1))
            .await
            .unwrap(),
        RedeemOutcome::Invalid,
        "another session's retry is no retry"
    );
    assert_eq!(
        l.snapshot("default", captured_ms).await.unwrap(),
        before,
        "nothing captured twice"
    );
}
