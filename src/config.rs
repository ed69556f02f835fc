//! Configuration: one TOML file, every field optional with a documented
//! default, unknown fields rejected, validated once into [`Settings`] whose
//! values need no re-checking.
//!
//! The environment is injected: [`RawConfig::from_toml`] parses text and the
//! binary decides where the text comes from.

use crate::experiment::Experiment;
use crate::ledger::{Budgets, CampaignBudget, DEFAULT_CAMPAIGN};
use crate::policy::{OfferTrigger, Policy, Tier, MAX_TIERS};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default listen address: loopback only, so a first run exposes nothing.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default model file, relative to the working directory.
pub const DEFAULT_MODEL: &str = "models/default.json";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address to serve gRPC on. Default `127.0.0.1:50051`.
    pub listen: Option<String>,
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
    pub pacing: crate::pacing::PacingConfig,
    #[serde(default)]
    pub log: RawLog,
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
    /// Share of eligible non-holdout visitors given a random action. Default 0.05.
    pub explore_share: Option<f64>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub id: String,
    pub daily_cap_cents: i64,
    /// Lifetime cap over all days. Default: none.
    pub total_cap_cents: Option<i64>,
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

/// Default prior lifts until they are learned: log-odds added by each tier
/// for a hesitant visitor (about +5, +9 and +14 points at p0 = 0.3).
pub const DEFAULT_TIERS: [(i64, f64); 3] = [(500, 0.25), (1_000, 0.45), (2_000, 0.70)];

/// Request limits, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_events_per_request: usize,
    pub max_request_bytes: usize,
    pub max_features: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events_per_request: 256,
            max_request_bytes: 256 * 1024,
            max_features: 256,
        }
    }
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `None`: the default path, with the embedded fallback.
    pub model: Option<PathBuf>,
    pub idle_ttl: Duration,
    pub max_sessions: u64,
    pub policy: Policy,
    pub offer_ttl: Duration,
    pub budgets: Budgets,
    pub default_campaign: String,
    pub limits: Limits,
    pub data_dir: PathBuf,
    pub ledger_backend: LedgerBackend,
    pub session_backend: SessionBackend,
    /// Set exactly when a backend is Redis.
    pub redis: Option<crate::redis_backend::RedisSettings>,
    pub sweep_interval: Duration,
    /// Configured secret; `None` = environment or generated key file.
    pub voucher_secret: Option<Secret>,
    pub min_order_cents: i64,
    pub experiment: Experiment,
    pub pacing: crate::pacing::PacingConfig,
    pub log: Option<LogConfig>,
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
    #[error("config: {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// `[redis]`: required and checked when a backend uses it, refused when
/// none does (a URL that is silently unused hides a typo in `backend`).
fn validate_redis(
    raw: RawRedis,
    used: bool,
) -> Result<Option<crate::redis_backend::RedisSettings>, ConfigError> {
    let given = raw.url.is_some()
        || raw.key_prefix.is_some()
        || raw.timeout_ms.is_some()
        || raw.tls_ca_file.is_some();
    if !used {
        return if given {
            Err(invalid(
                "redis",
                "set, but neither ledger.backend nor sessions.backend is \"redis\"",
            ))
        } else {
            Ok(None)
        };
    }
    let url = raw.url.ok_or_else(|| {
        invalid(
            "redis.url",
            "required when ledger.backend or sessions.backend is \"redis\"",
        )
    })?;
    if let Err(e) = redis::Client::open(url.as_str()) {
        return Err(invalid("redis.url", e.to_string()));
    }
    if raw.tls_ca_file.is_some() && !url.starts_with("rediss://") {
        return Err(invalid(
            "redis.tls_ca_file",
            "only with a rediss:// (TLS) url",
        ));
    }
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "nudge".to_owned());
    if key_prefix.is_empty()
        || key_prefix.len() > 64
        || !key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "redis.key_prefix",
            "1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let timeout_ms = raw.timeout_ms.unwrap_or(500);
    if !(1..=60_000).contains(&timeout_ms) {
        return Err(invalid("redis.timeout_ms", "must be in 1..=60000"));
    }
    Ok(Some(crate::redis_backend::RedisSettings {
        url,
        key_prefix,
        timeout: Duration::from_millis(timeout_ms),
        tls_ca_file: raw.tls_ca_file,
    }))
}

impl RawConfig {
    pub fn from_toml(text: &str) -> Result<RawConfig, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Validates once; see each field's docs for defaults.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|e| invalid("listen", format!("{listen_text:?}: {e}")))?;

        let idle = self.sessions.idle_ttl_secs.unwrap_or(1_800);
        if idle == 0 || idle > 7 * 86_400 {
            return Err(invalid("sessions.idle_ttl_secs", "must be in 1..=604800"));
        }
        let max_sessions = self.sessions.max_sessions.unwrap_or(1_000_000);
        if max_sessions == 0 {
            return Err(invalid("sessions.max_sessions", "must be > 0"));
        }

