//! What the service reads of its Redis instances at start, and the warnings
//! it logs about them.
//!
//! Money and sessions want opposite memory policies. The ledger's keys have
//! no TTL and must never be evicted (an evicted day counter resets a
//! budget), so its instance runs `noeviction`: when it is full, writes
//! fail. Sessions are disposable (a lost session is scored afresh) and
//! their number is chosen by the visitors, so their instance runs with a
//! `maxmemory` and an evicting policy (`allkeys-lru`): a flood of new
//! session ids evicts old sessions instead of filling the instance. On one
//! shared instance under `noeviction`, a session flood would fill it and
//! then refuse every offer and redemption; hence `sessions.redis_url` and
//! the warnings below.
//!
//! Managed services often refuse `CONFIG`; what cannot be read is not
//! warned about (a debug line says so).

use super::RedisConn;

/// What one instance says about itself; `None` where it refused to say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `INFO server`'s `run_id`: equal on two connections means one
    /// instance (whatever the URLs or database numbers).
    pub run_id: Option<String>,
    pub maxmemory_policy: Option<String>,
    /// Bytes; 0 is unbounded.
    pub maxmemory: Option<u64>,
    pub appendonly: Option<String>,
    pub appendfsync: Option<String>,
}

/// A setting that puts money or availability at risk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// An `allkeys-*` policy can evict ledger keys.
    LedgerMayEvict { policy: String },
    /// An acknowledged offer can be lost in a crash.
    LedgerNotFsynced {
        appendonly: String,
        appendfsync: String,
    },
    /// Sessions live in the ledger's instance.
    SessionsShareLedger { policy: String },
    /// The sessions' own instance never evicts: a flood fills it.
    SessionsNeverEvict,
    /// The sessions' own instance has no memory bound.
    SessionsUnbounded,
}

/// The findings for a ledger instance and, when sessions are in Redis, the
/// sessions' instance. `same_url`: both were configured with one URL (the
/// fallback when `run_id` cannot be read).
pub fn findings(
    ledger: &InstanceInfo,
    sessions: Option<&InstanceInfo>,
    same_url: bool,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(policy) = &ledger.maxmemory_policy {
        // Ledger keys have no TTL: only an allkeys-* policy can evict them.
        if policy.starts_with("allkeys-") {
            out.push(Finding::LedgerMayEvict {
                policy: policy.clone(),
            });
        }
    }
    if let (Some(aof), Some(fsync)) = (&ledger.appendonly, &ledger.appendfsync) {
        if aof != "yes" || fsync != "always" {
            out.push(Finding::LedgerNotFsynced {
                appendonly: aof.clone(),
                appendfsync: fsync.clone(),
            });
        }
    }
    let Some(sessions) = sessions else {
        return out;
    };
    let shared = match (&ledger.run_id, &sessions.run_id) {
        (Some(a), Some(b)) => a == b,
        _ => same_url,
    };
    if shared {
        out.push(Finding::SessionsShareLedger {
            policy: ledger
                .maxmemory_policy
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        });
        return out;
    }
    // Every session key has a TTL, so volatile-* policies evict them too.
    if sessions.maxmemory_policy.as_deref() == Some("noeviction") {
        out.push(Finding::SessionsNeverEvict);
    }
    if sessions.maxmemory == Some(0) {
        out.push(Finding::SessionsUnbounded);
    }
    out
}

/// Logs one warning per finding.
pub fn log(findings: &[Finding]) {
    for f in findings {
        match f {
            Finding::LedgerMayEvict { policy } => tracing::warn!(
                maxmemory_policy = %policy,
                "redis may evict ledger keys under memory pressure, which would reset budgets (set maxmemory-policy noeviction on the ledger's instance)"
            ),
            Finding::LedgerNotFsynced {
                appendonly,
                appendfsync,
            } => tracing::warn!(
                appendonly = %appendonly,
                appendfsync = %appendfsync,
                "redis does not fsync every write: an acknowledged offer can be lost in a crash (set appendonly yes, appendfsync always)"
            ),
            Finding::SessionsShareLedger { policy } if policy.starts_with("volatile-") => {
                tracing::warn!(
                    maxmemory_policy = %policy,
                    "sessions share the ledger's redis instance: a flood of new sessions evicts only sessions (their keys alone have a ttl), but competes with the ledger for memory and persistence (set sessions.redis_url to a separate instance with maxmemory and maxmemory-policy allkeys-lru)"
                )
            }
            Finding::SessionsShareLedger { policy } => tracing::warn!(
                maxmemory_policy = %policy,
                "sessions share the ledger's redis instance: a flood of new sessions can fill it and then refuse offers and redemptions (set sessions.redis_url to a separate instance with maxmemory and maxmemory-policy allkeys-lru)"
            ),
            Finding::SessionsNeverEvict => tracing::warn!(
                "the sessions' redis instance does not evict (maxmemory-policy noeviction): a flood of new sessions fills it, tracks are refused and decisions are scored on their own events until sessions expire (set maxmemory-policy allkeys-lru)"
            ),
            Finding::SessionsUnbounded => tracing::warn!(
                "the sessions' redis instance has no maxmemory: a flood of new sessions grows it until the host runs out of memory (set maxmemory)"
            ),
        }
    }
}

