//! The Redis implementations of [`SessionStore`] and [`Ledger`]: the shared
//! state that lets several nudge replicas serve one shop.
//!
//! # Why Lua scripts
//!
//! Every ledger change is one Lua script, and Redis runs a script alone: the
//! budget check and the reservation of [`Ledger::reserve`] cannot interleave
//! with another replica's, so the day cap holds across any number of
//! replicas exactly as [`crate::ledger::LedgerCore`] holds it inside one
//! process (the same conformance suite runs against both). The voucher code
//! is minted in Rust (the MAC key never reaches Redis): one code per
//! candidate amount is sent, the script keeps the one it reserves, and a
//! code collision is answered `collision` and retried with new nonces.
//!
//! The learning budget lives in the same scripts: a learning reservation
//! checks the day's `learning_reserved + learning_captured` against the
//! learning cap in the same step as the main check, and every script that
//! moves an offer's money (reserve, redeem, void, the sweeper) moves its
//! learning counters with it, so the two never drift apart.
//!
//! Session state is folded in Rust ([`SessionState::apply`] is the one
//! feature path) and written back with a compare-and-set script: a
//! concurrent update of the same session makes the write fail and the fold
//! is redone on the new state, so no update is lost.
//!
//! # Keys
//!
//! Every key starts with `{prefix}:` (default `{nudge}:`). The client
//! speaks to one standalone Redis (or Valkey, or a managed service's
//! primary endpoint); Redis Cluster is not supported. The braces are
//! nevertheless a cluster hash tag, so every key of one deployment would
//! land in one slot, as the scripts need (they derive the day and campaign
//! counter keys from the offer they touch).
//!
//! | key | type | holds |
//! |---|---|---|
//! | `offer:<code>` | hash | one offer row (campaign, session, day, amount, issued, expires, state, settled, order, learning) |
//! | `by_session` | hash | `<campaign> 0x1f <session>` -> code (the session's latest offer; one live offer per session and campaign) |
//! | `day:<campaign>:<YYYY-MM-DD>` | hash | reserved, captured, offers of the budget day; learning_reserved, learning_captured: the exploration vouchers' part of them |
//! | `total:<campaign>` | hash | the same over the campaign's lifetime |
//! | `caps:<campaign>` | hash | caps changed at run time: daily, total (-1: none), learning, revision; read by every reservation |
//! | `reserved` / `captured` | sorted sets | codes by expiry / by capture time (sweeper, ROI report) |
//! | `outcomes` / `outcome_at` | hash / sorted set | session -> `converted:order:at`, and by time |
//! | `sess:<session>` | string | a session's state as JSON, with its last-touch time |
//!
//! # Two roles, two instances
//!
//! Sessions may live in another instance (`sessions.redis_url`) than the
//! ledger: money needs `noeviction` (its keys have no TTL), sessions need
//! an evicting policy, since visitors choose how many there are. See
//! `checks` for why and for the warnings logged at start.
//!
//! # Durability
//!
//! An offer must be durable before it is sent. Redis acknowledges a write
//! once it is in memory; run it with `appendonly yes` and `appendfsync
//! always` for the same guarantee as the SQLite ledger (the service warns at
//! start when it can read a weaker setting). A replica promoted after a
//! crash can miss the last writes of the old primary; that is Redis's
//! replication model, and why a single durable primary is the recommended
//! set-up for the ledger.
//!
//! # Failures
//!
//! Connections are made lazily and re-made after a failure
//! ([`redis::aio::ConnectionManager`]), with a connect and a response
//! timeout; a Redis that is down or slow turns into
//! [`LedgerError::Unavailable`] / [`StoreError::Unavailable`], which the
//! engine answers with a score and no voucher (fail closed on money, open
//! on scoring). A reply the scripts cannot have produced is also
//! `Unavailable`, never a panic.

mod campaigns;
mod checks;
mod ledger;
mod models;
mod sessions;

