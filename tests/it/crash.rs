use nudge::grpc::pb::{self, event::Kind, Reason};
use nudge::ledger::sqlite::SqliteLedger;
use nudge::ledger::{Budgets, OfferState};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "crash-test secret, not for production";
const CAP: i64 = 150_000;

/// Starts `nudge serve` on an ephemeral port; returns the child and address.
fn spawn(data: &Path, config: &Path) -> (Child, String) {
    crate::util::spawn_nudge(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        &[("NUDGE_VOUCHER_SECRET", SECRET)],
    )
}

/// A session that qualifies for a voucher under `flat_hesitant.json`.
pub(crate) fn eligible(session: String) -> pb::DecideRequest {
    pb::DecideRequest {
        session_id: session,
        events: vec![pb::Event {
            at_ms: 0,
            kind: Some(Kind::CartAdd(pb::CartChange {
                product_id: "p".into(),
                unit_price_cents: 20_000,
                quantity: 1,
            })),
        }],
        ..Default::default()
    }
}

/// SIGKILL mid-load, restart, and compare the ledger with every offer the
/// clients received: none lost, none duplicated, budget consistent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_load_loses_and_duplicates_no_offer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"tests/fixtures/flat_hesitant.json\"\n\
             [budget]\ndaily_cap_cents = {CAP}\n\
             [policy]\noffer_on_priors = true\n\
             [experiment]\nholdout_share = 0.0\nexplore_share = 0.0\n\
             [pacing]\nenabled = false\n"
        ),
    )
    .unwrap();
    let (mut child, addr) = spawn(&data, &config);
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Clients hammer Decide with fresh eligible sessions and keep every
    // offer they receive.
    let received: Arc<Mutex<HashMap<String, pb::Offer>>> = Arc::default();
    let mut clients = Vec::new();
    for c in 0..8 {
        let mut client = pb::offers_client::OffersClient::new(channel.clone());
        let received = received.clone();
        clients.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let session = format!("c{c}-s{i}");
                match client.decide(eligible(session.clone())).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        if let Some(o) = r.offer {
                            assert_eq!(r.reason, Reason::Offered as i32);
                            received.lock().unwrap().insert(session, o);
                        }
                    }
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Let load build up, then kill -9 while requests are in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.lock().unwrap().len() < 40 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    drop(channel);
    let received = received.lock().unwrap().clone();
    assert!(
        received.len() >= 40,
        "load produced offers before the kill: {}",
        received.len()
    );

    // Restart on the same data directory: every offer a client saw is still
    // there and is returned again, with the same code.
    let (mut child, addr) = spawn(&data, &config);
    let mut client = pb::offers_client::OffersClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for (session, offer) in &received {
        let r = client
            .decide(eligible(session.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.reason, Reason::AlreadyOffered as i32, "{session}: {r:?}");
        assert_eq!(r.offer.as_ref(), Some(offer), "{session}");
    }
    let budget = client
        .budget(pb::BudgetRequest::default())
        .await
        .unwrap()
        .into_inner();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());

    // The ledger file itself: one offer per session, codes unique, every
    // received offer present with the same amount, and the budget equal to
    // the sum of the rows and within the cap.
    let ledger = SqliteLedger::open(
        &data.join("ledger.sqlite3"),
        Budgets::single(CAP),
        nudge::domain::voucher::VoucherKey::from_secret(SECRET),
    )
    .unwrap();
    let rows = ledger.rows().await.unwrap();
    let mut by_session = HashMap::new();
    let mut codes = std::collections::HashSet::new();
    for r in &rows {
        assert!(
            by_session.insert(r.session_id.clone(), r.clone()).is_none(),
            "duplicate offer for {}",
            r.session_id
        );
        assert!(codes.insert(r.code.clone()), "duplicate code");
    }
    for (session, offer) in &received {
        let row = by_session
            .get(session)
            .unwrap_or_else(|| panic!("offer of {session} lost"));
        assert_eq!(row.code, offer.voucher_code);
        assert_eq!(row.amount_cents, offer.amount_cents);
    }
    let reserved: i64 = rows
        .iter()
        .filter(|r| r.state == OfferState::Reserved)
        .map(|r| r.amount_cents)
        .sum();
    assert!(reserved <= CAP);
    assert_eq!(budget.reserved_cents, reserved);
    assert_eq!(budget.remaining_cents, CAP - reserved);
    eprintln!(
        "crash test: {} offers received by clients, {} in the ledger ({} committed but unanswered when killed), {} cents reserved of {CAP}",
        received.len(),
        rows.len(),
        rows.len() - received.len(),
        reserved
    );
}
