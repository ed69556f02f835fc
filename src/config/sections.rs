//! Validation of each config section into the types the service uses.

use super::{
    invalid, ConfigError, LedgerBackend, Limits, LogConfig, RawAdmin, RawBudget, RawCampaign,
    RawExperiment, RawLedger, RawLimits, RawLog, RawOfferOn, RawPolicy, RawRedis, RawServer,
    RawSessions, RawTier, RawTls, RawVoucher, Secret, ServerLimits, SessionBackend, TlsFiles,
    DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN, DEFAULT_TIERS, MAX_IN_FLIGHT_BYTES, MIN_SECRET_BYTES,
};
use crate::domain::experiment::Experiment;
use crate::domain::policy::{OfferTrigger, Policy, Tier, MAX_TIERS};
use crate::domain::voucher::MAX_AMOUNT_CENTS;
use crate::ledger::{Budgets, CampaignBudget, DEFAULT_CAMPAIGN, DEFAULT_LEARNING_SHARE};
use std::net::SocketAddr;
use std::time::Duration;

/// `[redis]`: required and checked when a backend uses it, refused when
/// none does (a URL that is silently unused hides a typo in `backend`).
pub(super) fn validate_redis(
    raw: RawRedis,
    used: bool,
) -> Result<Option<crate::redis::RedisSettings>, ConfigError> {
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
    Ok(Some(crate::redis::RedisSettings {
        url,
        key_prefix,
        timeout: Duration::from_millis(timeout_ms),
        tls_ca_file: raw.tls_ca_file,
    }))
}

/// `sessions.redis_url`: only with the Redis session backend; without it
/// the sessions use the `[redis]` instance.
pub(super) fn validate_session_redis(
    url: Option<String>,
    backend: SessionBackend,
    redis: Option<&crate::redis::RedisSettings>,
) -> Result<Option<crate::redis::RedisSettings>, ConfigError> {
    let redis = match (backend, redis) {
        (SessionBackend::Redis, Some(r)) => r,
        _ if url.is_some() => {
            return Err(invalid(
                "sessions.redis_url",
                "set, but sessions.backend is not \"redis\"",
            ))
        }
        _ => return Ok(None),
    };
    let Some(url) = url else {
        return Ok(Some(redis.clone()));
    };
    if let Err(e) = redis::Client::open(url.as_str()) {
        return Err(invalid("sessions.redis_url", e.to_string()));
    }
    Ok(Some(crate::redis::RedisSettings {
        url,
        ..redis.clone()
    }))
}

/// `[admin]`: the tokens of the file and of `NUDGE_ADMIN_TOKENS` merged.
/// An admin server beyond loopback needs a viewer or operator token: its
/// pages show budgets and, later, change them.
pub(super) fn validate_admin(
    raw: RawAdmin,
    admin_listen: Option<SocketAddr>,
) -> Result<crate::auth::Tokens, ConfigError> {
    use crate::auth::{parse_env_tokens, Role, TokenSpec, Tokens, ENV_TOKENS};
    let at = |e: crate::auth::TokenConfigError| ConfigError::InvalidAt {
        field: e.field,
        message: e.message,
    };
    let mut specs: Vec<TokenSpec> = raw
        .tokens
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, t)| TokenSpec {
            field: format!("admin.tokens[{i}]"),
            name: t.name,
            role: t.role,
            token: t.token,
            from_env: false,
        })
        .collect();
    if let Some(env) = &raw.env_tokens {
        specs.extend(parse_env_tokens(&env.0).map_err(at)?);
    }
    let tokens = Tokens::new(specs).map_err(at)?;
    if let Some(addr) = admin_listen {
        if !addr.ip().is_loopback()
            && !tokens.has_role(Role::Viewer)
            && !tokens.has_role(Role::Operator)
        {
            return Err(invalid(
                "admin_listen",
                format!("{addr} is beyond loopback: configure a viewer or operator token ([admin] tokens or {ENV_TOKENS}) first"),
            ));
        }
    }
    Ok(tokens)
}

