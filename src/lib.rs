//! nudge: per-session voucher decisions.
//!
//! The web tier streams a session's events and asks for a decision; nudge
//! answers with a purchase probability, a segment and, only when it pays and
//! the budget allows, a voucher.
//!
//! # Layout
//!
//! Where a Decide goes: [`grpc::service`] (handler) -> [`grpc::validate`]
//! (protobuf in, [`engine::inputs`] out) -> [`engine::decide`] (the session
//! from [`store`], the pure [`engine::assess`] over [`domain`], the money
//! step against [`ledger`], one record to [`decision_log`]) ->
//! [`grpc::convert`] (the answer out). [`app`] built all of it from
//! [`config`] and serves it.
//!
//! - `bin/nudge.rs`: the binary; parses flags and calls [`app`] or [`sim`].
//! - [`config`]: the TOML configuration (`raw`: as written; `sections`: each
//!   section validated once) into [`config::Settings`] (`autotrain`: the `[autotrain]` section), and
//!   the one loader;
//!   `print`: the settings in force written back as TOML (`check-config`).
//! - [`domain`]: pure, no I/O, no transport.
//!   - [`domain::session`]: validated events and the fixed-size per-session aggregate.
//!   - [`domain::features`]: the feature table computed from a session (serving and training).
//!   - [`domain::model`]: the model file format, validated at load; scoring;
//!     [`domain::model::uplift`]: the learned voucher response and the
//!     served lifts (conservative, monotone in the amount).
//!   - [`domain::logistic`]: the logistic link (sigmoid, logit).
//!   - [`domain::policy`]: segments and the voucher rule (expected net value;
//!     no greedy offer on an unlearned prior).
//!   - [`domain::experiment`]: holdout and exploration draws (the cold share
//!     until a response is learned), propensities.
//!   - [`domain::pacing`]: the budget pacing controller (shadow price on voucher cost).
//!   - [`domain::voucher`]: voucher codes: minting and verification (HMAC).
//! - [`engine`]: the decision engine the fronts call; no transport.
//!   - [`engine::inputs`] / [`engine::outputs`]: validated requests in, decisions out.
//!   - [`engine::assess`]: features -> score -> segment -> verdict, pure.
//!   - [`engine::decide`]: Decide as its steps (session, assess, money step).
//!   - [`engine::records`]: what a decision writes to the log.
//!   - [`engine::campaigns`]: a campaign change committed with its audit
//!     entry, given to the ledger and swapped in, and the refresh that
//!     brings every replica's changes.
//!   - [`engine::models`]: the model in service, published to the model
//!     history, swapped whole, rolled back; the poll that brings every
//!     replica the live one.
//!   - [`engine::report`]: the ROI report over the log and the ledger (one
//!     shared pass over the bytes appended since the last).
//!   - [`engine::error`]: the engine's one error type.
//! - [`ledger`]: the voucher budget trait and its backends.
//!   - [`ledger::budget`]: campaign caps, the budget day, the one budget rule
//!     and its learning-budget companion.
//!   - [`ledger::core`]: the bookkeeping state machine every local ledger wraps.
//!   - [`ledger::offered`]: the sessions that may hold an offer, so that
//!     Decide asks the SQLite writer only about those.
//!   - [`ledger::memory`]: in memory (tests, simulation).
//!   - [`ledger::sqlite`]: the embedded durable default (`sqlite_health`:
//!     the writer's view of a failing disk; `core_tests`: the core's own;
//!     `sqlite_tests`: its writer
//!     against real storage faults; `sqlite_read`: the file read without
//!     writing, for `nudge report`).
//! - [`campaigns`]: campaign settings that change at run time (caps, pause,
//!   tiers, intent floor, shares, schedule), validated like the config;
//!   the [`campaigns::Catalog`] snapshot Decide reads;
//!   [`campaigns::store`]: where they and the audit trail are kept (memory,
//!   SQLite).
//! - [`models`]: the served model's history (who published which model
//!   when, rollbacks), kept to go back to and shared by replicas: the
//!   [`models::ModelRegistry`] trait, memory and
//!   [`models::sqlite`] (`models.sqlite3`); the Redis one is
//!   `redis::models`. [`engine::models`] publishes, serves and rolls back.
//! - [`store`]: the session store trait; [`store::memory`], the moka default.
//! - [`redis`]: shared state for several replicas: the connection
//!   ([`redis::RedisConn`]), the ledger in Lua scripts (`ledger`:
//!   [`redis::RedisLedger`]) and the session store (`sessions`:
//!   [`redis::RedisSessionStore`]), the campaign settings (`campaigns`:
//!   [`redis::RedisSettingsStore`]), the model history (`models`:
//!   [`redis::RedisModelRegistry`]); `checks`: what each instance's settings
//!   risk (money evictable, sessions sharing it or never evicting), read
//!   and logged at start ([`redis::check_instances`]).
//! - [`decision_log`]: the JSON-lines record format; [`decision_log::entry`]
//!   (a decision as the request hands it over, written as its record);
//!   [`decision_log::writer`]
//!   (the service's background writer) and [`decision_log::reader`] (the one
//!   folder reader, for the report and the trainer, whole or incremental).
//! - [`report`]: the incremental ROI report (treatment versus holdout), no protobuf;
//!   [`report::sessions`]: its per-session state, maintained from the log.
//! - [`grpc`]: the gRPC adapter: [`grpc::service`] (thin handlers),
//!   [`grpc::validate`], [`grpc::convert`], [`grpc::status`] (errors to
//!   `tonic::Status`), [`grpc::codec`] (malformed protobuf is
//!   INVALID_ARGUMENT), [`grpc::pb`] (generated code), [`grpc::web`] (the
//!   JSON API on the same port: proto3 JSON into the same handlers, gRPC
//!   codes to HTTP statuses).
//! - [`app`]: the running service: [`app::wiring`] (engine from settings),
//!   [`app::model_source`], [`app::secrets`] (the voucher key),
//!   [`app::pacing_state`], [`app::tasks`] (sweeper, pacing loop),
//!   [`app::reload`] (the model and the config's policy sections go live
//!   without a restart),
//!   [`app::serve`] (gRPC with graceful shutdown and the transport limits),
//!   [`app::listener`] (the accept loop of both ports: connection cap,
//!   silent connections, backoff, TLS handshakes; the admin port's HTTP), [`app::admission`] (requests in flight, the
//!   body deadline) and [`app::report_files`] (`nudge report`: the report
//!   from the service's files, read-only), [`app::tls`] (`[tls]`: the
//!   certificate loaded once),
//!   [`app::autotrain`] (`[autotrain]`: the daily `nudge-train retrain`
//!   run as a child process on a single node), [`app::model_cli`]
//!   (`nudge model`: list, publish, roll back, pull).
//! - [`admin`]: the admin HTTP server on its own address: Prometheus
//!   metrics, liveness and readiness; [`admin::api`]: the JSON API
//!   (campaigns, spend history, audit trail, model history and rollback);
//!   [`admin::page`]: the status page's HTML, with [`admin::page::models`]
//!   (the model history and its rollback button); [`admin::status`]: what
//!   the page shows, gathered, and its sign-in; [`app::rpc_metrics`] counts gRPC calls; [`app::readiness`]
//!   probes the stores every second.
//! - [`auth`]: bearer tokens with roles (client, viewer, operator) for both
//!   ports, compared in constant time; the axum helpers and the gRPC layer.
//! - [`sim`]: the policy simulator on generated traffic (an offline tool):
//!   [`sim::synth`] (the seeded visitor generator with its true behaviour;
//!   [`sim::synth::world`]: the response worlds and their measurement),
//!   `world` (visitors on the virtual clock), `policies` (blanket,
//!   heat-tier, nudge through the real engine, the oracle), `score`,
//!   `days` (the multi-day closed loop), [`sim::retrain`] (the nightly
//!   retraining trait and the `nudge-train` subprocess), `render` (the
//!   one-day table, SVG, HTML), `render_days` (the same for several days)
//!   and `diag` (diagnostics run by hand).
//! - [`clock`]: injected time (system and manual clocks).
//! - [`files`]: the one atomic-write helper, file modes, the disk-full switch.
//! - [`html`]: the one HTML escaper for written pages.
//! - [`throttle`]: repeating errors logged once per interval with a count;
//!   the subscriber a writer thread logs to.
//!
//! Protobuf and `tonic` appear only in [`grpc`], [`app`], the adapter
//! sections of [`auth`] and the binary.
pub mod admin;
pub mod app;
pub mod auth;
pub mod campaigns;
pub mod clock;
pub mod config;
pub mod decision_log;
pub mod domain;
pub mod engine;
pub mod files;
pub mod grpc;
pub mod html;
pub mod ledger;
pub mod models;
pub mod redis;
pub mod report;
pub mod sim;
pub mod store;
pub mod throttle;
