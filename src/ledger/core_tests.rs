//! The bookkeeping core's own tests.
use super::*;
use crate::ledger::Budgets;

const NOW: i64 = 1_795_341_600_000;

fn reserve(core: &mut LedgerCore, session: &str) -> (ReserveOutcome, Vec<Effect>) {
    core.reserve(&ReserveRequest {
        campaign: crate::ledger::DEFAULT_CAMPAIGN,
        session_id: session,
        candidates: &[1_000],
        now_ms: NOW,
        expires_at_ms: NOW + 60_000,
        learning: false,
    })
    .unwrap()
}

#[test]
fn undo_of_a_batch_restores_exactly_the_state_before_it() {
    let mut core = LedgerCore::new(Budgets::single(10_000), VoucherKey::random());
    let (ReserveOutcome::Reserved(kept), _) = reserve(&mut core, "kept") else {
        panic!("reserved")
    };
    let rows_before = core.rows();
    let snap_before = core.snapshot(crate::ledger::DEFAULT_CAMPAIGN, NOW).unwrap();
    // A batch: a new offer, its redemption, the redemption of the older
    // offer and an expiry sweep.
    let mut batch = Vec::new();
    let (ReserveOutcome::Reserved(new), e) = reserve(&mut core, "new") else {
        panic!("reserved")
    };
    batch.extend(e);
    for (code, session) in [(&new.voucher_code, "new"), (&kept.voucher_code, "kept")] {
        let (o, e) = core.redeem(&RedeemRequest {
            code,
            session_id: session,
            order_value_cents: 20_000,
            min_order_cents: 0,
            now_ms: NOW + 1,
        });
        assert!(matches!(o, RedeemOutcome::Accepted { .. }));
        batch.extend(e);
    }
    let (_, e) = reserve(&mut core, "expiring");
    batch.extend(e);
    batch.extend(core.void_expired(NOW + 120_000));
    assert_eq!(batch.len(), 5);
    core.undo(&batch);
    assert_eq!(core.rows(), rows_before);
    assert_eq!(
        core.snapshot(crate::ledger::DEFAULT_CAMPAIGN, NOW).unwrap(),
        snap_before
    );
    assert!(core.invariant_holds());
    assert_eq!(core.offer_for(crate::ledger::DEFAULT_CAMPAIGN, "new"), None);
    // The undone session can be offered again, within the same budget.
    assert!(matches!(
        reserve(&mut core, "new").0,
        ReserveOutcome::Reserved(_)
    ));
}

#[test]
fn a_reserve_that_fails_after_voiding_an_expired_offer_leaves_the_state_unchanged() {
    let mut core = LedgerCore::new(Budgets::single(10_000), VoucherKey::random());
    let (ReserveOutcome::Reserved(old), _) = reserve(&mut core, "s") else {
        panic!("reserved")
    };
    let rows_before = core.rows();
    let later = NOW + 120_000;
    // 150 cents is no whole euro: minting fails after the void.
    let r = core.reserve(&ReserveRequest {
        campaign: crate::ledger::DEFAULT_CAMPAIGN,
        session_id: "s",
        candidates: &[150],
        now_ms: later,
        expires_at_ms: later + 60_000,
        learning: false,
    });
    assert!(r.is_err());
    assert_eq!(core.rows(), rows_before);
    assert!(core.invariant_holds());
    assert_eq!(
        core.offer_for(crate::ledger::DEFAULT_CAMPAIGN, "s")
            .map(|o| o.voucher_code),
        Some(old.voucher_code)
    );
}

#[test]
fn undo_of_a_reoffer_after_expiry_gives_the_session_back_its_old_offer() {
    let mut core = LedgerCore::new(Budgets::single(10_000), VoucherKey::random());
    let (ReserveOutcome::Reserved(old), _) = reserve(&mut core, "s") else {
        panic!("reserved")
    };
    let snap_before = core.snapshot(crate::ledger::DEFAULT_CAMPAIGN, NOW).unwrap();
    let later = NOW + 120_000;
    let (outcome, batch) = core
        .reserve(&ReserveRequest {
            campaign: crate::ledger::DEFAULT_CAMPAIGN,
            session_id: "s",
            candidates: &[1_000],
            now_ms: later,
            expires_at_ms: later + 60_000,
            learning: false,
        })
        .unwrap();
    assert!(matches!(outcome, ReserveOutcome::Reserved(_)));
    assert_eq!(
        batch.len(),
        2,
        "the void of the expired offer, then the new one"
    );
    core.undo(&batch);
    assert!(core.invariant_holds());
    assert_eq!(
        core.snapshot(crate::ledger::DEFAULT_CAMPAIGN, NOW).unwrap(),
        snap_before
    );
    let live = core
        .offer_for(crate::ledger::DEFAULT_CAMPAIGN, "s")
        .expect("the old offer is the session's again");
    assert_eq!(live.voucher_code, old.voucher_code);
}

fn caps(daily: i64, learning: i64) -> CampaignBudget {
    CampaignBudget {
        daily_cap_cents: daily,
        total_cap_cents: None,
        learning_cap_cents: learning,
    }
}