/// `[tls]`: both files or neither.
pub(super) fn validate_tls(raw: RawTls) -> Result<Option<TlsFiles>, ConfigError> {
    match (raw.cert_file, raw.key_file) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => Ok(Some(TlsFiles {
            cert_file,
            key_file,
        })),
        (Some(_), None) => Err(invalid("tls.key_file", "required with tls.cert_file")),
        (None, Some(_)) => Err(invalid("tls.cert_file", "required with tls.key_file")),
    }
}

/// The admin address; an empty string turns the admin server off.
pub(super) fn validate_admin_listen(
    listen: Option<&str>,
) -> Result<Option<SocketAddr>, ConfigError> {
    match listen.unwrap_or(DEFAULT_ADMIN_LISTEN) {
        "" => Ok(None),
        text => text
            .parse()
            .map(Some)
            .map_err(|e| invalid("admin_listen", format!("{text:?}: {e}"))),
    }
}

pub(super) fn validate_listen(listen: Option<&str>) -> Result<SocketAddr, ConfigError> {
    let text = listen.unwrap_or(DEFAULT_LISTEN);
    text.parse()
        .map_err(|e| invalid("listen", format!("{text:?}: {e}")))
}

impl RawSessions {
    /// The idle TTL and the bound on sessions held in memory.
    pub(super) fn validate(&self) -> Result<(Duration, u64), ConfigError> {
        let idle = self.idle_ttl_secs.unwrap_or(1_800);
        if idle == 0 || idle > 7 * 86_400 {
            return Err(invalid("sessions.idle_ttl_secs", "must be in 1..=604800"));
        }
        let max_sessions = self.max_sessions.unwrap_or(1_000_000);
        if max_sessions == 0 {
            return Err(invalid("sessions.max_sessions", "must be > 0"));
        }
        Ok((Duration::from_secs(idle), max_sessions))
    }
}

impl RawPolicy {
    /// The voucher rule and how long an offer stays valid.
    pub(super) fn validate(self) -> Result<(Policy, Duration), ConfigError> {
        let min_intent_cents = self.min_intent_cents.unwrap_or(9_900);
        if min_intent_cents < 0 {
            return Err(invalid("policy.min_intent_cents", "must be >= 0"));
        }
        let margin_rate = self.margin_rate.unwrap_or(0.30);
        if !(margin_rate > 0.0 && margin_rate <= 1.0) {
            return Err(invalid("policy.margin_rate", "must be in (0, 1]"));
        }
        let offer_ttl = self.offer_ttl_secs.unwrap_or(172_800);
        if offer_ttl == 0 {
            return Err(invalid("policy.offer_ttl_secs", "must be > 0"));
        }
        let window_ms = self.exit_intent_window_ms.unwrap_or(10_000);
        if window_ms <= 0 {
            return Err(invalid("policy.exit_intent_window_ms", "must be > 0"));
        }
        let trigger = match self.offer_on.unwrap_or(RawOfferOn::Any) {
            RawOfferOn::Any => OfferTrigger::Any,
            RawOfferOn::ExitIntent => OfferTrigger::ExitIntent { window_ms },
        };
        let tiers = validate_tiers(self.tiers)?;
        let policy = Policy {
            min_intent_cents,
            margin_rate,
            tiers,
            trigger,
            offer_on_priors: self.offer_on_priors.unwrap_or(false),
        };
        Ok((policy, Duration::from_secs(offer_ttl)))
    }
}

fn validate_tiers(raw: Option<Vec<RawTier>>) -> Result<Vec<Tier>, ConfigError> {
    let tiers: Vec<Tier> = match raw {
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
        if t.amount_cents % 100 != 0 || t.amount_cents > MAX_AMOUNT_CENTS {
            return Err(invalid(
                "policy.tiers",
                format!("tier {i}: amount_cents must be whole euros up to 255 EUR (voucher codes carry them)"),
            ));
        }
    }
    Ok(tiers)
}

