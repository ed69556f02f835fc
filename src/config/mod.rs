//! Configuration: one TOML file, every field optional with a documented
//! default, unknown fields rejected, validated once into [`Settings`] whose
//! values need no re-checking.
//!
//! The environment is injected: [`RawConfig::from_toml`] parses text and the
//! binary decides where the text comes from.

use crate::domain::experiment::Experiment;
use crate::domain::policy::Policy;
use crate::ledger::Budgets;
mod autotrain;
mod print;
mod raw;
mod sections;

pub use autotrain::{parse_at, AutotrainSettings, RawAutotrain};
pub use raw::*;
pub use sections::CorsOrigins;
use sections::{
    validate_admin, validate_admin_listen, validate_backends, validate_listen, validate_redis,
    validate_session_redis, validate_tls,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address: loopback only, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default admin address: loopback only, Prometheus' customary port range.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";
/// Default model file, relative to the working directory.
pub const DEFAULT_MODEL: &str = "models/default.json";

/// Request limits, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_events_per_request: usize,
    pub max_request_bytes: usize,
    pub max_features: usize,
    /// The oldest event time accepted, relative to the server clock: the
    /// sessions' idle TTL (`sessions.idle_ttl_secs`), since an older event
    /// belongs to a session that has already started afresh.
    pub max_event_age_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events_per_request: 256,
            max_request_bytes: 256 * 1024,
            max_features: 256,
            max_event_age_ms: 1_800_000,
        }
    }
}

impl Limits {
    /// Largest gRPC message the transport decodes: above the validated
    /// limit, so that a too-large request usually gets a field-naming
    /// INVALID_ARGUMENT from validation rather than a transport error.
    pub fn max_message_bytes(&self) -> usize {
        self.max_request_bytes * TRANSPORT_SIZE_FACTOR
    }
}

/// How far above `limits.max_request_bytes` the transport still decodes.
pub const TRANSPORT_SIZE_FACTOR: usize = 4;

/// What requests in flight may hold in message buffers at most, all
/// together: `server.max_concurrent_requests` x the largest message.
pub const MAX_IN_FLIGHT_BYTES: usize = 256 * 1024 * 1024;

/// Transport limits, validated (`[server]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// `None`: derived from the open-file limit when serving starts.
    pub max_connections: Option<u32>,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    pub max_concurrent_streams: u32,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub max_frame_size: u32,
    pub max_header_list_size: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        RawServer::default()
            .validate(&Limits::default())
            .expect("the documented defaults are valid")
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// The admin HTTP server's address; `None`: not served.
    pub admin_listen: Option<SocketAddr>,
    /// `None`: the default path, with the embedded fallback.
    pub model: Option<PathBuf>,
    pub idle_ttl: Duration,
    pub max_sessions: u64,
    pub policy: Policy,
    pub offer_ttl: Duration,
    pub budgets: Budgets,
    pub default_campaign: String,
    /// `budget.learning_share`: a new or changed daily cap's learning part.
    pub learning_share: f64,
    /// What each configured campaign sets beyond its caps.
    pub campaign_overrides: std::collections::BTreeMap<String, crate::campaigns::Overrides>,
    pub limits: Limits,
    pub server: ServerLimits,
    pub data_dir: PathBuf,
    pub ledger_backend: LedgerBackend,
    pub session_backend: SessionBackend,
    /// Set exactly when a backend is Redis.
    pub redis: Option<crate::redis::RedisSettings>,
    /// Set exactly when `sessions.backend` is Redis: the `[redis]`
    /// settings with `sessions.redis_url` when one is given.
    pub session_redis: Option<crate::redis::RedisSettings>,
    pub sweep_interval: Duration,
    /// Configured secret; `None` = environment or generated key file.
    pub voucher_secret: Option<Secret>,
    pub min_order_cents: i64,
    pub experiment: Experiment,
    pub pacing: crate::domain::pacing::PacingConfig,
    pub log: Option<LogConfig>,
    /// Bearer tokens of both ports (`[admin] tokens` and
    /// `NUDGE_ADMIN_TOKENS`); none: auth is off.
    pub admin_tokens: crate::auth::Tokens,
    /// `None`: plaintext on both ports.
    pub tls: Option<TlsFiles>,
    /// `[autotrain]`: the daily retraining (off by default).
    pub autotrain: AutotrainSettings,
    /// `[http] cors_allow_origins`: the browser origins of the JSON API and
    /// gRPC-Web.
    pub cors: CorsOrigins,
}

