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
        // Every sixth session (one that does not buy) gets no outcome:
        // counted as not converted, and said so.
        if i % 6 == 0 {
            continue;
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
    assert_eq!(
        (
            report.sessions_without_outcome,
            camp.sessions_without_outcome,
            rpc.sessions_without_outcome,
            rpc.campaigns[0].sessions_without_outcome
        ),
        (10, 10, 10, 10)
    );
    assert!(
        rpc.table
            .contains("sessions without a recorded outcome: 10 of 60 (counted as not converted)"),
        "{}",
        rpc.table
    );
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
/// outcomes of sessions without an eligible decision are counted apart in the report.
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
    // The one session has its outcome: none is missing one, in the JSON and
    // the typed answer alike.
    assert_eq!(
        (
            report.sessions_without_outcome,
            rpc.sessions_without_outcome,
            rpc.campaigns[0].sessions_without_outcome
        ),
        (0, 0, 0)
    );
    assert!(
        rpc.table.contains("without an eligible decision"),
        "{}",
        rpc.table
    );
    s.stop().await;
}

/// A decision log of `sessions` eligible sessions (half held out, two
/// decisions each), in several files, written before the server starts.
/// Returns its size in bytes.
fn write_log(dir: &std::path::Path, sessions: usize) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut size = 0;
    for (f, chunk) in (0..sessions).collect::<Vec<_>>().chunks(2_000).enumerate() {
        let mut text = String::new();
        for &i in chunk {
            for k in 0..2i64 {
                let line = serde_json::json!({
                    "type": "decision", "v": 1, "at_ms": NOW_MS - 3_600_000 + i as i64 + k,
                    "session_id": format!("old{i}"), "campaign": "default", "model_version": "m",
                    "features": {"cart_value_cents": 20000.0, "dwell_s": 120.0, "pages": 5.0},
                    "probability": 0.3, "segment": "hesitant", "intent_value_cents": 20000,
                    "eligible": true, "policy_tier_cents": 1000,
                    "action_cents": if i % 2 == 0 { 0 } else { 1000 },
                    "propensity": 1.0, "holdout": i % 2 == 0, "explored": false,
                    "lambda": 0.0, "reason": "offered",
                });
                text += &format!("{line}\n");
            }
        }
        std::fs::write(
            dir.join(format!("decisions-20261122T09-{:04}.jsonl", f + 1)),
            &text,
        )
        .unwrap();
        size += text.len() as u64;
    }
    size
}

/// Bytes of every log file under `dir`.
fn log_bytes(dir: &std::path::Path) -> u64 {
    nudge::decision_log::reader::log_files(dir)
        .unwrap()
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

/// Every Report re-read the whole log: 16 concurrent calls on a large log
/// took 16 full reads' worth of memory and starved Decide. Now they share
/// one pass, keep one entry per session, and a later report reads only
/// the bytes appended since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reports_share_one_pass_and_later_ones_read_only_new_bytes() {
    let data = tempfile::tempdir().unwrap();
    let log_dir = data.path().join("log");
    let sessions = 12_000;
    let before = write_log(&log_dir, sessions);
    let s = start_in(
        settings("[log]\nreport_refresh_ms = 600000\n[budget]\ndaily_cap_cents = 1000000\n"),
        fixture_model("flat_hesitant.json"),
        data,
    )
    .await;
    let channel = s.channel().await;
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let mut c = pb::offers_client::OffersClient::new(channel.clone());
            tokio::spawn(async move {
                c.report(pb::ReportRequest { since_ms: 0 })
                    .await
                    .unwrap()
                    .into_inner()
                    .json
            })
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    let state = &s.engine.report_state;
    assert_eq!(state.passes(), 1, "16 calls, one pass");
    assert!(answers.iter().all(|a| *a == answers[0]));
    let report: RoiReport = serde_json::from_str(&answers[0]).unwrap();
    let total = &report.campaigns[0].total;
    assert_eq!(
        (total.treatment.sessions, total.holdout.sessions),
        (sessions as u64 / 2, sessions as u64 / 2)
    );
    assert_eq!(total.treatment.offered, sessions as u64 / 2);
    // One compact entry per session; the log's bytes are not kept.
    assert_eq!(state.sessions(), sessions);
    assert_eq!(
        (state.last_pass_bytes(), state.bytes_read()),
        (before, before)
    );

    // New decisions, then a report (another window, so not the kept
    // answer): it reads the appended bytes and nothing else.
    let mut c = s.client().await;
    for i in 0..5 {
        c.decide(decide(&format!("new{i}"), hesitant_session(20_000)))
            .await
            .unwrap();
    }
    let later: RoiReport = serde_json::from_str(
        &c.report(pb::ReportRequest { since_ms: 1 })
            .await
            .unwrap()
            .into_inner()
            .json,
    )
    .unwrap();
    let now = log_bytes(&log_dir);
    assert!(now > before);
    assert_eq!(state.passes(), 2);
    assert_eq!(state.last_pass_bytes(), now - before, "only the new bytes");
    assert_eq!(state.bytes_read(), now);
    let total = &later.campaigns[0].total;
    assert_eq!(
        total.treatment.sessions + total.holdout.sessions,
        sessions as u64 + 5
    );

    // The same numbers as reading the whole log.
    let decisions: Vec<_> = nudge::decision_log::reader::read_dir(&log_dir)
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            nudge::decision_log::LogRecord::Decision(d) => Some(d),
            _ => None,
        })
        .collect();
    let full = nudge::report::roi_report(&nudge::report::ReportInput {
        decisions: &decisions,
        outcomes: &[],
        captured: &[],
        margin_rate: later.margin_rate,
        since_ms: Some(1),
    });
    assert_eq!(later, full);
    // Asked again within the refresh interval: the kept answer, no pass.
    c.report(pb::ReportRequest { since_ms: 0 }).await.unwrap();
    assert_eq!(state.passes(), 2);
}