#[test]
fn a_lower_revision_never_undoes_a_newer_cap() {
    let d = crate::ledger::DEFAULT_CAMPAIGN;
    let mut core = LedgerCore::new(Budgets::single(10_000), VoucherKey::random());
    assert_eq!(core.revision(d), 0);
    assert!(core.set_budget(d, caps(3_000, 300), 3));
    assert!(!core.set_budget(d, caps(9_000, 900), 2), "stale");
    assert_eq!(core.snapshot(d, NOW).unwrap().cap_cents, 3_000);
    assert!(
        core.set_budget(d, caps(3_000, 300), 3),
        "same revision again"
    );
    assert!(
        !core.set_budget(d, caps(9_000, 900), 0),
        "the config's seed"
    );
    assert!(core.set_budget(d, caps(1_000, 100), 4));
    let snap = core.snapshot(d, NOW).unwrap();
    assert_eq!((snap.cap_cents, snap.learning_cap_cents), (1_000, 100));
    assert_eq!(core.revision(d), 4);
    // A campaign unknown until now is known from its first caps on.
    assert!(matches!(
        core.snapshot("autumn", NOW),
        Err(LedgerError::UnknownCampaign(_))
    ));
    assert!(core.set_budget("autumn", caps(500, 0), 0));
    assert_eq!(core.snapshot("autumn", NOW).unwrap().remaining_cents, 500);
}

#[test]
fn a_cap_lowered_under_the_spend_refuses_new_offers_and_keeps_old_ones() {
    let d = crate::ledger::DEFAULT_CAMPAIGN;
    let mut core = LedgerCore::new(Budgets::single(10_000), VoucherKey::random());
    let (ReserveOutcome::Reserved(kept), _) = reserve(&mut core, "a") else {
        panic!("reserved")
    };
    reserve(&mut core, "b");
    assert!(core.set_budget(d, caps(1_500, 0), 1));
    assert!(core.invariant_holds());
    assert!(!core.within_caps());
    assert_eq!(
        reserve(&mut core, "c").0,
        ReserveOutcome::Exhausted { remaining_cents: 0 }
    );
    let (outcome, _) = core.redeem(&RedeemRequest {
        code: &kept.voucher_code,
        session_id: "a",
        order_value_cents: 20_000,
        min_order_cents: 0,
        now_ms: NOW + 1,
    });
    assert!(matches!(outcome, RedeemOutcome::Accepted { .. }));
    assert!(core.invariant_holds());
}

proptest::proptest! {
    /// Whatever order changes arrive in, the caps in force are those
    /// of the latest change among the highest revision, every change is
    /// answered applied exactly when its revision is not below the one
    /// in force, and no reservation made after a change takes the day
    /// above the cap then in force.
    #[test]
    fn caps_follow_the_highest_revision(
        steps in proptest::collection::vec((0u64..6, 0i64..8, proptest::bool::ANY), 1..40),
    ) {
        let d = crate::ledger::DEFAULT_CAMPAIGN;
        let mut core = LedgerCore::new(Budgets::single(4_000), VoucherKey::random());
        let (mut rev, mut cap) = (0u64, 4_000i64);
        for (i, (r, thousands, change)) in steps.into_iter().enumerate() {
            if change {
                let daily = thousands * 1_000;
                let applied = core.set_budget(d, caps(daily, 0), r);
                proptest::prop_assert_eq!(applied, r >= rev);
                if applied {
                    (rev, cap) = (r, daily);
                }
            } else {
                let before = core.snapshot(d, NOW).unwrap();
                let (outcome, _) = reserve(&mut core, &format!("s{i}"));
                let after = core.snapshot(d, NOW).unwrap();
                if let ReserveOutcome::Reserved(_) = outcome {
                    proptest::prop_assert!(
                        after.reserved_cents <= cap,
                        "{} reserved under a cap of {} (before: {})",
                        after.reserved_cents, cap, before.reserved_cents
                    );
                } else {
                    proptest::prop_assert_eq!(after.reserved_cents, before.reserved_cents);
                    proptest::prop_assert!(before.reserved_cents + 1_000 > cap);
                }
            }
            let snap = core.snapshot(d, NOW).unwrap();
            proptest::prop_assert_eq!(snap.cap_cents, cap);
            proptest::prop_assert_eq!(core.revision(d), rev);
            proptest::prop_assert!(core.invariant_holds());
        }
    }
}

#[test]
fn spend_by_day_sums_each_day_with_offers() {
    let d = crate::ledger::DEFAULT_CAMPAIGN;
    let mut core = LedgerCore::new(Budgets::single(10_000), VoucherKey::random());
    reserve(&mut core, "a");
    let next = NOW + crate::ledger::MS_PER_DAY;
    core.reserve(&ReserveRequest {
        campaign: d,
        session_id: "b",
        candidates: &[500],
        now_ms: next,
        expires_at_ms: next + 60_000,
        learning: true,
    })
    .unwrap();
    let today = core.budgets().day_of(NOW);
    let tomorrow = core.budgets().day_of(next);
    let spend = core.spend_by_day(d, "2020-01-01", "2020-01-31").unwrap();
    assert!(spend.is_empty());
    let from = chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d").unwrap();
    let from = (from - chrono::Days::new(3)).format("%Y-%m-%d").to_string();
    let spend = core.spend_by_day(d, &from, &tomorrow).unwrap();
    assert_eq!(
        spend,
        vec![
            DaySpend {
                day: today,
                reserved_cents: 1_000,
                captured_cents: 0,
                offers: 1,
                learning_reserved_cents: 0,
                learning_captured_cents: 0,
            },
            DaySpend {
                day: tomorrow,
                reserved_cents: 500,
                captured_cents: 0,
                offers: 1,
                learning_reserved_cents: 500,
                learning_captured_cents: 0,
            },
        ]
    );
    assert!(matches!(
        core.spend_by_day("nope", &from, &from),
        Err(LedgerError::UnknownCampaign(_))
    ));
}
