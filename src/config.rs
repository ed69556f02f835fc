//! Configuration: one TOML file, every field optional with a documented
//! default, unknown fields rejected, validated once into [`Settings`] whose
//! values need no re-checking.
//!
//! The environment is injected: [`RawConfig::from_toml`] parses text and the
//! binary decides where the text comes from.

use crate::policy::{Policy, Tier, MAX_TIERS};
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// A session idle for longer than this starts afresh. Default 1800 s.
    pub idle_ttl_secs: Option<u64>,
    /// Upper bound on sessions held in memory. Default 1,000,000.
    pub max_sessions: Option<u64>,
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
    /// Daily voucher cap in cents (UTC day). Default 100000 (1,000 EUR).
    pub daily_cap_cents: Option<i64>,
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
    pub daily_cap_cents: i64,
    pub limits: Limits,
}

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

        let daily_cap_cents = self.budget.daily_cap_cents.unwrap_or(100_000);
        if daily_cap_cents < 0 {
            return Err(invalid("budget.daily_cap_cents", "must be >= 0"));
        }

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
            },
            offer_ttl: Duration::from_secs(offer_ttl),
            daily_cap_cents,
            limits,
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
            (
                "[[policy.tiers]]\namount_cents = 0\nlift = 0.1",
                "policy.tiers",
            ),
        ] {
            let e = RawConfig::from_toml(text).unwrap().validate().unwrap_err();
            assert!(e.to_string().contains(field), "{text}: {e}");
        }
    }
}
