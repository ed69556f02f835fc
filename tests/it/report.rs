use crate::decide::hesitant_session;
use crate::util::*;
use nudge::grpc::pb::{self, RedeemStatus};
use nudge::report::RoiReport;
use std::process::Command;

/// Decide, redeem and record outcomes through gRPC, then read the ROI
/// report over gRPC and from the CLI: both agree and match what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_over_grpc_and_cli_matches_what_happened() {
    let mut s = start(
        settings("[experiment]\nholdout_share = 0.5\nexplore_share = 0.0\n[budget]\ndaily_cap_cents = 1000000\n[log]\nrotate_bytes = 4096\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    let (mut n_t, mut n_h, mut cost, mut conv_t, mut conv_h) = (0u64, 0u64, 0i64, 0u64, 0u64);
    for i in 0..60 {
        let session = format!("r{i}");
        let r = c
            .decide(decide(&session, hesitant_session(20_000)))
            .await
            .unwrap()
            .into_inner();
        let buys = i % 3 != 0;
        if r.holdout {
            n_h += 1;
        } else {
            n_t += 1;
            let offer = r.offer.expect("treated sessions get the offer");
            if buys {
                let red = c
                    .redeem(pb::RedeemRequest {
                        voucher_code: offer.voucher_code,
                        session_id: session.clone(),
                        order_value_cents: 20_000,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(red.status, RedeemStatus::Accepted as i32);
                cost += red.discount_cents;
            }
        }
        if buys {
            if r.holdout {
                conv_h += 1;
            } else {
                conv_t += 1;
            }
        }
        c.record_outcome(pb::RecordOutcomeRequest {
            session_id: session,
            converted: buys,
            order_value_cents: if buys { 20_000 } else { 0 },
        })
        .await
        .unwrap();
    }
    let rpc = c
        .report(pb::ReportRequest { since_ms: 0 })
        .await
        .unwrap()
        .into_inner();
    let report: RoiReport = serde_json::from_str(&rpc.json).unwrap();
    assert!(rpc.table.contains("default"), "{}", rpc.table);
    let camp = &report.campaigns[0];
    assert_eq!(camp.campaign, "default");
    let total = &camp.total;
    assert_eq!(
        (total.treatment.sessions, total.holdout.sessions),
        (n_t, n_h)
    );
    assert_eq!(
        (total.treatment.conversions, total.holdout.conversions),
        (conv_t, conv_h)
    );
    assert_eq!(total.treatment.voucher_cost_cents, cost);
    assert_eq!(total.treatment.revenue_cents, conv_t as i64 * 20_000);
    assert_eq!(total.incremental.voucher_cost_cents, cost);
    // Incremental margin = n_T * (mean_T - mean_H) of 0.3 * revenue.
    let mean = |conv: u64, n: u64| 0.3 * 20_000.0 * conv as f64 / n as f64;
    let want = n_t as f64 * (mean(conv_t, n_t) - mean(conv_h, n_h));
    assert!((total.incremental.margin_cents.unwrap() - want).abs() < 1e-6);
    assert!((total.incremental.roi.unwrap() - want / cost as f64).abs() < 1e-9);

    // The typed answer carries the same numbers as the JSON.
    assert_eq!(rpc.campaigns.len(), report.campaigns.len());
    assert_eq!(rpc.margin_rate, report.margin_rate);
    let typed = &rpc.campaigns[0];
    assert_eq!(typed.campaign, "default");
    assert_eq!(typed.cells.len(), camp.cells.len());
    let t = typed.total.as_ref().unwrap();
    assert_eq!((t.policy_tier_cents, t.segment.as_str()), (None, ""));
    let (tr, ho) = (t.treatment.as_ref().unwrap(), t.holdout.as_ref().unwrap());
    assert_eq!(
        (tr.sessions, ho.sessions, tr.conversions, ho.conversions),
        (n_t, n_h, conv_t, conv_h)
    );
    assert_eq!(tr.voucher_cost_cents, cost);
    let inc = t.incremental.as_ref().unwrap();
    assert_eq!(inc.margin_cents, total.incremental.margin_cents);
    assert_eq!(inc.roi, total.incremental.roi);
    assert_eq!(
        inc.net_margin_ci95.map(|i| (i.lo, i.hi)),
        total.incremental.net_margin_ci95.map(|i| (i.lo, i.hi))
    );
    let first = &typed.cells[0];
    assert_eq!(first.policy_tier_cents, camp.cells[0].policy_tier_cents);
    assert_eq!(
        Some(first.segment.as_str()),
        camp.cells[0].segment.as_deref()
    );

    // The CLI reads the same files and prints the same document.
    s.shutdown().await;
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["report", "--json", "--data-dir"])
        .arg(s.data.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: RoiReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, report);
    assert!(
        !s.data.path().join("voucher.key").exists(),
        "a report creates no key"
    );
}

/// RecordOutcome accepted any number of flips and sessions nudge never saw.
/// Now "not converted" may become "converted" once (a delayed order), a
/// converted outcome is final (FAILED_PRECONDITION naming the session), and
/// outcomes of sessions without a decision are counted apart in the report.
#[tokio::test]
async fn a_late_order_counts_once_and_unknown_sessions_apart() {
    let s = start(
        settings("[budget]\ndaily_cap_cents = 1000000\n"),
        fixture_model("flat_hesitant.json"),
    )
    .await;
    let mut c = s.client().await;
    c.decide(decide("late", hesitant_session(20_000)))
        .await
        .unwrap();
    let outcome = |session: &str, order_value_cents: i64| pb::RecordOutcomeRequest {
        session_id: session.into(),
        converted: order_value_cents > 0,
        order_value_cents,
    };
    let recorded = |r: Result<tonic::Response<pb::RecordOutcomeResponse>, tonic::Status>| {
        r.unwrap().into_inner().recorded
    };
    assert!(recorded(c.record_outcome(outcome("late", 0)).await));
    assert!(!recorded(c.record_outcome(outcome("late", 0)).await));
    assert!(recorded(c.record_outcome(outcome("late", 20_000)).await));
    assert!(!recorded(c.record_outcome(outcome("late", 20_000)).await));
    for flip in [0, 15_000] {
        let e = c.record_outcome(outcome("late", flip)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("session_id \"late\""), "{e:?}");
    }
    // A session nudge never decided on: accepted, counted apart.
    assert!(recorded(
        c.record_outcome(outcome("never-seen", 9_900)).await
    ));

    let rpc = c
        .report(pb::ReportRequest { since_ms: 0 })
        .await
        .unwrap()
        .into_inner();
    let report: RoiReport = serde_json::from_str(&rpc.json).unwrap();
    let total = &report.campaigns[0].total;
    assert_eq!(total.treatment.sessions + total.holdout.sessions, 1);
    assert_eq!(total.treatment.conversions + total.holdout.conversions, 1);
    assert_eq!(
        total.treatment.revenue_cents + total.holdout.revenue_cents,
        20_000
    );
    assert_eq!((report.unmatched_outcomes, rpc.unmatched_outcomes), (1, 1));
    assert!(rpc.table.contains("without a decision"), "{}", rpc.table);
    s.stop().await;
}
