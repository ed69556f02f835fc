//! The JSON API and gRPC-Web on the gRPC port: one session decided the same
//! over all three protocols, JSON errors naming their field, CORS as
//! configured, bearer tokens, event times checked on every front, and the
//! limits in HTTP's words (429 when busy, 504 at the request deadline).

use crate::decide::hesitant_session;
use crate::util::{self, decide, default_model, NOW_MS, TEST_SECRET};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nudge::app;
use nudge::clock::{Clock, ManualClock};
use nudge::config::Settings;
use nudge::grpc::pb;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

const CLIENT: &str = "client-token-6a8d2e4f1b";
const VIEWER: &str = "viewer-token-9b3e1f7a2c";

struct Web {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl Web {
    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.handle.await.unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// A server with the tokens and CORS origins of `toml`.
async fn serve(toml: &str) -> Web {
    let mut settings: Settings = util::settings(toml);
    let data = tempfile::tempdir().unwrap();
    settings.data_dir = data.path().to_owned();
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let key = app::voucher_key(&settings, Some(TEST_SECRET)).unwrap();
    let engine = Arc::new(
        app::build_engine_with(
            &settings,
            default_model(),
            clock as Arc<dyn Clock>,
            key,
            nudge::files::DiskFull::default(),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = app::ServeOptions {
        server: settings.server,
        tokens: settings.admin_tokens.clone(),
        cors: settings.cors.clone(),
        ..app::ServeOptions::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app::run_with_options(listener, engine, options, async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    Web {
        addr,
        stop: Some(tx),
        handle,
        _data: data,
    }
}

/// One HTTP/1.1 request: status, headers, body.
async fn http1(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    http_request(false, method, url, headers, body).await
}

/// One request over HTTP/2 (prior knowledge, as a proxy in front of nudge
/// speaks it) when `h2`, else HTTP/1.1: status, headers, body.
async fn http_request(
    h2: bool,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(h2)
        .build_http::<Full<Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .expect("an HTTP response");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// A JSON call: status and parsed body.
async fn json_call(web: &Web, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    let (status, _, bytes) = http1("POST", &web.url(path), &h, body.to_string()).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{path}: {status}: not JSON ({e}): {bytes:?}"));
    (status, v)
}

/// A unary gRPC-Web call over HTTP/1.1 (HTTP/2 when `h2`), framed by
/// hand: the message, and the `grpc-status` of the trailer frame.
async fn grpc_web<Req: prost::Message, Resp: prost::Message + Default>(
    web: &Web,
    method: &str,
    req: &Req,
    h2: bool,
) -> (Option<Resp>, String) {
    let msg = req.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let (status, headers, body) = http_request(
        h2,
        "POST",
        &web.url(&format!("/nudge.v1.Offers/{method}")),
        &[
            ("content-type", "application/grpc-web+proto"),
            ("x-grpc-web", "1"),
        ],
        frame,
    )
    .await;
    assert_eq!(status, 200, "{headers:?}");
    let mut rest = &body[..];
    let mut message = None;
    let mut grpc_status = headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    while rest.len() >= 5 {
        let flag = rest[0];
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let payload = &rest[5..5 + len];
        if flag & 0x80 == 0 {
            message = Some(Resp::decode(payload).unwrap());
        } else {
            let trailers = String::from_utf8_lossy(payload);
            for line in trailers.split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    if k.trim().eq_ignore_ascii_case("grpc-status") {
                        grpc_status = v.trim().to_owned();
                    }
                }
            }
        }
        rest = &rest[5 + len..];
    }
    (message, grpc_status)
}

#[tokio::test]
async fn one_session_decides_the_same_over_grpc_grpc_web_and_json() {
    let web = serve("").await;
    let mut grpc = pb::offers_client::OffersClient::connect(web.url(""))
        .await
        .unwrap();
    let over_grpc = grpc
        .decide(decide("same-grpc", hesitant_session(15_000)))
        .await
        .unwrap()
        .into_inner();
    let (over_web, status) = grpc_web::<_, pb::DecideResponse>(
        &web,
        "Decide",
        &decide("same-web", hesitant_session(15_000)),
        false,
    )
    .await;
    assert_eq!(status, "0");
    let over_web = over_web.expect("a message");
    // gRPC-Web over HTTP/2 too, as a proxy in front of nudge may send it.
    let (over_web_h2, status) = grpc_web::<_, pb::DecideResponse>(
        &web,
        "Decide",
        &decide("same-web-h2", hesitant_session(15_000)),
        true,
    )
    .await;
    assert_eq!(status, "0");
    let over_web_h2 = over_web_h2.expect("a message");
    let request = serde_json::to_value(decide("same-json", hesitant_session(15_000))).unwrap();
    let (code, over_json) = json_call(&web, "/v1/decide", &[], &request).await;
    assert_eq!(code, 200, "{over_json}");

    assert_eq!(
        over_grpc.reason,
        pb::Reason::Offered as i32,
        "{over_grpc:?}"
    );
    for r in [&over_grpc, &over_web, &over_web_h2] {
        assert_eq!(r.segment, pb::Segment::Hesitant as i32);
        assert_eq!(r.purchase_probability, over_grpc.purchase_probability);
        assert_eq!(
            r.offer.as_ref().map(|o| o.amount_cents),
            over_grpc.offer.as_ref().map(|o| o.amount_cents)
        );
    }
    // The JSON answer in its documented shape: enums by name, 64-bit
    // integers as strings, the same numbers.
    assert_eq!(over_json["segment"], "SEGMENT_HESITANT");
    assert_eq!(over_json["reason"], "REASON_OFFERED");
    assert_eq!(
        over_json["purchase_probability"].as_f64().unwrap(),
        over_grpc.purchase_probability
    );
    let amount = over_grpc.offer.as_ref().unwrap().amount_cents;
    assert_eq!(over_json["offer"]["amount_cents"], amount.to_string());
    assert_eq!(over_json["holdout"], false, "zero values are emitted");
    // The JSON request parsed back is the request that was sent.
    let back: pb::DecideRequest = serde_json::from_value(request).unwrap();
    assert_eq!(back, decide("same-json", hesitant_session(15_000)));
    web.stop().await;
}

#[tokio::test]
async fn json_errors_name_the_field() {
    let web = serve("").await;
    // A bad event: the validation of gRPC, the field path of gRPC.
    let (code, body) = json_call(
        &web,
        "/v1/track",
        &[],
        &json!({"session_id": "s1", "events": [
            {"at_ms": (NOW_MS - 1_000).to_string(), "cart_add": {"product_id": "p", "unit_price_cents": 100, "quantity": 1}},
            {"at_ms": NOW_MS - 1_000, "cart_add": {"product_id": "p", "unit_price_cents": -5, "quantity": 1}}
        ]}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["code"], "INVALID_ARGUMENT");
    assert_eq!(
        body["field_violations"][0]["field"], "events[1].cart_add.unit_price_cents",
        "{body}"
    );
    // A bad JSON type at a nested path.
    let (code, body) = json_call(
        &web,
        "/v1/decide",
        &[],
        &json!({"session_id": "s2", "events": [{"page_view": {"dwell_ms": "long"}}]}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["field_violations"][0]["field"], "events[0].page_view.dwell_ms",
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("malformed JSON"),
        "{body}"
    );
    // Wrong content type, too big, unknown route.
    let (code, _, bytes) = http1(
        "POST",
        &web.url("/v1/decide"),
        &[("content-type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(code, 415, "{bytes:?}");
    let big = json!({"session_id": "x".repeat(5 * 1024 * 1024)});
    let (code, body) = json_call(&web, "/v1/track", &[], &big).await;
    assert_eq!(code, 413, "{body}");
    let (code, body) = json_call(&web, "/v1/nope", &[], &json!({})).await;
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");
    // A call that succeeds: 64-bit integers accepted as numbers.
    let (code, body) = json_call(
        &web,
        "/v1/track",
        &[],
        &json!({"session_id": "s3", "events": [{"at_ms": NOW_MS - 1_000, "interaction": {"signal": "SIGNAL_EXIT_INTENT"}}]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, json!({"accepted": 1, "session_events": 1}));
    web.stop().await;
}

#[tokio::test]
async fn cors_preflight_follows_the_config() {
    let web = serve("[http]\ncors_allow_origins = [\"https://shop.example\"]").await;
    let preflight = |origin: &'static str| {
        let url = web.url("/v1/decide");
        async move {
            http1(
                "OPTIONS",
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    (
                        "access-control-request-headers",
                        "content-type,authorization",
                    ),
                ],
                "",
            )
            .await
        }
    };
    let (code, headers, _) = preflight("https://shop.example").await;
    assert!(code < 300, "{code}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-grpc-web"),
        "{allowed}"
    );
    let (_, headers, _) = preflight("https://evil.example").await;
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{headers:?}"
    );
    // A simple call from the allowed origin sees the exposed headers.
    let (_, headers, _) = http1(
        "POST",
        &web.url("/v1/budget"),
        &[
            ("content-type", "application/json"),
            ("origin", "https://shop.example"),
        ],
        "{}",
    )
    .await;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://shop.example"
    );
    web.stop().await;

    // No origins configured: no CORS headers at all.
    let web = serve("").await;
    let (_, headers, _) = http1(
        "OPTIONS",
        &web.url("/v1/decide"),
        &[
            ("origin", "https://shop.example"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert!(
        headers.get("access-control-allow-origin").is_none(),
        "{headers:?}"
    );
    web.stop().await;
}

#[tokio::test]
async fn bearer_tokens_guard_the_json_routes() {
    let web = serve(&format!(
        "[admin]\ntokens = [\n  {{ name = \"web\", role = \"client\", token = \"{CLIENT}\" }},\n  {{ name = \"dash\", role = \"viewer\", token = \"{VIEWER}\" }},\n]"
    ))
    .await;
    let req = json!({"session_id": "auth-1"});
    let (code, body) = json_call(&web, "/v1/decide", &[], &req).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["code"], "UNAUTHENTICATED");
    let viewer = format!("Bearer {VIEWER}");
    let (code, body) = json_call(&web, "/v1/decide", &[("authorization", &viewer)], &req).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["code"], "PERMISSION_DENIED");
    let client = format!("Bearer {CLIENT}");
    let (code, body) = json_call(&web, "/v1/decide", &[("authorization", &client)], &req).await;
    assert_eq!(code, 200, "{body}");
    // The viewer reads the budget; the client does not.
    let (code, body) = json_call(
        &web,
        "/v1/budget",
        &[("authorization", &viewer)],
        &json!({}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["campaign"], "default");
    let (code, _) = json_call(
        &web,
        "/v1/budget",
        &[("authorization", &client)],
        &json!({}),
    )
    .await;
    assert_eq!(code, 403);
    web.stop().await;
}

#[tokio::test]
async fn event_times_in_seconds_or_stale_are_refused_on_grpc_and_json() {
    let web = serve("").await;
    let mut grpc = pb::offers_client::OffersClient::connect(web.url(""))
        .await
        .unwrap();
    let idle_ttl_ms = util::settings("").idle_ttl.as_millis() as i64;
    for (at_ms, expected) in [
        (NOW_MS / 1_000, "milliseconds"),
        (NOW_MS - idle_ttl_ms - 60_000, "older"),
    ] {
        let mut events = hesitant_session(15_000);
        events[2].at_ms = at_ms;
        let e = grpc
            .track(pb::TrackRequest {
                session_id: "times".into(),
                events: events.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("events[2].at_ms"), "{}", e.message());
        let req = serde_json::to_value(pb::TrackRequest {
            session_id: "times".into(),
            events,
            ..Default::default()
        })
        .unwrap();
        let (code, body) = json_call(&web, "/v1/track", &[], &req).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["field_violations"][0]["field"], "events[2].at_ms");
        let why = body["field_violations"][0]["description"].as_str().unwrap();
        assert!(why.contains(expected), "{why}");
    }
    web.stop().await;
}

#[tokio::test]
async fn curl_over_http1_tracks_and_decides() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "curl is needed in CI");
        eprintln!("skipped: curl is not installed");
        return;
    }
    let web = serve("").await;
    let url = web.url("/v1/track");
    let at = (NOW_MS - 5_000).to_string();
    let body = format!(
        r#"{{"session_id":"curl-1","events":[{{"at_ms":"{at}","page_view":{{"page_kind":"PAGE_KIND_HOME","dwell_ms":3000}}}}]}}"#
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "--http1.1",
                "-sS",
                "-w",
                "\n%{http_code}",
                "-H",
                "content-type: application/json",
                "-d",
            ])
            .arg(body)
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json_text, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(
        code,
        "200",
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(v["accepted"], 1);
    web.stop().await;
}

/// A JSON `POST /v1/decide` over its own HTTP/1.1 connection that declares
/// a body of 200 bytes and sends only its first: it holds an in-flight slot
/// until the request deadline. The connection, to read the answer from.
async fn half_sent_json(web: &Web) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(web.addr).await.unwrap();
    let head = format!(
        "POST /v1/decide HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{{",
        web.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Reads one whole HTTP/1.1 answer (the server closes or states its
/// length): status and JSON body.
async fn read_answer(tcp: &mut tokio::net::TcpStream) -> (u16, Value) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .expect("a content-length");
            if body.len() >= length || n == 0 {
                let status = head[9..12].parse().unwrap();
                return (status, serde_json::from_str(&body[..length]).unwrap());
            }
        }
        assert!(n > 0, "the connection closed before a whole answer");
    }
}

/// The JSON API sheds what is beyond the in-flight limit with 429 at once,
/// and a body that never finishes arriving ends at the request deadline
/// with 504, both with the JSON error body; then calls are served again.
#[tokio::test]
async fn json_calls_beyond_the_in_flight_limit_get_429_and_a_stalled_body_504() {
    let web = serve("[server]\nmax_concurrent_requests = 2\nrequest_timeout_ms = 1000\n").await;
    let mut held = vec![half_sent_json(&web).await, half_sent_json(&web).await];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let (code, body) = json_call(&web, "/v1/decide", &[], &json!({"session_id": "busy"})).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["code"], "RESOURCE_EXHAUSTED", "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "shed at once, not at the deadline"
    );
    for tcp in &mut held {
        let (code, body) =
            tokio::time::timeout(std::time::Duration::from_secs(5), read_answer(tcp))
                .await
                .expect("ended by the deadline");
        assert_eq!(code, 504, "{body}");
        assert_eq!(body["code"], "DEADLINE_EXCEEDED", "{body}");
    }
    let (code, body) = json_call(&web, "/v1/decide", &[], &json!({"session_id": "free"})).await;
    assert_eq!(code, 200, "{body}");
    web.stop().await;
}
