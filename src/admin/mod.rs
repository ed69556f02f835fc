//! The admin HTTP server, on its own address apart from gRPC: Prometheus
//! metrics (`GET /metrics`), liveness (`GET /healthz`: the process answers)
//! and readiness (`GET /readyz`: 200 while the stores answer, 503 with a
//! JSON body naming what failed). Operators scrape
//! and probe it without a gRPC client, and a flood of Offers calls cannot
//! starve it of connections.

pub mod api;
pub mod page;
pub mod status;

use crate::app::listener::{Incoming, Timeouts, ADMIN_MAX_CONNECTIONS};
use crate::app::readiness::Readiness;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Latency buckets in seconds: from 50 µs (a Decide answered from memory)
/// to 5 s (the body deadline's order).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Installs the process-wide metrics recorder (once per process) and
/// returns the handle `/metrics` renders.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)?
        .install_recorder()
}

/// Records the build and the served model's version at start (a reload
/// moves the latter: the old version's series to 0, the live one to 1).
pub fn record_static(model_version: &str) {
    describe();
    metrics::gauge!("nudge_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("nudge_model_info", "version" => model_version.to_owned()).set(1.0);
}

/// HELP lines: what each family counts.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "nudge_rpc_requests_total",
        "gRPC calls answered, by method and status code"
    );
    describe_histogram!(
        "nudge_rpc_duration_seconds",
        Unit::Seconds,
        "gRPC call latency, by method"
    );
    describe_counter!(
        "nudge_decisions_total",
        "Decide answers, by reason and segment"
    );
    describe_counter!(
        "nudge_vouchers_offered_total",
        "vouchers offered, by campaign and tier"
    );
    describe_counter!(
        "nudge_vouchers_offered_cents_total",
        "cents of vouchers offered"
    );
    describe_counter!(
        "nudge_vouchers_redeemed_total",
        "vouchers redeemed (retries not counted), by tier"
    );
    describe_counter!(
        "nudge_vouchers_redeemed_cents_total",
        "cents of discount redeemed"
    );
    describe_counter!(
        "nudge_requests_shed_total",
        "calls refused as RESOURCE_EXHAUSTED, too many in flight"
    );
    describe_counter!(
        "nudge_connections_refused_total",
        "connections closed at the connection cap"
    );
    describe_counter!(
        "nudge_decision_log_dropped_total",
        "decision records not written, by cause"
    );
    describe_counter!("nudge_ledger_errors_total", "ledger calls that failed");
    describe_counter!(
        "nudge_session_store_errors_total",
        "session store calls that failed (decisions then scored on the request alone)"
    );
    describe_counter!(
        "nudge_vouchers_voided_total",
        "offers voided unredeemed at their expiry"
    );
    describe_counter!(
        "nudge_budget_exhausted_total",
        "times a campaign's daily budget ran out (once per campaign and day)"
    );
    describe_gauge!(
        "nudge_budget_learning_spent_cents",
        "today's exploration vouchers reserved and redeemed, by campaign"
    );
    describe_gauge!(
        "nudge_campaign_paused",
        "1 while a campaign is paused, by campaign"
    );
    describe_gauge!("nudge_sessions", "sessions held in memory");
    describe_counter!(
        "nudge_tls_handshakes_failed_total",
        "TLS handshakes that failed or timed out, by port"
    );
    describe_gauge!(
        "nudge_decision_log_queue",
        "decision records waiting to be written"
    );
    describe_gauge!("nudge_budget_cap_cents", "today's budget cap, by campaign");
    describe_gauge!(
        "nudge_budget_reserved_cents",
        "today's open offers, by campaign"
    );
    describe_gauge!(
        "nudge_budget_captured_cents",
        "today's redeemed discounts, by campaign"
    );
    describe_gauge!(
        "nudge_budget_remaining_cents",
        "what can still be reserved today, by campaign"
    );
    describe_gauge!(
        "nudge_pacing_lambda",
        "the pacing controller's shadow price, by campaign"
    );
    describe_gauge!("nudge_model_info", "the served model's version");
    describe_gauge!("nudge_build_info", "the running build's version");
}

/// The admin routes: probes and metrics, and with `api` the JSON API and
/// the status page.
pub fn app(
    metrics: PrometheusHandle,
    readiness: watch::Receiver<Readiness>,
    api: Option<api::Api>,
) -> axum::Router {
    let base = router(metrics, readiness);
    match api {
        Some(api) => base.merge(api::routes(api)),
        None => base,
    }
}

/// The probe and metrics routes.
pub fn router(metrics: PrometheusHandle, readiness: watch::Receiver<Readiness>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let now = readiness.borrow().clone();
                async move {
                    let status = if now.ready() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (
                        status,
                        [(header::CONTENT_TYPE, "application/json")],
                        now.to_json(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

/// Serves the admin routes on `listener` until `shutdown` resolves; with
/// `tls`, over TLS only. At most [`ADMIN_MAX_CONNECTIONS`] connections,
/// each closed when silent past `timeouts` (the gRPC port's settings).
/// Histograms are compacted every few seconds so that memory stays bounded
/// between scrapes.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    metrics: PrometheusHandle,
    tls: Option<tokio_rustls::TlsAcceptor>,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep_handle = metrics.clone();
    let upkeep = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep_handle.run_upkeep();
        }
    });
    let incoming = Incoming::new(listener, ADMIN_MAX_CONNECTIONS, timeouts)
        .with_tls(tls)
        .named("admin");
    let served = crate::app::listener::serve_http(incoming, app, shutdown).await;
    upkeep.abort();
    tracing::info!("admin stopped");
    served
}