impl RawBudget {
    /// The campaigns with their caps, their time zone, and the default
    /// campaign.
    pub(super) fn validate(self) -> Result<ValidBudget, ConfigError> {
        let learning_share = self.learning_share.unwrap_or(DEFAULT_LEARNING_SHARE);
        if !(0.0..=1.0).contains(&learning_share) {
            return Err(invalid("budget.learning_share", "must be in [0, 1]"));
        }
        let tz_name = self.timezone.as_deref().unwrap_or("UTC");
        let timezone: chrono_tz::Tz = tz_name
            .parse()
            .map_err(|_| invalid("budget.timezone", format!("unknown time zone {tz_name:?}")))?;
        let raw_campaigns = match self.campaigns {
            Some(c) => {
                if self.daily_cap_cents.is_some() {
                    return Err(invalid(
                        "budget.daily_cap_cents",
                        "give either daily_cap_cents or campaigns, not both",
                    ));
                }
                c
            }
            None => vec![RawCampaign {
                id: DEFAULT_CAMPAIGN.to_owned(),
                daily_cap_cents: self.daily_cap_cents.unwrap_or(100_000),
                total_cap_cents: None,
                learning_cap_cents: None,
                paused: None,
                tiers_cents: None,
                min_intent_cents: None,
                holdout_share: None,
                explore_share: None,
                starts_at: None,
                ends_at: None,
            }],
        };
        if raw_campaigns.is_empty() {
            return Err(invalid("budget.campaigns", "need at least one campaign"));
        }
        let mut campaigns = std::collections::HashMap::new();
        let mut overrides = std::collections::BTreeMap::new();
        for c in &raw_campaigns {
            let budget = c.validate(learning_share)?;
            overrides.insert(c.id.clone(), c.overrides()?);
            if campaigns.insert(c.id.clone(), budget).is_some() {
                return Err(invalid(
                    "budget.campaigns",
                    format!("duplicate campaign {:?}", c.id),
                ));
            }
        }
        let default_campaign = self
            .default_campaign
            .unwrap_or_else(|| raw_campaigns[0].id.clone());
        if !campaigns.contains_key(&default_campaign) {
            return Err(invalid(
                "budget.default_campaign",
                format!("{default_campaign:?} is not a configured campaign"),
            ));
        }
        Ok(ValidBudget {
            budgets: Budgets {
                timezone,
                campaigns,
            },
            default_campaign,
            learning_share,
            overrides,
        })
    }
}

/// `[budget]`, validated.
pub(super) struct ValidBudget {
    pub budgets: Budgets,
    pub default_campaign: String,
    pub learning_share: f64,
    pub overrides: std::collections::BTreeMap<String, crate::campaigns::Overrides>,
}

impl RawCampaign {
    /// What the campaign sets beyond its caps; checked against the policy
    /// and experiment once those are validated (`check_campaigns`).
    fn overrides(&self) -> Result<crate::campaigns::Overrides, ConfigError> {
        let at = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|t| crate::campaigns::parse_instant(field, t))
                .transpose()
                .map_err(|e| invalid("budget.campaigns", format!("campaign {:?}: {e}", self.id)))
        };
        Ok(crate::campaigns::Overrides {
            paused: self.paused,
            tiers_cents: self.tiers_cents.clone(),
            min_intent_cents: self.min_intent_cents,
            holdout_share: self.holdout_share,
            explore_share: self.explore_share,
            starts_at_ms: at("starts_at", &self.starts_at)?,
            ends_at_ms: at("ends_at", &self.ends_at)?,
        })
    }

    /// The campaign's budget; its learning cap is `learning_share` of the
    /// daily cap unless it sets `learning_cap_cents`.
    pub(super) fn validate(&self, learning_share: f64) -> Result<CampaignBudget, ConfigError> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self.id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "budget.campaigns",
                format!("campaign id {:?} must be 1..=64 printable ASCII", self.id),
            ));
        }
        if self.daily_cap_cents < 0 {
            return Err(invalid(
                "budget.daily_cap_cents",
                format!("campaign {:?}: must be >= 0", self.id),
            ));
        }
        if self.total_cap_cents.is_some_and(|t| t < 0) {
            return Err(invalid(
                "budget.campaigns",
                format!("campaign {:?}: total_cap_cents must be >= 0", self.id),
            ));
        }
        let mut budget = CampaignBudget::with_learning_share(
            self.daily_cap_cents,
            self.total_cap_cents,
            learning_share,
        );
        if let Some(learning) = self.learning_cap_cents {
            if !(0..=self.daily_cap_cents).contains(&learning) {
                return Err(invalid(
                    "budget.campaigns.learning_cap_cents",
                    format!(
                        "campaign {:?}: {learning} must be in 0..={} (the daily cap)",
                        self.id, self.daily_cap_cents
                    ),
                ));
            }
            budget.learning_cap_cents = learning;
        }
        Ok(budget)
    }
}

