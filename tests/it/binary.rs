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

    // The report only reads: the service's files are as it left them.
    let before = files_in(data.path());
    let out = nudge_cmd(&["report", "--data-dir"], data.path());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ROI report"), "{text}");
    // Except the WAL index (`-shm`): SQLite's shared memory, which every
    // reader of a WAL database creates or writes; it holds no ledger data.
    // Nor an empty write-ahead log (`-wal`), which a reader may create when
    // the service removed it at its clean stop: empty, it holds nothing.
    let not_shm = |v: Vec<(std::path::PathBuf, Vec<u8>)>| {
        v.into_iter()
            .filter(|f| {
                let name = f.0.to_string_lossy();
                !(name.ends_with("-shm") || name.ends_with("-wal") && f.1.is_empty())
            })
            .collect::<Vec<_>>()
    };
    let after = not_shm(files_in(data.path()));
    let before = not_shm(before);
    let names =
        |v: &[(std::path::PathBuf, Vec<u8>)]| v.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&after), names(&before));
    for (a, b) in after.iter().zip(&before) {
        assert!(a == b, "{} changed", a.0.display());
    }
}

/// Runs the binary with `args` then `path`, from the crate root.
fn nudge_cmd(args: &[&str], path: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .arg(path)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// Every file under `dir` with its bytes, sorted by path.
fn files_in(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_in(&p));
        } else {
            let bytes = std::fs::read(&p).unwrap();
            out.push((p, bytes));
        }
    }
    out.sort();
    out
}

/// `nudge report` on an empty data directory says nothing is recorded yet
/// and exits 0, and creates no ledger, log, key or directory.
#[test]
fn report_on_an_empty_data_dir_creates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let out = nudge_cmd(&["report", "--data-dir"], data.path());
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no ledger at"), "{text}");
    assert!(text.contains("no decision log under"), "{text}");
    assert!(text.contains("no eligible sessions"), "{text}");
    assert!(files_in(data.path()).is_empty());
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);

    // A data directory that does not exist is not created; JSON output
    // stays one document, the notes on stderr.
    let missing = data.path().join("never");
    let out = nudge_cmd(&["report", "--json", "--data-dir"], &missing);
    assert!(out.status.success(), "{out:?}");
    let report: nudge::report::RoiReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report.campaigns.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ledger at"));
    assert!(!missing.exists());
}

/// `nudge check-config` prints the settings in force as a config file:
/// saved and given back as `--config`, it prints the same; the voucher
/// secret and a Redis password never appear.
#[test]
fn check_config_prints_a_config_file_that_reads_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        "[voucher]\nsecret = \"correct horse battery staple\"\n\
         [budget]\ncampaigns = [{ id = \"spring\", daily_cap_cents = 25000 }]\n\
         [policy]\noffer_on = \"exit_intent\"\n",
    )
    .unwrap();
    let out = nudge_cmd(&["check-config", "--config"], &config);
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(!printed.contains("horse"), "{printed}");
    for line in [
        "[policy]",
        "offer_on = \"exit_intent\"",
        "exit_intent_window_ms = 10000",
        "id = \"spring\"",
        "learning_cap_cents = 2500",
        "[pacing]",
        "[log]",
    ] {
        assert!(printed.contains(line), "{line} missing in\n{printed}");
    }
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &printed).unwrap();
    let out = nudge_cmd(&["check-config", "--config"], &again);
    assert!(out.status.success(), "{out:?}");
    // The secret is left out, so the rest must match.
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().replace(
            "# secret: not set: NUDGE_VOUCHER_SECRET when set, else <data_dir>/voucher.key",
            "# secret = \"<set>\" (set in the config file; never printed)"
        ),
        printed
    );
}
