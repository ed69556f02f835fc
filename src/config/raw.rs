//! The config file as written: every field optional, unknown fields refused.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to serve gRPC on. Default `127.0.0.1:50051`.
    pub listen: Option<String>,
    /// Address of the admin HTTP server (`/metrics`, `/healthz`). Default
    /// `127.0.0.1:9464`; `""` turns it off.
    pub admin_listen: Option<String>,
    /// Model file. Default `models/default.json`; when that file is absent the
    /// copy embedded in the binary at build time is served.
    pub model: Option<PathBuf>,
    #[serde(default)]
    pub sessions: RawSessions,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub budget: RawBudget,
    #[serde(default)]
    pub limits: RawLimits,
    /// Transport limits: connections, streams, in-flight requests, timeouts.
    #[serde(default)]
    pub server: RawServer,
    /// Directory for the ledger, the decision log and the generated voucher
    /// key. Default `data` (relative to the working directory).
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub ledger: RawLedger,
    /// Shared state for several replicas (see `redis_backend`).
    #[serde(default)]
    pub redis: RawRedis,
    #[serde(default)]
    pub voucher: RawVoucher,
    #[serde(default)]
    pub experiment: RawExperiment,
    /// Budget pacing (see `pacing::PacingConfig` for every field and default).
    #[serde(default)]
    pub pacing: crate::domain::pacing::PacingConfig,
    #[serde(default)]
    pub log: RawLog,
    /// Bearer tokens for the admin and gRPC ports (see `auth`).
    #[serde(default)]
    pub admin: RawAdmin,
    /// TLS for both ports.
    #[serde(default)]
    pub tls: RawTls,
    /// The JSON API and gRPC-Web on the gRPC port: CORS for browsers.
    #[serde(default)]
    pub http: RawHttp,
    /// The daily retraining of a single-node service.
    #[serde(default)]
    pub autotrain: super::RawAutotrain,
    /// The models kept to go back to.
    #[serde(default)]
    pub model_history: RawModelHistory,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelHistory {
    /// Earlier models kept besides the live one (default 5, at most 100).
    pub keep: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Origins a browser page may call the JSON API and gRPC-Web from
    /// (`https://shop.example`), or `["*"]` for any. Default: none, and no
    /// CORS headers at all.
    pub cors_allow_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Tokens with their names and roles (`client`, `viewer`, `operator`).
    /// Default: none; with none at all (here and in `NUDGE_ADMIN_TOKENS`)
    /// auth is off.
    pub tokens: Option<Vec<RawToken>>,
    /// `NUDGE_ADMIN_TOKENS` as the binary read it (`name:role:token`,
    /// separated by `,`), merged with `tokens`. Not a config file field.
    #[serde(skip)]
    pub env_tokens: Option<super::Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// 1 to 64 printable ASCII characters, unique; logged and shown.
    pub name: String,
    /// At least 16 visible ASCII bytes, unique; a secret, never shown.
    pub token: String,
    /// `client`, `viewer` or `operator`.
    pub role: String,
}

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawToken")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of the server's certificate chain, leaf first. With
    /// `key_file`, both ports speak TLS only. Default: plaintext.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    /// `sqlite` (durable, the default), `redis` (shared by every replica;
    /// needs `[redis] url`) or `memory` (tests, demos: forgets everything on
    /// restart).
    pub backend: Option<String>,
    /// How often expired offers are voided. Default 60 s.
    pub sweep_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVoucher {
    /// Secret for the voucher-code MAC (at least 16 bytes). Default: the
    /// `NUDGE_VOUCHER_SECRET` environment variable, else a random key
    /// generated once into `<data_dir>/voucher.key`. Never logged.
    pub secret: Option<String>,
    /// Smallest order a voucher can be redeemed on, cents. Default 9900.
    pub min_order_cents: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExperiment {
    /// Share of eligible visitors held out (never get a voucher). Default 0.10.
    pub holdout_share: Option<f64>,
    /// Share of eligible non-holdout visitors given a random action once
    /// the model file carries a learned voucher response. Default 0.05.
    pub explore_share: Option<f64>,
    /// The same share while the model has no learned voucher response at
    /// all (cold start). Default 0.30.
    pub cold_explore_share: Option<f64>,
    /// Salt of the holdout and exploration hashes. Default "nudge-v1".
    pub salt: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Write the decision log. Default true.
    pub enabled: Option<bool>,
    /// Rotate a log file above this size. Default 64 MiB.
    pub rotate_bytes: Option<u64>,
    /// Records queued before dropping under overload. Default 65536.
    pub queue: Option<usize>,
    /// Log files are deleted once all their records are older than this
    /// many days (1..=3650). Default 14. A retrain sees no further back.
    pub retain_days: Option<u64>,
    /// The log folder is kept under this many bytes, oldest files deleted
    /// first (at least `rotate_bytes`). Default 10737418240 (10 GiB).
    pub retain_bytes: Option<u64>,
    /// A Report answer is served again for this long before the log is
    /// read anew, ms (how stale a report may be). Default 1000.
    pub report_refresh_ms: Option<u64>,
    /// Sessions the report keeps state for at most; past it the earliest
    /// assigned are dropped and reports start later. Default 1,000,000.
    pub report_max_sessions: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// A session idle for longer than this starts afresh. Default 1800 s.
    pub idle_ttl_secs: Option<u64>,
    /// Upper bound on sessions held in memory. Default 1,000,000.
    pub max_sessions: Option<u64>,
    /// `memory` (the default: one replica) or `redis` (sessions shared by
    /// every replica, so a session's requests may reach any of them; needs
    /// `[redis] url` and `ledger.backend = "redis"`).
    pub backend: Option<String>,
    /// With `backend = "redis"`: the Redis instance for session state, kept
    /// apart from the ledger's so that sessions can be evicted (run it with
    /// `maxmemory` and `maxmemory-policy allkeys-lru`) and money never.
    /// Same forms as `[redis] url`; `[redis]`'s key prefix, timeout and CA
    /// file apply to it. Default: `[redis] url`, one instance for both,
    /// which the service warns about at start (a flood of new sessions
    /// would then fill the ledger's instance).
    pub redis_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port/db`, `rediss://...` (TLS) or
    /// `unix:///path/to/redis.sock[?db=N&pass=...]`. Required when a
    /// backend is `redis`.
    pub url: Option<String>,
    /// With `rediss://`: PEM file of the CA that signed the server's
    /// certificate. Default: the system's trusted roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix of every key, used as a Redis Cluster hash tag (`{nudge}:...`)
    /// so that one deployment's keys share a slot. Default `nudge`. Letters,
    /// digits, `-`, `_`, `.`, at most 64.
    pub key_prefix: Option<String>,
    /// Connect and response timeout of one Redis command, ms. Default 500.
    /// A Redis slower than this answers decisions without a voucher.
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Minimum intent value for a voucher, cents. Default 9900 (99 EUR).
    pub min_intent_cents: Option<i64>,
    /// Gross margin rate m in (0, 1]. Default 0.30.
    pub margin_rate: Option<f64>,
    /// How long an offered voucher stays valid. Default 172800 s (48 h).
    pub offer_ttl_secs: Option<u64>,
    /// Voucher tiers with their prior log-odds lift. Default 500/0.25,
    /// 1000/0.45, 2000/0.70 (see README "Decision rule").
    pub tiers: Option<Vec<RawTier>>,
    /// When a voucher may be offered: "any" decision (default) or only at
    /// "exit_intent" (see `policy::OfferTrigger`).
    pub offer_on: Option<RawOfferOn>,
    /// With `offer_on = "exit_intent"`: how old the latest exit-intent
    /// signal may be at the decision, ms. Default 10000.
    pub exit_intent_window_ms: Option<i64>,
    /// Offer greedily on a tier's prior lift when the model file has no
    /// learned response for it. Default false: only learned tiers are
    /// offered greedily (exploration still offers every tier).
    pub offer_on_priors: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawOfferOn {
    Any,
    ExitIntent,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub amount_cents: i64,
    pub lift: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    /// Daily voucher cap of the `default` campaign, cents. Default 100000
    /// (1,000 EUR). Ignored when `campaigns` is given.
    pub daily_cap_cents: Option<i64>,
    /// IANA time zone the budget days (and the pacing curve) follow.
    /// Default "UTC".
    pub timezone: Option<String>,
    /// Campaigns with their own budgets. Default: one `default` campaign.
    pub campaigns: Option<Vec<RawCampaign>>,
    /// Campaign used when a Decide names none. Default: the first campaign.
    pub default_campaign: Option<String>,
    /// Share of each campaign's daily cap that exploration vouchers may
    /// use (the learning budget), in [0, 1]. Default 0.10. A campaign's
    /// `learning_cap_cents` overrides it.
    pub learning_share: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub id: String,
    pub daily_cap_cents: i64,
    /// Lifetime cap over all days. Default: none.
    pub total_cap_cents: Option<i64>,
    /// Daily learning budget in cents, in `0..=daily_cap_cents`. Default:
    /// `budget.learning_share` of the daily cap.
    pub learning_cap_cents: Option<i64>,
    /// Starts paused (no new vouchers). Default false.
    pub paused: Option<bool>,
    /// Voucher amounts this campaign offers, each one of `policy.tiers`.
    /// Default: every configured tier.
    pub tiers_cents: Option<Vec<i64>>,
    /// Default: `policy.min_intent_cents`.
    pub min_intent_cents: Option<i64>,
    /// Default: `experiment.holdout_share`.
    pub holdout_share: Option<f64>,
    /// Default: `experiment.explore_share`.
    pub explore_share: Option<f64>,
    /// Vouchers only from this time on (RFC 3339). Default: no start.
    pub starts_at: Option<String>,
    /// Vouchers only before this time (RFC 3339). Default: no end.
    pub ends_at: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Events accepted in one Track or Decide. Default 256.
    pub max_events_per_request: Option<usize>,
    /// Largest accepted request, bytes. Default 262144 (256 KiB).
    pub max_request_bytes: Option<usize>,
    /// Entries accepted in Decide's `features` map. Default 256.
    pub max_features: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Open connections at most; a connection beyond it is closed at once.
    /// Default: 4096, or less when the open-file limit (RLIMIT_NOFILE) is
    /// lower (an eighth of it, at least 64, is kept for files and stores).
    pub max_connections: Option<u32>,
    /// A new connection must send its first bytes within this. Default 5 s.
    pub handshake_timeout_secs: Option<u64>,
    /// A connection from which nothing arrives for this long is closed
    /// (live clients answer the keep-alive pings). Default 30 s.
    pub idle_timeout_secs: Option<u64>,
    /// HTTP/2 keep-alive ping interval, below `idle_timeout_secs`. Default 10 s.
    pub keepalive_interval_secs: Option<u64>,
    /// A ping unanswered for this long closes the connection. Default 10 s.
    pub keepalive_timeout_secs: Option<u64>,
    /// HTTP/2 streams open at once on one connection (clients queue beyond
    /// it). Default 64.
    pub max_concurrent_streams: Option<u32>,
    /// Requests in flight at once over all connections; beyond it a request
    /// is answered RESOURCE_EXHAUSTED without reading its body. Default 128,
    /// fewer when 4 x `limits.max_request_bytes` times it would pass 256 MiB.
    pub max_concurrent_requests: Option<usize>,
    /// A request's whole body must arrive within this, ms. Default 5000.
    pub request_timeout_ms: Option<u64>,
    /// Largest HTTP/2 frame accepted, bytes. Default 16384.
    pub max_frame_size: Option<u32>,
    /// Largest header list of a request, bytes. Default 16384.
    pub max_header_list_size: Option<u32>,
}

/// Default prior lifts until they are learned: log-odds added by each tier
/// for a hesitant visitor (about +5, +9 and +14 points at p0 = 0.3).
pub const DEFAULT_TIERS: [(i64, f64); 3] = [(500, 0.25), (1_000, 0.45), (2_000, 0.70)];
