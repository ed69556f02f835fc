use nudge::grpc::pb;
use std::process::Command;
use std::time::{Duration, Instant};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The binary as a user runs it: no config, an ephemeral port, SIGTERM.
#[tokio::test]
async fn binary_serves_with_no_config_and_stops_on_sigterm() {
    // Only the data directory is redirected (to keep the checkout clean);
    // everything else is the zero-config default.
    let data = tempfile::tempdir().unwrap();
    let (mut child, addr) =
        crate::util::spawn_nudge(&["--data-dir".as_ref(), data.path().as_os_str()], &[]);

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "nudge.v1.Offers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");
    let r = pb::offers_client::OffersClient::new(channel.clone())
        .decide(pb::DecideRequest {
            session_id: "bin".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!((0.0..=1.0).contains(&r.purchase_probability));
    assert!(!r.model_version.is_empty());

    drop(channel);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "graceful exit, got {code:?}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The decision was flushed to the log on the way out, and the ledger,
    // the generated voucher key and the log live in the data directory.
    let log = nudge::decision_log::reader::read_dir(&data.path().join("log")).unwrap();
    assert!(log.iter().any(
        |r| matches!(r, nudge::decision_log::LogRecord::Decision(d) if d.session_id == "bin")
    ));
    assert!(data.path().join("ledger.sqlite3").exists());
    assert!(data.path().join("voucher.key").exists());
}