pub use campaigns::RedisSettingsStore;
pub use checks::{check_instances, findings, Finding, InstanceInfo};
pub use ledger::RedisLedger;
pub use models::RedisModelRegistry;
pub use sessions::RedisSessionStore;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Validated connection settings (see `[redis]` in the config reference).
/// `Debug` hides a password in the URL (`check-config` prints settings).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://host:port/db`, `rediss://host:port/db` (TLS) or
    /// `unix:///path/to/socket`.
    pub url: String,
    /// Key prefix, without the braces.
    pub key_prefix: String,
    /// Connect and response timeout of one command.
    pub timeout: Duration,
    /// With `rediss://`: PEM file of the CA that signed the server's
    /// certificate; None trusts the system's roots.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// The URL with its password replaced: the one in the user info
/// (`redis://user:pw@host`) and the `pass` / `password` query parameters
/// (`unix:///run/redis.sock?pass=pw`).
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.find("://").map(|i| i + 3) {
        None => base.to_owned(),
        Some(start) => {
            let authority_end = base[start..].find('/').map_or(base.len(), |i| start + i);
            match base[start..authority_end].rfind('@') {
                Some(at) => {
                    let userinfo = &base[start..start + at];
                    let user = userinfo.split(':').next().unwrap_or("");
                    let shown = if userinfo.contains(':') {
                        format!("{user}:<redacted>")
                    } else {
                        "<redacted>".to_owned()
                    };
                    format!("{}{shown}{}", &base[..start], &base[start + at..])
                }
                None => base.to_owned(),
            }
        }
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                {
                    format!("{k}=<redacted>")
                }
                _ => kv.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// A lazily connecting, self-healing connection shared by the store and the
/// ledger. Cloning is cheap (one multiplexed connection).
#[derive(Clone)]
pub struct RedisConn {
    manager: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisConn {
    /// Does not connect: the first command does (so a service whose Redis
    /// is down still starts and scores).
    /// Must be called inside a Tokio runtime (the connection's driver task
    /// is spawned on it); outside one this is an error, not a panic.
    pub fn new(settings: &RedisSettings) -> Result<Self, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("redis: the connection needs a running tokio runtime".into());
        }
        let client = if settings.url.starts_with("rediss://") {
            // rustls is built without a default crypto provider: use ring
            // (no cmake needed). Installing it twice is harmless.
            let _ = rustls::crypto::ring::default_provider().install_default();
            match &settings.tls_ca_file {
                Some(path) => {
                    let pem = std::fs::read(path)
                        .map_err(|e| format!("redis.tls_ca_file {}: {e}", path.display()))?;
                    redis::Client::build_with_tls(
                        settings.url.as_str(),
                        redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(pem),
                        },
                    )
                }
                None => redis::Client::open(settings.url.as_str()),
            }
        } else {
            redis::Client::open(settings.url.as_str())
        }
        .map_err(|e| format!("redis.url: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            // No connect retries inside a call: a Redis that is down costs
            // one timeout per command, and the next call dials again.
            .set_number_of_retries(0)
            .set_max_delay(Duration::from_millis(500));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("redis: {e}"))?;
        Ok(RedisConn {
            manager,
            prefix: format!("{{{}}}", settings.key_prefix),
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    fn con(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// `PING`: the instance answers within the timeout.
    pub async fn ping(&self) -> Result<(), String> {
        let mut con = self.con();
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_redis_password() {
        for (url, shown) in [
            ("redis://:s3cret@h:6379/0", "redis://:<redacted>@h:6379/0"),
            ("rediss://app:s3cret@h/1", "rediss://app:<redacted>@h/1"),
            ("redis://s3cret@h", "redis://<redacted>@h"),
            ("redis://h:6379/0", "redis://h:6379/0"),
            ("unix:///run/redis.sock", "unix:///run/redis.sock"),
            (
                "unix:///run/redis.sock?db=2&pass=s3cret",
                "unix:///run/redis.sock?db=2&pass=<redacted>",
            ),
            (
                "redis+unix:///r.sock?user=app&password=s3cret",
                "redis+unix:///r.sock?user=app&password=<redacted>",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
            let s = RedisSettings {
                url: url.into(),
                key_prefix: "nudge".into(),
                timeout: Duration::from_millis(500),
                tls_ca_file: None,
            };
            assert!(!format!("{s:?}").contains("s3cret"));
        }
    }
}
