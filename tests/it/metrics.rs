//! The admin server of the real binary (the metrics recorder is one per
//! process, so each server here is its own process): liveness, and
//! `/metrics` in the Prometheus text format, its counters moving with the
//! calls made.

use crate::crash::eligible;
use crate::util::{self, admin_addr, http_get};
use nudge::grpc::pb;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const SECRET: &str = "metrics-test secret, not for production";
const CAP: i64 = 150_000;

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",...}` into pairs; panics on anything else.
fn parse_labels(text: &str, line: &str) -> Vec<(String, String)> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or_else(|| panic!("labels not in braces: {line}"));
    let mut out = Vec::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("label without =\": {line}"));
        assert!(valid_name(key), "label name {key:?}: {line}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    let (_, c) = chars
                        .next()
                        .unwrap_or_else(|| panic!("dangling escape: {line}"));
                    assert!(matches!(c, '\\' | '"' | 'n'), "bad escape: {line}");
                    value.push(c);
                }
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        };
        out.push((key.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    out
}

/// Parses the exposition strictly: every sample `name{labels} value`, every
/// name valid, every family declared by one TYPE line. Samples by
/// `name{labels}` as written.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(valid_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                "two TYPE lines: {line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "bad name: {line}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            for (k, _) in parse_labels(labels, line) {
                assert!(!k.contains("session") && !k.contains("visitor"), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| {
                typed
                    .get(*base)
                    .is_some_and(|k| k == "histogram" || k == "summary")
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "no TYPE for {family}: {line}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// The sum over the series of `name` carrying every `key="value"` in `with`.
fn sum(samples: &BTreeMap<String, f64>, name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| s.split('{').next() == Some(name))
        .filter(|(s, _)| {
            with.iter()
                .all(|(k, v)| s.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v)
        .sum()
}

fn scrape(admin: &str) -> (String, BTreeMap<String, f64>) {
    let (status, body) = http_get(admin, "/metrics");
    assert_eq!(status, 200, "{body}");
    let samples = parse(&body);
    (body, samples)
}

/// `promtool check metrics` when installed (Debian package `prometheus`).
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not on PATH: the strict parse above is the only format check");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Lint findings (missing HELP) are reported but only a parse error fails.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("error while linting"), "promtool: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_strictly_and_count_the_calls_made() {
    let dir = tempfile::tempdir().unwrap();
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
    let data = dir.path().join("data");
    let (mut child, addr, logs) = util::spawn_nudge_with_logs(
        &[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
        &[("NUDGE_VOUCHER_SECRET", SECRET)],
    );
    let admin = admin_addr(&logs);
    assert_eq!(http_get(&admin, "/healthz").0, 200);
    assert_eq!(http_get(&admin, "/nope").0, 404);
    // SQLite's writer answers the readiness probe.
    let (ready, body) = http_get(&admin, "/readyz");
    assert_eq!(
        (ready, body.contains("\"ready\":true")),
        (200, true),
        "{body}"
    );

    let (_, before) = scrape(&admin);
    let mut client = pb::offers_client::OffersClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut offers = Vec::new();
    let mut version = String::new();
    for i in 0..3 {
        let session = format!("metrics-session-{i}");
        let r = client
            .decide(eligible(session.clone()))
            .await
            .unwrap()
            .into_inner();
        version = r.model_version.clone();
        offers.extend(r.offer.map(|o| (session, o)));
    }
    assert_eq!(
        offers.len(),
        3,
        "every eligible session is offered a voucher"
    );
    let (session, offer) = &offers[0];
    let redeemed = client
        .redeem(pb::RedeemRequest {
            voucher_code: offer.voucher_code.clone(),
            session_id: session.clone(),
            order_value_cents: 20_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(redeemed.status, pb::RedeemStatus::Accepted as i32);
    let bad = client
        .decide(pb::DecideRequest::default())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let (text, after) = scrape(&admin);
    let delta =
        |name: &str, with: &[(&str, &str)]| sum(&after, name, with) - sum(&before, name, with);
    assert_eq!(delta("nudge_decisions_total", &[]), 3.0, "{text}");
    assert_eq!(
        delta("nudge_decisions_total", &[("reason", "offered")]),
        3.0,
        "{text}"
    );
    assert_eq!(
        delta("nudge_vouchers_offered_total", &[("campaign", "default")]),
        3.0
    );
    let offered_cents: i64 = offers.iter().map(|(_, o)| o.amount_cents).sum();
    assert_eq!(
        delta("nudge_vouchers_offered_cents_total", &[]),
        offered_cents as f64
    );
    assert_eq!(delta("nudge_vouchers_redeemed_total", &[]), 1.0, "{text}");
    assert_eq!(
        delta("nudge_vouchers_redeemed_cents_total", &[]),
        offer.amount_cents as f64
    );
    let decide = [("method", "Decide")];
    assert_eq!(
        delta("nudge_rpc_requests_total", &[decide[0], ("code", "Ok")]),
        3.0
    );
    assert_eq!(
        delta(
            "nudge_rpc_requests_total",
            &[decide[0], ("code", "InvalidArgument")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        delta("nudge_rpc_requests_total", &[("method", "Redeem")]),
        1.0
    );
    assert_eq!(
        delta("nudge_rpc_duration_seconds_count", &decide),
        4.0,
        "{text}"
    );
    // Sub-millisecond buckets resolve a Decide answered from memory.
    assert!(
        after
            .keys()
            .any(|s| s.starts_with("nudge_rpc_duration_seconds_bucket{")
                && s.contains("method=\"Decide\"")
                && s.split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|le| le.parse::<f64>().ok())
                    .is_some_and(|le| le < 0.001)),
        "{text}"
    );
    assert_eq!(
        sum(&after, "nudge_budget_cap_cents", &[("campaign", "default")]),
        CAP as f64,
        "{text}"
    );
    for gauge in [
        "nudge_budget_reserved_cents",
        "nudge_budget_captured_cents",
        "nudge_budget_remaining_cents",
        "nudge_pacing_lambda",
    ] {
        assert!(
            after
                .keys()
                .any(|s| s.starts_with(&format!("{gauge}{{campaign=\"default\"}}"))),
            "{gauge}: {text}"
        );
    }
    assert_eq!(
        sum(&after, "nudge_model_info", &[("version", &version)]),
        1.0,
        "{text}"
    );
    assert_eq!(sum(&after, "nudge_build_info", &[]), 1.0, "{text}");
    assert!(
        !text.contains("metrics-session") && !text.contains(&offer.voucher_code),
        "no ids in metrics"
    );
    promtool_check(&text);

    // The one shutdown signal stops both servers.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

/// The gRPC health status of the Offers service (1 SERVING, 2 NOT_SERVING).
async fn offers_health(addr: &str) -> i32 {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    client
        .check(HealthCheckRequest {
            service: "nudge.v1.Offers".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// Polls until `/readyz` answers `status` and gRPC health `health`, or
/// `within` passes (then panics with the last answers).
async fn wait_for(admin: &str, addr: &str, status: u16, health: i32, within: Duration) -> String {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        let (got, body) = http_get(admin, "/readyz");
        let grpc = offers_health(addr).await;
        if got == status && grpc == health {
            eprintln!(
                "readyz {status}, grpc health {health} after {:?}",
                start.elapsed()
            );
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readyz {got} {body}, grpc health {grpc}: wanted {status} and {health}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_turns_readiness_and_grpc_health_off_and_back_on() {
    let Some(redis) = crate::redis::redis_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n\
             [redis]\nurl = \"{}\"\nkey_prefix = \"ready\"\ntimeout_ms = 500\n",
            dir.path().join("data"),
            redis.settings("ready").url
        ),
    )
    .unwrap();
    let (mut child, addr, logs) = util::spawn_nudge_with_logs(
        &["--config".as_ref(), config.as_os_str()],
        &[("NUDGE_VOUCHER_SECRET", SECRET)],
    );
    let admin = admin_addr(&logs);
    let body = wait_for(&admin, &addr, 200, 1, Duration::from_secs(5)).await;
    assert!(body.contains("\"ready\":true"), "{body}");

    let redis_dir = redis.crash();
    let body = wait_for(&admin, &addr, 503, 2, Duration::from_secs(5)).await;
    assert!(
        body.contains("\"ledger\"") && body.contains("\"sessions\""),
        "{body}"
    );
    assert_eq!(
        http_get(&admin, "/healthz").0,
        200,
        "the process is still up"
    );

    let _redis = crate::redis::start(redis_dir, &["--appendonly", "no"]).unwrap();
    wait_for(&admin, &addr, 200, 1, Duration::from_secs(10)).await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}