        let min_intent_cents = self.policy.min_intent_cents.unwrap_or(9_900);
        if min_intent_cents < 0 {
            return Err(invalid("policy.min_intent_cents", "must be >= 0"));
        }
        let margin_rate = self.policy.margin_rate.unwrap_or(0.30);
        if !(margin_rate > 0.0 && margin_rate <= 1.0) {
            return Err(invalid("policy.margin_rate", "must be in (0, 1]"));
        }
        let offer_ttl = self.policy.offer_ttl_secs.unwrap_or(172_800);
        if offer_ttl == 0 {
            return Err(invalid("policy.offer_ttl_secs", "must be > 0"));
        }
        let window_ms = self.policy.exit_intent_window_ms.unwrap_or(10_000);
        if window_ms <= 0 {
            return Err(invalid("policy.exit_intent_window_ms", "must be > 0"));
        }
        let trigger = match self.policy.offer_on.unwrap_or(RawOfferOn::Any) {
            RawOfferOn::Any => OfferTrigger::Any,
            RawOfferOn::ExitIntent => OfferTrigger::ExitIntent { window_ms },
        };
        let tiers: Vec<Tier> = match self.policy.tiers {
            None => DEFAULT_TIERS
                .iter()
                .map(|&(amount_cents, lift)| Tier { amount_cents, lift })
                .collect(),
            Some(raw) => raw
                .into_iter()
                .map(|t| Tier {
                    amount_cents: t.amount_cents,
                    lift: t.lift,
                })
                .collect(),
        };
        if tiers.is_empty() || tiers.len() > MAX_TIERS {
            return Err(invalid(
                "policy.tiers",
                format!("need 1..={MAX_TIERS} tiers, got {}", tiers.len()),
            ));
        }
        for (i, t) in tiers.iter().enumerate() {
            if t.amount_cents <= 0 {
                return Err(invalid(
                    "policy.tiers",
                    format!("tier {i}: amount_cents must be > 0"),
                ));
            }
            if !t.lift.is_finite() {
                return Err(invalid(
                    "policy.tiers",
                    format!("tier {i}: lift must be finite"),
                ));
            }
            if tiers[..i].iter().any(|o| o.amount_cents == t.amount_cents) {
                return Err(invalid(
                    "policy.tiers",
                    format!("tier {i}: duplicate amount {}", t.amount_cents),
                ));
            }
        }

        for (i, t) in tiers.iter().enumerate() {
            if t.amount_cents % 100 != 0 || t.amount_cents > crate::voucher::MAX_AMOUNT_CENTS {
                return Err(invalid(
                    "policy.tiers",
                    format!("tier {i}: amount_cents must be whole euros up to 255 EUR (voucher codes carry them)"),
                ));
            }
        }

