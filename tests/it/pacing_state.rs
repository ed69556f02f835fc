//! The pacing controller survives a restart: the server saves its state
//! next to the SQLite ledger every tick and at shutdown, and a new server on
//! the same data directory and budget day continues with the same lambda.

use crate::decide::hesitant_session;
use crate::util::*;
use nudge::app;
use nudge::clock::{Clock, ManualClock};
use nudge::engine::{Engine, Reason};
use nudge::grpc::validate;
use std::sync::Arc;
use std::time::Duration;

fn build(settings: &nudge::config::Settings) -> Arc<Engine> {
    let key = app::voucher_key(settings, Some(TEST_SECRET)).unwrap();
    Arc::new(
        app::build_engine(
            settings,
            fixture_model("flat_hesitant.json"),
            Arc::new(ManualClock::new(NOW_MS)) as Arc<dyn Clock>,
            key,
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn lambda_survives_a_restart_on_the_same_day() {
    let data = tempfile::tempdir().unwrap();
    // 10:00 UTC with the whole day's budget already committed: far ahead of
    // the pacing curve, so the controller raises lambda.
    let mut settings = settings("[budget]\ndaily_cap_cents = 2000\n");
    settings.data_dir = data.path().to_owned();
    let file = app::pacing_file(&settings).expect("the SQLite ledger keeps pacing state");

    let e = build(&settings);
    for id in ["a", "b", "c", "d"] {
        let req = decide(id, hesitant_session(20_000));
        let d = e
            .decide(validate::decide(&req, &e.limits, NOW_MS).unwrap())
            .await
            .unwrap();
        assert!(
            matches!(d.reason, Reason::Offered | Reason::BudgetExhausted),
            "{d:?}"
        );
    }
    e.update_pacing().await;
    // The pacing loop saves the state when it stops (and after every tick).
    let bg = app::Background::spawn(e.clone(), Duration::from_secs(60), Some(file.clone()));
    bg.stop().await;
    let lambda = e.budget("default").await.unwrap().lambda;
    assert!(lambda > 0.0, "{lambda}");
    assert!(file.exists());
    drop(e);

    let restarted = build(&settings);
    let again = restarted.budget("default").await.unwrap().lambda;
    assert!((again - lambda).abs() < 1e-12, "{lambda} -> {again}");

    // A memory ledger forgets the spend: no pacing file.
    let mut memory = settings.clone();
    memory.ledger_backend = nudge::config::LedgerBackend::Memory;
    assert!(app::pacing_file(&memory).is_none());
}

#[tokio::test]
async fn an_unreadable_pacing_file_starts_pacing_afresh() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings("");
    settings.data_dir = data.path().to_owned();
    std::fs::write(data.path().join(app::PACING_FILE), "{ not json").unwrap();
    let e = build(&settings);
    assert_eq!(e.budget("default").await.unwrap().lambda, 0.0);
}