/// `[tls]`: both files given. They are read when serving starts (and by
/// `check-config`), see `app::tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where offers are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerBackend {
    Sqlite,
    Redis,
    Memory,
}

/// Where session state is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionBackend {
    Memory,
    Redis,
}

/// Decision log settings (the directory is `<data_dir>/log`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub rotate_bytes: u64,
    pub queue: usize,
    pub retention: crate::decision_log::writer::Retention,
    /// How long a Report answer is served again.
    pub report_refresh: Duration,
    /// Sessions the report keeps state for at most (>= 1).
    pub report_max_sessions: usize,
}

impl LogConfig {
    pub const DEFAULT_REPORT_REFRESH: Duration = Duration::from_secs(1);
    pub const DEFAULT_REPORT_MAX_SESSIONS: usize = 1_000_000;
}

/// A secret string whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Shortest accepted voucher secret.
pub const MIN_SECRET_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// A field in a list (`admin.tokens[2].token`).
    #[error("config: {field}: {message}")]
    InvalidAt { field: String, message: String },
}

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// Each configured campaign's settings obey the rules a change at run
/// time obeys (tiers among `policy.tiers`, shares in range, a schedule
/// that ends after it starts).
fn check_campaigns(
    budgets: &Budgets,
    overrides: &std::collections::BTreeMap<String, crate::campaigns::Overrides>,
    policy: &Policy,
    experiment: &Experiment,
) -> Result<(), ConfigError> {
    let base = crate::campaigns::Base {
        policy: policy.clone(),
        experiment: experiment.clone(),
        learning_share: 0.0,
        pacing: Default::default(),
        timezone: budgets.timezone,
        default_campaign: String::new(),
    };
    for (id, budget) in &budgets.campaigns {
        let o = overrides.get(id).cloned().unwrap_or_default();
        let seed = crate::campaigns::CampaignSettings::seed(id, budget, &base, &o);
        crate::campaigns::validate(&seed, &base)
            .map_err(|e| invalid("budget.campaigns", format!("campaign {id:?}: {e}")))?;
    }
    Ok(())
}

