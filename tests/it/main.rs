//! One integration-test binary; each module tests one behaviour against a
//! real server on 127.0.0.1:0 (or the engine in-process where a server adds
//! nothing but time).

mod util;

// Decisions of archetypal sessions with the shipped default model.
mod decide;
// The daily cap under concurrency (property test and gRPC).
mod budget;
// Bad input: INVALID_ARGUMENT naming the field, state unchanged.
mod bad_input;
// Health, reflection, TTL and shutdown.
mod server;
// The `nudge` binary itself: no config, signals.
mod binary;
// Conformance suites for every store and ledger implementation.
mod store;
// Live caps and spend history on every ledger backend.
mod store_caps;
// The outcome rule and re-offers after expiry, on every ledger.
mod store_rules;
// Invariants over random event streams.
mod properties;
// Store outages: open on scoring, closed on money.
mod failures;
// Vouchers: redeem once, reject forgeries, outcomes, holdout, exploration, budget.
mod money;
// Ledger invariants over random interleavings (with restarts).
mod ledger_props;
// SIGKILL mid-load and restart: no offer lost or duplicated.
mod crash;
// The model and the policy sections go live without a restart.
mod reload;
// The ROI report over gRPC and from the CLI.
mod report;
// Decide's latency under concurrent Reports (a measurement, run by hand).
mod report_load;
// The exit-intent offer trigger.
mod trigger;
// The cold start: no greedy voucher on priors, exploration on the learning budget.
mod cold_start;
// Pacing state across restarts.
mod pacing_state;
// The Redis backends: replicas sharing a budget and sessions, Redis down.
mod redis;
// The Redis ledger against the core, faults, the binary on Redis, TLS.
mod redis_more;
// Caps changed at run time on a budget shared by replicas.
mod redis_caps;
// Sessions apart from money in Redis: a flood of new sessions, startup checks.
mod redis_flood;
// A full disk under the ledger and the decision log; file modes.
mod storage;
// Transport limits: half-sent requests, shedding, silent connections.
mod transport;
// Malformed protobuf: INVALID_ARGUMENT, never INTERNAL.
mod decode;
// The admin server: liveness, and Prometheus metrics that move with the calls.
mod metrics;
// Bearer tokens with roles on both ports.
mod auth;
// TLS on both ports.
mod tls;
// Ops changing campaigns at run time through the admin API.
mod ops;
// Campaign settings stores: one conformance suite on every backend.
mod settings_store;
// The admin status page in headless Chromium over WebDriver.
mod browser;
// The real binary's status page in headless Chromium.
mod status_page;
// `[autotrain]`: one daily run against a stand-in trainer.
mod autotrain;
// The model history: publish, rollback, replicas.
mod model_history;
mod model_registry;
// JSON and gRPC-Web on the gRPC port: same decisions, errors, CORS, tokens.
mod web_api;
// The browser collector in headless Chromium against the real binary.
mod collector;
// The client examples in clients/ (Node, PHP, Python) against the real binary.
mod clients;
// The README's walk-through, run as written against the real binary.
mod walkthrough;