impl RedisConn {
    /// What the instance says about itself; a refused `CONFIG` or `INFO`
    /// leaves its fields `None`.
    pub async fn instance_info(&self) -> InstanceInfo {
        let mut con = self.con();
        let mut info = InstanceInfo::default();
        let config: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("*")
            .query_async(&mut con)
            .await;
        match config {
            Ok(kv) => {
                let get = |name: &str| {
                    kv.chunks(2)
                        .find(|c| c.first().map(String::as_str) == Some(name))
                        .and_then(|c| c.get(1).cloned())
                };
                info.maxmemory_policy = get("maxmemory-policy");
                info.maxmemory = get("maxmemory").and_then(|m| m.parse().ok());
                info.appendonly = get("appendonly");
                info.appendfsync = get("appendfsync");
            }
            Err(e) => tracing::debug!(error = %e, "redis settings not readable"),
        }
        let server: Result<String, _> =
            redis::cmd("INFO").arg("server").query_async(&mut con).await;
        match server {
            Ok(text) => {
                info.run_id = text
                    .lines()
                    .find_map(|l| l.strip_prefix("run_id:"))
                    .map(|id| id.trim().to_owned());
            }
            Err(e) => tracing::debug!(error = %e, "redis server info not readable"),
        }
        info
    }
}

/// Reads the ledger's instance and the sessions' (when sessions are in
/// Redis), logs the findings and returns them.
pub async fn check_instances(
    ledger: &RedisConn,
    sessions: Option<&RedisConn>,
    same_url: bool,
) -> Vec<Finding> {
    let ledger_info = ledger.instance_info().await;
    let sessions_info = match sessions {
        Some(s) => Some(s.instance_info().await),
        None => None,
    };
    let found = findings(&ledger_info, sessions_info.as_ref(), same_url);
    log(&found);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(run_id: &str, policy: &str, maxmemory: u64) -> InstanceInfo {
        InstanceInfo {
            run_id: Some(run_id.into()),
            maxmemory_policy: Some(policy.into()),
            maxmemory: Some(maxmemory),
            appendonly: Some("yes".into()),
            appendfsync: Some("always".into()),
        }
    }

    #[test]
    fn money_on_noeviction_and_sessions_on_lru_apart_is_quiet() {
        let money = instance("a", "noeviction", 0);
        for policy in ["allkeys-lru", "volatile-lru", "allkeys-lfu"] {
            let sessions = instance("b", policy, 64 << 20);
            assert_eq!(findings(&money, Some(&sessions), false), vec![]);
        }
        assert_eq!(findings(&money, None, false), vec![]);
    }

    #[test]
    fn one_instance_for_both_is_named_whatever_the_urls() {
        let money = instance("a", "noeviction", 0);
        let shared = Finding::SessionsShareLedger {
            policy: "noeviction".into(),
        };
        // Another database number on the same server: same run_id.
        assert_eq!(
            findings(&money, Some(&instance("a", "noeviction", 0)), false),
            vec![shared.clone()]
        );
        // INFO refused: the URLs decide.
        let unknown = InstanceInfo::default();
        assert_eq!(findings(&money, Some(&unknown), true), vec![shared.clone()]);
        assert_eq!(findings(&money, Some(&unknown), false), vec![]);
    }

    #[test]
    fn risky_settings_are_each_named() {
        let mut money = instance("a", "allkeys-lru", 0);
        money.appendfsync = Some("everysec".into());
        let sessions = instance("b", "noeviction", 0);
        assert_eq!(
            findings(&money, Some(&sessions), false),
            vec![
                Finding::LedgerMayEvict {
                    policy: "allkeys-lru".into()
                },
                Finding::LedgerNotFsynced {
                    appendonly: "yes".into(),
                    appendfsync: "everysec".into()
                },
                Finding::SessionsNeverEvict,
                Finding::SessionsUnbounded,
            ]
        );
        // Nothing readable (CONFIG refused): nothing to say.
        assert_eq!(
            findings(
                &InstanceInfo::default(),
                Some(&InstanceInfo::default()),
                false
            ),
            vec![]
        );
    }
}