impl RawConfig {
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// The one config loader: the TOML file at `path`, or every default
    /// without one.
    pub fn load(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(RawConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        RawConfig::from_toml(&text)
    }

    /// Validates once, one section at a time; see each field's docs for
    /// defaults.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen = validate_listen(self.listen.as_deref())?;
        let admin_listen = validate_admin_listen(self.admin_listen.as_deref())?;
        let (idle_ttl, max_sessions) = self.sessions.validate()?;
        let (policy, offer_ttl) = self.policy.validate()?;
        let sections::ValidBudget {
            budgets,
            default_campaign,
            learning_share,
            overrides: campaign_overrides,
        } = self.budget.validate()?;
        let (ledger_backend, session_backend) = validate_backends(&self.ledger, &self.sessions)?;
        let redis = validate_redis(
            self.redis,
            ledger_backend == LedgerBackend::Redis || session_backend == SessionBackend::Redis,
        )?;
        let session_redis =
            validate_session_redis(self.sessions.redis_url, session_backend, redis.as_ref())?;
        let sweep_interval = self.ledger.validate_sweep()?;
        let (voucher_secret, min_order_cents) = self.voucher.validate()?;
        let experiment = self.experiment.validate()?;
        self.pacing.validate().map_err(|m| invalid("pacing", m))?;
        check_campaigns(&budgets, &campaign_overrides, &policy, &experiment)?;
        let log = self.log.validate()?;
        let limits = Limits {
            max_event_age_ms: i64::try_from(idle_ttl.as_millis()).unwrap_or(i64::MAX),
            ..self.limits.validate()?
        };
        let server = self.server.validate(&limits)?;
        let admin_tokens = validate_admin(self.admin, admin_listen)?;
        let tls = validate_tls(self.tls)?;
        let autotrain = self.autotrain.validate(ledger_backend)?;
        let cors = CorsOrigins::validate(self.http.cors_allow_origins)?;
        Ok(Settings {
            listen,
            admin_listen,
            model: self.model,
            idle_ttl,
            max_sessions,
            policy,
            offer_ttl,
            budgets,
            default_campaign,
            learning_share,
            campaign_overrides,
            limits,
            server,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            ledger_backend,
            session_backend,
            redis,
            session_redis,
            sweep_interval,
            voucher_secret,
            min_order_cents,
            experiment,
            pacing: self.pacing,
            log,
            admin_tokens,
            tls,
            autotrain,
            cors,
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        RawConfig::default()
            .validate()
            .expect("the documented defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_backends_share_one_connection_section() {
        let s = RawConfig::from_toml(
            "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n[redis]\nurl = \"redis://127.0.0.1:6379/2\"",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(
            (s.ledger_backend, s.session_backend),
            (LedgerBackend::Redis, SessionBackend::Redis)
        );
        let r = s.redis.unwrap();
        assert_eq!(
            (r.url.as_str(), r.key_prefix.as_str(), r.timeout),
            (
                "redis://127.0.0.1:6379/2",
                "nudge",
                Duration::from_millis(500)
            )
        );
    }

    #[test]
    fn sessions_may_have_their_own_redis() {
        let base = "[ledger]\nbackend = \"redis\"\n[sessions]\nbackend = \"redis\"\n";
        let redis =
            "[redis]\nurl = \"redis://money:6379/0\"\nkey_prefix = \"shop\"\ntimeout_ms = 300\n";
        let s = RawConfig::from_toml(&format!("{base}{redis}"))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.session_redis, s.redis, "default: the ledger's instance");
        let s = RawConfig::from_toml(&format!(
            "{base}redis_url = \"redis://sessions:6379/0\"\n{redis}"
        ))
        .unwrap()
        .validate()
        .unwrap();
        let r = s.session_redis.unwrap();
        assert_eq!(
            (r.url.as_str(), r.key_prefix.as_str(), r.timeout),
            (
                "redis://sessions:6379/0",
                "shop",
                Duration::from_millis(300)
            )
        );
        assert_eq!(s.redis.unwrap().url, "redis://money:6379/0");
        for text in [
            format!("{base}redis_url = \"http://x\"\n{redis}"),
            format!(
                "[ledger]\nbackend = \"redis\"\n[sessions]\nredis_url = \"redis://s/\"\n{redis}"
            ),
        ] {
            let e = RawConfig::from_toml(&text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("sessions.redis_url"), "{e}");
        }
        let s = RawConfig::from_toml("").unwrap().validate().unwrap();
        assert_eq!(s.session_redis, None);
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let s = RawConfig::from_toml("").unwrap().validate().unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(s.admin_listen, Some(DEFAULT_ADMIN_LISTEN.parse().unwrap()));
        let off = RawConfig::from_toml("admin_listen = \"\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(off.admin_listen, None);
        assert_eq!(s.idle_ttl, Duration::from_secs(1_800));
        assert_eq!(s.policy.min_intent_cents, 9_900);
        assert_eq!(s.policy.margin_rate, 0.30);
        assert_eq!(
            s.policy
                .tiers
                .iter()
                .map(|t| t.amount_cents)
                .collect::<Vec<_>>(),
            vec![500, 1_000, 2_000]
        );
        assert_eq!(s.limits, Limits::default());
        assert_eq!(s.default_campaign, "default");
        assert_eq!(s.budgets.campaigns["default"].daily_cap_cents, 100_000);
        assert_eq!(s.ledger_backend, LedgerBackend::Sqlite);
        assert_eq!(s.session_backend, SessionBackend::Memory);
        assert_eq!(s.redis, None);
        assert_eq!(s.data_dir, PathBuf::from("data"));
        assert_eq!(s.experiment.holdout_share, 0.10);
        assert_eq!(s.experiment.cold_explore_share, 0.30);
        assert!(!s.policy.offer_on_priors, "no greedy offers on priors");
        assert_eq!(s.budgets.campaigns["default"].learning_cap_cents, 10_000);
        assert!(s.pacing.enabled);
        assert_eq!(s.policy.trigger, crate::domain::policy::OfferTrigger::Any);
        let s = RawConfig::from_toml("[policy]\noffer_on = \"exit_intent\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            s.policy.trigger,
            crate::domain::policy::OfferTrigger::ExitIntent { window_ms: 10_000 }
        );
        assert!(RawConfig::from_toml("[policy]\noffer_on = \"checkout\"").is_err());
    }

    #[test]
    fn learning_caps_follow_the_share_or_the_override() {
        let s = RawConfig::from_toml(
            "[budget]\nlearning_share = 0.25\ncampaigns = [\n  { id = \"a\", daily_cap_cents = 1001 },\n  { id = \"b\", daily_cap_cents = 1000, learning_cap_cents = 1000 },\n]\n[policy]\noffer_on_priors = true\n[experiment]\ncold_explore_share = 0.5",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(
            s.budgets.campaigns["a"].learning_cap_cents, 250,
            "rounded down"
        );
        assert_eq!(s.budgets.campaigns["b"].learning_cap_cents, 1_000);
        assert!(s.policy.offer_on_priors);
        assert_eq!(s.experiment.cold_explore_share, 0.5);
    }

    #[test]
    fn server_limits_bound_the_memory_of_requests_in_flight() {
        let d = ServerLimits::default();
        assert_eq!(d.max_concurrent_requests, 128);
        assert!(
            d.max_concurrent_requests * Limits::default().max_message_bytes()
                <= MAX_IN_FLIGHT_BYTES
        );
        assert_eq!((d.max_concurrent_streams, d.max_connections), (64, None));
        assert_eq!(d.request_timeout, Duration::from_secs(5));
        // A larger message lowers the default so the product still fits.
        let s = RawConfig::from_toml("[limits]\nmax_request_bytes = 4194304")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(s.server.max_concurrent_requests, 16);
        for (text, field) in [
            (
                "[server]\nmax_concurrent_requests = 300",
                "server.max_concurrent_requests",
            ),
            (
                "[server]\nmax_concurrent_requests = 0",
                "server.max_concurrent_requests",
            ),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            (
                "[server]\nidle_timeout_secs = 5",
                "server.keepalive_interval_secs",
            ),
            ("[server]\nmax_frame_size = 1024", "server.max_frame_size"),
            (
                "[server]\nrequest_timeout_ms = 0",
                "server.request_timeout_ms",
            ),
            ("[server]\nmax_streams = 1", "unknown field"),
        ] {
            let e = match RawConfig::from_toml(text) {
                Ok(raw) => raw.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_are_never_printed() {
        let s = RawConfig::from_toml("[voucher]\nsecret = \"correct horse battery staple\"")
            .unwrap()
            .validate()
            .unwrap();
        assert!(!format!("{s:?}").contains("horse"));
    }

    #[test]
    fn log_retention_defaults_and_limits() {
        let s = RawConfig::from_toml("").unwrap().validate().unwrap();
        let r = s.log.unwrap().retention;
        assert_eq!(r.max_age, Duration::from_secs(14 * 86_400));
        assert_eq!(r.max_bytes, 10 << 30);
        for (text, field) in [
            ("[log]\nretain_days = 0", "log.retain_days"),
            ("[log]\nretain_bytes = 4096", "log.retain_bytes"),
        ] {
            let e = RawConfig::from_toml(text).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = RawConfig::from_toml("[policy]\nmargin = 0.3\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("[policy]\nmargin_rate = 1.5", "policy.margin_rate"),
            ("[budget]\ndaily_cap_cents = -1", "budget.daily_cap_cents"),
            ("listen = \"nope\"", "listen"),
            ("admin_listen = \"nope\"", "admin_listen"),
            ("admin_listen = \"0.0.0.0:9464\"", "admin_listen"),
            (
                "[admin]\ntokens = [{ name = \"a\", role = \"viewer\", token = \"short\" }]",
                "admin.tokens[0].token",
            ),
            (
                "[admin]\ntokens = [{ name = \"a\", role = \"root\", token = \"0123456789abcdef\" }]",
                "admin.tokens[0].role",
            ),
            ("[tls]\ncert_file = \"server.crt\"", "tls.key_file"),
            ("[tls]\nkey_file = \"server.key\"", "tls.cert_file"),
            ("[budget]\ntimezone = \"Mars/Olympus\"", "budget.timezone"),
            ("[voucher]\nsecret = \"short\"", "voucher.secret"),
            (
                "[experiment]\nholdout_share = 1.0",
                "experiment.holdout_share",
            ),
            ("[ledger]\nbackend = \"postgres\"", "ledger.backend"),
            ("[sessions]\nbackend = \"sqlite\"", "sessions.backend"),
            ("[ledger]\nbackend = \"redis\"", "redis.url"),
            ("[sessions]\nbackend = \"redis\"", "sessions.backend"),
            (
                "[sessions]\nbackend = \"redis\"\n[redis]\nurl = \"redis://h/\"",
                "sessions.backend",
            ),
            (
                "[ledger]\nbackend = \"redis\"\n[redis]\nurl = \"redis://h/\"\ntls_ca_file = \"ca.pem\"",
                "redis.tls_ca_file",
            ),
            ("[redis]\nurl = \"redis://127.0.0.1/\"", "redis"),
            (
                "[ledger]\nbackend = \"redis\"\n[redis]\nurl = \"http://x\"",
                "redis.url",
            ),
            (
                "[ledger]\nbackend = \"redis\"\n[redis]\nurl = \"redis://h/\"\nkey_prefix = \"a{b}\"",
                "redis.key_prefix",
            ),
            (
                "[ledger]\nbackend = \"redis\"\n[redis]\nurl = \"redis://h/\"\ntimeout_ms = 0",
                "redis.timeout_ms",
            ),
            ("[pacing]\nhourly_weights = [1.0, 2.0]", "hourly_weights"),
            ("[pacing]\nkp = -1.0", "pacing"),
            (
                "[policy]\noffer_on = \"exit_intent\"\nexit_intent_window_ms = 0",
                "policy.exit_intent_window_ms",
            ),
            (
                "[[policy.tiers]]\namount_cents = 550\nlift = 0.1",
                "policy.tiers",
            ),
            (
                "[[policy.tiers]]\namount_cents = 0\nlift = 0.1",
                "policy.tiers",
            ),
            (
                "[experiment]\ncold_explore_share = 1.5",
                "experiment.cold_explore_share",
            ),
            ("[budget]\nlearning_share = -0.1", "budget.learning_share"),
            ("[budget]\nlearning_share = 1.01", "budget.learning_share"),
            (
                "[budget]\ncampaigns = [{ id = \"a\", daily_cap_cents = 1000, learning_cap_cents = 1001 }]",
                "budget.campaigns.learning_cap_cents",
            ),
            (
                "[budget]\ncampaigns = [{ id = \"a\", daily_cap_cents = 1000, learning_cap_cents = -1 }]",
                "budget.campaigns.learning_cap_cents",
            ),
        ] {
            let e = match RawConfig::from_toml(text) {
                Ok(raw) => raw.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
