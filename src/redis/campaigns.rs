//! Campaign settings in Redis, shared by every replica: a hash of the
//! campaigns (`<prefix>:campaigns`, id -> stored JSON), a version counter
//! every commit bumps (`<prefix>:campaigns:version`, which replicas poll)
//! and the audit trail, newest first (`<prefix>:audit`, a capped list).
//! A commit is one Lua script: the revision check, the write, the version
//! and the audit entry in one atomic step.

use super::RedisConn;
use crate::campaigns::store::{AuditEntry, Commit, CommitError, SettingsStore, Stored, MAX_AUDIT};
use crate::campaigns::CampaignError;
use async_trait::async_trait;
use redis::Script;

/// KEYS: campaigns, version, audit. ARGV: id, expected revision (-1: must
/// not exist), stored JSON, audit JSON with `"seq":0` to fill, max audit.
/// Answers the new version, or -1 when stale.
const COMMIT: &str = r#"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local expected = tonumber(ARGV[2])
if cur then
  local rev = cjson.decode(cur)['settings']['revision']
  if expected < 0 or rev ~= expected then return -1 end
elseif expected >= 0 then
  return -1
end
local v = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local audit = string.gsub(ARGV[4], '"seq":0', '"seq":' .. v, 1)
redis.call('LPUSH', KEYS[3], audit)
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
return v
"#;

/// Audit entries read per round trip while filtering by campaign.
const AUDIT_PAGE: isize = 500;

pub struct RedisSettingsStore {
    conn: RedisConn,
    commit: Script,
}

impl RedisSettingsStore {
    pub fn new(conn: RedisConn) -> Self {
        RedisSettingsStore {
            conn,
            commit: Script::new(COMMIT),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> CampaignError {
    CampaignError::Unavailable(format!("redis: {e}"))
}

#[async_trait]
impl SettingsStore for RedisSettingsStore {
    async fn load(&self) -> Result<(Vec<Stored>, u64), CampaignError> {
        let mut con = self.conn.con();
        let (all, version): (Vec<String>, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("HVALS")
            .arg(self.conn.key(&["campaigns"]))
            .cmd("GET")
            .arg(self.conn.key(&["campaigns", "version"]))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut stored = Vec::with_capacity(all.len());
        for json in all {
            stored.push(serde_json::from_str(&json).map_err(unavailable)?);
        }
        Ok((stored, version.unwrap_or(0)))
    }

    async fn version(&self) -> Result<u64, CampaignError> {
        let mut con = self.conn.con();
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.conn.key(&["campaigns", "version"]))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    async fn commit(&self, commit: Commit) -> Result<AuditEntry, CommitError> {
        let mut audit = commit.audit;
        audit.seq = 0;
        let audit_json =
            serde_json::to_string(&audit).map_err(|e| CommitError::Store(unavailable(e)))?;
        let stored = serde_json::to_string(&commit.stored)
            .map_err(|e| CommitError::Store(unavailable(e)))?;
        let mut con = self.conn.con();
        let v: i64 = self
            .commit
            .key(self.conn.key(&["campaigns"]))
            .key(self.conn.key(&["campaigns", "version"]))
            .key(self.conn.key(&["audit"]))
            .arg(&commit.stored.settings.id)
            .arg(commit.expected.map_or(-1, |e| e as i64))
            .arg(stored)
            .arg(audit_json)
            .arg(MAX_AUDIT)
            .invoke_async(&mut con)
            .await
            .map_err(|e| CommitError::Store(unavailable(e)))?;
        if v < 0 {
            return Err(CommitError::Stale);
        }
        audit.seq = v as u64;
        Ok(audit)
    }

    async fn audit(
        &self,
        campaign: Option<&str>,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<AuditEntry>, CampaignError> {
        let mut con = self.conn.con();
        let mut out = Vec::new();
        let mut start: isize = 0;
        while out.len() < limit && (start as usize) < MAX_AUDIT {
            let page: Vec<String> = redis::cmd("LRANGE")
                .arg(self.conn.key(&["audit"]))
                .arg(start)
                .arg(start + AUDIT_PAGE - 1)
                .query_async(&mut con)
                .await
                .map_err(unavailable)?;
            if page.is_empty() {
                break;
            }
            start += AUDIT_PAGE;
            for json in page {
                let a: AuditEntry = serde_json::from_str(&json).map_err(unavailable)?;
                if campaign.is_some_and(|c| a.campaign != c)
                    || before_seq.is_some_and(|b| a.seq >= b)
                {
                    continue;
                }
                out.push(a);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