        let tz_name = self.budget.timezone.as_deref().unwrap_or("UTC");
        let timezone: chrono_tz::Tz = tz_name
            .parse()
            .map_err(|_| invalid("budget.timezone", format!("unknown time zone {tz_name:?}")))?;
        let raw_campaigns = match self.budget.campaigns {
            Some(c) => {
                if self.budget.daily_cap_cents.is_some() {
                    return Err(invalid(
                        "budget.daily_cap_cents",
                        "give either daily_cap_cents or campaigns, not both",
                    ));
                }
                c
            }
            None => vec![RawCampaign {
                id: DEFAULT_CAMPAIGN.to_owned(),
                daily_cap_cents: self.budget.daily_cap_cents.unwrap_or(100_000),
                total_cap_cents: None,
            }],
        };
        if raw_campaigns.is_empty() {
            return Err(invalid("budget.campaigns", "need at least one campaign"));
        }
        let mut campaigns = std::collections::HashMap::new();
        for c in &raw_campaigns {
            if c.id.is_empty() || c.id.len() > 64 || !c.id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(invalid(
                    "budget.campaigns",
                    format!("campaign id {:?} must be 1..=64 printable ASCII", c.id),
                ));
            }
            if c.daily_cap_cents < 0 {
                return Err(invalid(
                    "budget.daily_cap_cents",
                    format!("campaign {:?}: must be >= 0", c.id),
                ));
            }
            if c.total_cap_cents.is_some_and(|t| t < 0) {
                return Err(invalid(
                    "budget.campaigns",
                    format!("campaign {:?}: total_cap_cents must be >= 0", c.id),
                ));
            }
            let dup = campaigns.insert(
                c.id.clone(),
                CampaignBudget {
                    daily_cap_cents: c.daily_cap_cents,
                    total_cap_cents: c.total_cap_cents,
                },
            );
            if dup.is_some() {
                return Err(invalid(
                    "budget.campaigns",
                    format!("duplicate campaign {:?}", c.id),
                ));
            }
        }
        let default_campaign = self
            .budget
            .default_campaign
            .unwrap_or_else(|| raw_campaigns[0].id.clone());
        if !campaigns.contains_key(&default_campaign) {
            return Err(invalid(
                "budget.default_campaign",
                format!("{default_campaign:?} is not a configured campaign"),
            ));
        }

        let ledger_backend = match self.ledger.backend.as_deref().unwrap_or("sqlite") {
            "sqlite" => LedgerBackend::Sqlite,
            "redis" => LedgerBackend::Redis,
            "memory" => LedgerBackend::Memory,
            other => {
                return Err(invalid(
                    "ledger.backend",
                    format!("{other:?}: expected \"sqlite\", \"redis\" or \"memory\""),
                ))
            }
        };
        let session_backend = match self.sessions.backend.as_deref().unwrap_or("memory") {
            "memory" => SessionBackend::Memory,
            "redis" => SessionBackend::Redis,
            other => {
                return Err(invalid(
                    "sessions.backend",
                    format!("{other:?}: expected \"memory\" or \"redis\""),
                ))
            }
        };
        if session_backend == SessionBackend::Redis && ledger_backend != LedgerBackend::Redis {
            // Shared sessions mean several replicas; each with its own
            // ledger would spend its own cap (N replicas, N times the budget)
            // and could offer one session twice.
            return Err(invalid(
                "sessions.backend",
                "\"redis\" shares sessions between replicas, which must then share the budget: set ledger.backend = \"redis\" too",
            ));
        }
        let redis = validate_redis(
            self.redis,
            ledger_backend == LedgerBackend::Redis || session_backend == SessionBackend::Redis,
        )?;
        let sweep = self.ledger.sweep_interval_secs.unwrap_or(60);
        if sweep == 0 {
            return Err(invalid("ledger.sweep_interval_secs", "must be > 0"));
        }
        let voucher_secret = match self.voucher.secret {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(invalid(
                    "voucher.secret",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ))
            }
            Some(s) => Some(Secret(s)),
            None => None,
        };
        let min_order_cents = self.voucher.min_order_cents.unwrap_or(9_900);
        if min_order_cents < 0 {
            return Err(invalid("voucher.min_order_cents", "must be >= 0"));
        }
        let d = Experiment::default();
        let experiment = Experiment {
            holdout_share: self.experiment.holdout_share.unwrap_or(d.holdout_share),
            explore_share: self.experiment.explore_share.unwrap_or(d.explore_share),
            salt: self.experiment.salt.unwrap_or(d.salt),
        };
        if !(0.0..1.0).contains(&experiment.holdout_share) {
            return Err(invalid("experiment.holdout_share", "must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&experiment.explore_share) {
            return Err(invalid("experiment.explore_share", "must be in [0, 1]"));
        }
        self.pacing.validate().map_err(|m| invalid("pacing", m))?;
        let log = if self.log.enabled.unwrap_or(true) {
            let rotate_bytes = self.log.rotate_bytes.unwrap_or(64 * 1024 * 1024);
            let queue = self.log.queue.unwrap_or(65_536);
            if rotate_bytes < 4_096 {
                return Err(invalid("log.rotate_bytes", "must be >= 4096"));
            }
            if queue == 0 {
                return Err(invalid("log.queue", "must be > 0"));
            }
            Some(LogConfig {
                rotate_bytes,
                queue,
            })
        } else {
            None
        };

        let d = Limits::default();
        let limits = Limits {
            max_events_per_request: self
                .limits
                .max_events_per_request
                .unwrap_or(d.max_events_per_request),
            max_request_bytes: self.limits.max_request_bytes.unwrap_or(d.max_request_bytes),
            max_features: self.limits.max_features.unwrap_or(d.max_features),
        };
        if limits.max_events_per_request == 0 || limits.max_events_per_request > 10_000 {
            return Err(invalid(
                "limits.max_events_per_request",
                "must be in 1..=10000",
            ));
        }
        if !(1_024..=64 * 1024 * 1024).contains(&limits.max_request_bytes) {
            return Err(invalid(
                "limits.max_request_bytes",
                "must be in 1024..=67108864",
            ));
        }
        if limits.max_features > 10_000 {
            return Err(invalid("limits.max_features", "must be <= 10000"));
        }

        Ok(Settings {
            listen,
            model: self.model,
            idle_ttl: Duration::from_secs(idle),
            max_sessions,
            policy: Policy {
                min_intent_cents,
                margin_rate,
                tiers,
                trigger,
            },
            offer_ttl: Duration::from_secs(offer_ttl),
            budgets: Budgets {
                timezone,
                campaigns,
            },
            default_campaign,
            limits,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            ledger_backend,
            session_backend,
            redis,
            sweep_interval: Duration::from_secs(sweep),
            voucher_secret,
            min_order_cents,
            experiment,
            pacing: self.pacing,
            log,
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
    fn empty_file_gives_documented_defaults() {
        let s = RawConfig::from_toml("").unwrap().validate().unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN.parse().unwrap());
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
        assert!(s.pacing.enabled);
        assert_eq!(s.policy.trigger, crate::policy::OfferTrigger::Any);
        let s = RawConfig::from_toml("[policy]\noffer_on = \"exit_intent\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            s.policy.trigger,
            crate::policy::OfferTrigger::ExitIntent { window_ms: 10_000 }
        );
        assert!(RawConfig::from_toml("[policy]\noffer_on = \"checkout\"").is_err());
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
        ] {
            let e = match RawConfig::from_toml(text) {
                Ok(raw) => raw.validate().unwrap_err().to_string(),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