/// The ledger and session backends, which must agree.
pub(super) fn validate_backends(
    ledger: &RawLedger,
    sessions: &RawSessions,
) -> Result<(LedgerBackend, SessionBackend), ConfigError> {
    let ledger_backend = match ledger.backend.as_deref().unwrap_or("sqlite") {
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
    let session_backend = match sessions.backend.as_deref().unwrap_or("memory") {
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
    Ok((ledger_backend, session_backend))
}

impl RawLedger {
    pub(super) fn validate_sweep(&self) -> Result<Duration, ConfigError> {
        let sweep = self.sweep_interval_secs.unwrap_or(60);
        if sweep == 0 {
            return Err(invalid("ledger.sweep_interval_secs", "must be > 0"));
        }
        Ok(Duration::from_secs(sweep))
    }
}

impl RawVoucher {
    /// The configured secret, if any, and the minimum order.
    pub(super) fn validate(self) -> Result<(Option<Secret>, i64), ConfigError> {
        let secret = match self.secret {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(invalid(
                    "voucher.secret",
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ))
            }
            Some(s) => Some(Secret(s)),
            None => None,
        };
        let min_order_cents = self.min_order_cents.unwrap_or(9_900);
        if min_order_cents < 0 {
            return Err(invalid("voucher.min_order_cents", "must be >= 0"));
        }
        Ok((secret, min_order_cents))
    }
}

impl RawExperiment {
    pub(super) fn validate(self) -> Result<Experiment, ConfigError> {
        let d = Experiment::default();
        let experiment = Experiment {
            holdout_share: self.holdout_share.unwrap_or(d.holdout_share),
            explore_share: self.explore_share.unwrap_or(d.explore_share),
            cold_explore_share: self.cold_explore_share.unwrap_or(d.cold_explore_share),
            salt: self.salt.unwrap_or(d.salt),
        };
        if !(0.0..1.0).contains(&experiment.holdout_share) {
            return Err(invalid("experiment.holdout_share", "must be in [0, 1)"));
        }
        if !(0.0..=1.0).contains(&experiment.explore_share) {
            return Err(invalid("experiment.explore_share", "must be in [0, 1]"));
        }
        if !(0.0..=1.0).contains(&experiment.cold_explore_share) {
            return Err(invalid(
                "experiment.cold_explore_share",
                "must be in [0, 1]",
            ));
        }
        Ok(experiment)
    }
}

impl RawLog {
    /// The decision log's settings, or `None` when it is off.
    pub(super) fn validate(&self) -> Result<Option<LogConfig>, ConfigError> {
        if !self.enabled.unwrap_or(true) {
            return Ok(None);
        }
        let rotate_bytes = self.rotate_bytes.unwrap_or(64 * 1024 * 1024);
        let queue = self.queue.unwrap_or(65_536);
        if rotate_bytes < 4_096 {
            return Err(invalid("log.rotate_bytes", "must be >= 4096"));
        }
        if queue == 0 {
            return Err(invalid("log.queue", "must be > 0"));
        }
        let retain_days = self.retain_days.unwrap_or(14);
        if !(1..=3_650).contains(&retain_days) {
            return Err(invalid("log.retain_days", "must be in 1..=3650"));
        }
        let max_bytes = self.retain_bytes.unwrap_or(10 * 1024 * 1024 * 1024);
        if max_bytes < rotate_bytes {
            return Err(invalid(
                "log.retain_bytes",
                "must be >= log.rotate_bytes (64 MiB unless set)",
            ));
        }
        let report_refresh = self.report_refresh_ms.map_or(
            LogConfig::DEFAULT_REPORT_REFRESH,
            std::time::Duration::from_millis,
        );
        if report_refresh > std::time::Duration::from_secs(86_400) {
            return Err(invalid(
                "log.report_refresh_ms",
                "must be <= 86400000 (a day)",
            ));
        }
        let report_max_sessions = self
            .report_max_sessions
            .unwrap_or(LogConfig::DEFAULT_REPORT_MAX_SESSIONS);
        if report_max_sessions == 0 {
            return Err(invalid("log.report_max_sessions", "must be > 0"));
        }
        Ok(Some(LogConfig {
            rotate_bytes,
            queue,
            retention: crate::decision_log::writer::Retention {
                max_age: std::time::Duration::from_secs(retain_days * 86_400),
                max_bytes,
            },
            report_refresh,
            report_max_sessions,
        }))
    }
}

impl RawLimits {
    pub(super) fn validate(&self) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let limits = Limits {
            max_events_per_request: self
                .max_events_per_request
                .unwrap_or(d.max_events_per_request),
            max_request_bytes: self.max_request_bytes.unwrap_or(d.max_request_bytes),
            max_features: self.max_features.unwrap_or(d.max_features),
            ..d
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
        Ok(limits)
    }
}

impl RawServer {
    /// The transport limits; the in-flight bound depends on the largest
    /// message `limits` lets the transport decode.
    pub(super) fn validate(&self, limits: &Limits) -> Result<ServerLimits, ConfigError> {
        fn secs(
            v: Option<u64>,
            default: u64,
            max: u64,
            field: &'static str,
        ) -> Result<Duration, ConfigError> {
            let v = v.unwrap_or(default);
            if !(1..=max).contains(&v) {
                return Err(invalid(field, format!("must be in 1..={max}")));
            }
            Ok(Duration::from_secs(v))
        }
        if let Some(n) = self.max_connections {
            if !(1..=1_000_000).contains(&n) {
                return Err(invalid("server.max_connections", "must be in 1..=1000000"));
            }
        }
        let handshake_timeout = secs(
            self.handshake_timeout_secs,
            5,
            300,
            "server.handshake_timeout_secs",
        )?;
        let idle_timeout = secs(
            self.idle_timeout_secs,
            30,
            86_400,
            "server.idle_timeout_secs",
        )?;
        let keepalive_interval = secs(
            self.keepalive_interval_secs,
            10,
            3_600,
            "server.keepalive_interval_secs",
        )?;
        if keepalive_interval >= idle_timeout {
            return Err(invalid(
                "server.keepalive_interval_secs",
                "must be below server.idle_timeout_secs, or live idle clients are closed",
            ));
        }
        let keepalive_timeout = secs(
            self.keepalive_timeout_secs,
            10,
            600,
            "server.keepalive_timeout_secs",
        )?;
        let max_concurrent_streams = self.max_concurrent_streams.unwrap_or(64);
        if !(1..=10_000).contains(&max_concurrent_streams) {
            return Err(invalid(
                "server.max_concurrent_streams",
                "must be in 1..=10000",
            ));
        }
        let message = limits.max_message_bytes();
        let fitting = MAX_IN_FLIGHT_BYTES / message;
        let max_concurrent_requests = self
            .max_concurrent_requests
            .unwrap_or(fitting.clamp(1, 128));
        if max_concurrent_requests == 0 || max_concurrent_requests > fitting.max(1) {
            return Err(invalid(
                "server.max_concurrent_requests",
                format!(
                    "must be in 1..={}: times the largest message ({message} bytes, 4 x limits.max_request_bytes) it must stay within {MAX_IN_FLIGHT_BYTES} bytes",
                    fitting.max(1)
                ),
            ));
        }
        let request_timeout_ms = self.request_timeout_ms.unwrap_or(5_000);
        if !(100..=600_000).contains(&request_timeout_ms) {
            return Err(invalid(
                "server.request_timeout_ms",
                "must be in 100..=600000",
            ));
        }
        let max_frame_size = self.max_frame_size.unwrap_or(16_384);
        if !(16_384..=16_777_215).contains(&max_frame_size) {
            return Err(invalid(
                "server.max_frame_size",
                "must be in 16384..=16777215 (HTTP/2)",
            ));
        }
        let max_header_list_size = self.max_header_list_size.unwrap_or(16_384);
        if !(1_024..=1_048_576).contains(&max_header_list_size) {
            return Err(invalid(
                "server.max_header_list_size",
                "must be in 1024..=1048576",
            ));
        }
        Ok(ServerLimits {
            max_connections: self.max_connections,
            handshake_timeout,
            idle_timeout,
            keepalive_interval,
            keepalive_timeout,
            max_concurrent_streams,
            max_concurrent_requests,
            request_timeout: Duration::from_millis(request_timeout_ms),
            max_frame_size,
            max_header_list_size,
        })
    }
}

/// `[http] cors_allow_origins`, validated: each origin a bare
/// `scheme://host[:port]` (what a browser sends in `Origin`), or `*` alone.
/// Credentials (cookies) are never allowed: callers authenticate with a
/// bearer token, so `*` cannot hand a visitor's cookies to another site.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers: browsers on other origins cannot call.
    #[default]
    None,
    /// `*`: any origin.
    Any,
    /// These origins exactly.
    List(Vec<String>),
}

impl CorsOrigins {
    pub(super) fn validate(raw: Option<Vec<String>>) -> Result<CorsOrigins, ConfigError> {
        let Some(list) = raw else {
            return Ok(CorsOrigins::None);
        };
        if list.iter().any(|o| o == "*") {
            if list.len() > 1 {
                return Err(invalid(
                    "http.cors_allow_origins",
                    "\"*\" allows every origin: give it alone",
                ));
            }
            return Ok(CorsOrigins::Any);
        }
        for (i, origin) in list.iter().enumerate() {
            origin_ok(origin).map_err(|why| ConfigError::InvalidAt {
                field: format!("http.cors_allow_origins[{i}]"),
                message: format!("{origin:?}: {why}"),
            })?;
        }
        if list.is_empty() {
            return Ok(CorsOrigins::None);
        }
        Ok(CorsOrigins::List(list))
    }
}

/// An origin as browsers send it: `http` or `https`, a host, an optional
/// port, nothing after.
fn origin_ok(origin: &str) -> Result<(), &'static str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("an origin starts with https:// or http://")?;
    if rest.is_empty() {
        return Err("the origin names no host");
    }
    if rest.contains(['/', '?', '#', '@']) {
        return Err("an origin is scheme://host[:port], without a path or a trailing slash");
    }
    if !rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return Err("the host holds a character an origin cannot");
    }
    Ok(())
}

#[cfg(test)]
mod cors_tests {
    use super::*;

    fn v(list: &[&str]) -> Result<CorsOrigins, ConfigError> {
        CorsOrigins::validate(Some(list.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn origins_are_bare_or_a_lone_star() {
        assert_eq!(CorsOrigins::validate(None).unwrap(), CorsOrigins::None);
        assert_eq!(v(&["*"]).unwrap(), CorsOrigins::Any);
        assert_eq!(
            v(&["https://shop.example", "http://localhost:8080"]).unwrap(),
            CorsOrigins::List(vec![
                "https://shop.example".into(),
                "http://localhost:8080".into()
            ])
        );
        for (bad, field) in [
            (&["*", "https://a.example"][..], "http.cors_allow_origins"),
            (&["https://a.example/"][..], "http.cors_allow_origins[0]"),
            (
                &["https://a.example", "shop.example"][..],
                "http.cors_allow_origins[1]",
            ),
            (&["https://"][..], "http.cors_allow_origins[0]"),
        ] {
            let e = v(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{field}:")), "{bad:?}: {e}");
        }
    }
}
