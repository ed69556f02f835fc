//! The model history in Redis, shared by every replica: the entries
//! (`<prefix>:models`, seq -> entry JSON), the model files' text
//! (`<prefix>:models:bodies`), the rollbacks (`<prefix>:models:rolled_back`,
//! seq -> who and why), the live entry (`<prefix>:models:live`, which
//! replicas poll) and the seq counter (`<prefix>:models:seq`). Publish and
//! rollback are each one Lua script, so replicas and the command line can
//! change the history side by side.

use super::RedisConn;
use crate::models::{ModelEntry, ModelRegistry, Publish, RegistryError, Rollback, RolledBack};
use async_trait::async_trait;
use redis::Script;
use std::collections::HashMap;

/// KEYS: entries, bodies, live, rolled_back, seq. ARGV: entry JSON starting
/// `{"seq":0`, body, sha256, entries in service to keep. Answers the live
/// entry's JSON.
const PUBLISH: &str = r#"
local live = redis.call('GET', KEYS[3])
if live and cjson.decode(live)['sha256'] == ARGV[3] then return live end
local seq = redis.call('INCR', KEYS[5])
local entry = string.gsub(ARGV[1], '"seq":0', '"seq":' .. seq, 1)
redis.call('HSET', KEYS[1], seq, entry)
redis.call('HSET', KEYS[2], seq, ARGV[2])
redis.call('SET', KEYS[3], entry)
local ids = redis.call('HKEYS', KEYS[1])
table.sort(ids, function(a, b) return tonumber(a) > tonumber(b) end)
local kept = 0
local cutoff = nil
for _, id in ipairs(ids) do
  if redis.call('HEXISTS', KEYS[4], id) == 0 then
    kept = kept + 1
    if kept == tonumber(ARGV[4]) then cutoff = tonumber(id) break end
  end
end
if cutoff then
  for _, id in ipairs(ids) do
    if tonumber(id) < cutoff then
      redis.call('HDEL', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('HDEL', KEYS[4], id)
    end
  end
end
return entry
"#;

/// KEYS: entries, live, rolled_back. ARGV: expected live seq, rollback
/// JSON. Answers {"ok", entry now live} | {"conflict", live seq} |
/// {"none", entries kept} | {"empty"}.
const ROLLBACK: &str = r#"
local live = redis.call('GET', KEYS[2])
if not live then return {'empty'} end
local seq = tonumber(cjson.decode(live)['seq'])
if seq ~= tonumber(ARGV[1]) then return {'conflict', tostring(seq)} end
local ids = redis.call('HKEYS', KEYS[1])
table.sort(ids, function(a, b) return tonumber(a) > tonumber(b) end)
for _, id in ipairs(ids) do
  if tonumber(id) < seq and redis.call('HEXISTS', KEYS[3], id) == 0 then
    local e = redis.call('HGET', KEYS[1], id)
    redis.call('HSET', KEYS[3], seq, ARGV[2])
    redis.call('SET', KEYS[2], e)
    return {'ok', e}
  end
end
return {'none', tostring(#ids - 1)}
"#;

pub struct RedisModelRegistry {
    conn: RedisConn,
    publish: Script,
    rollback: Script,
}

impl RedisModelRegistry {
    pub fn new(conn: RedisConn) -> Self {
        RedisModelRegistry {
            conn,
            publish: Script::new(PUBLISH),
            rollback: Script::new(ROLLBACK),
        }
    }

    fn key(&self, part: &str) -> String {
        if part.is_empty() {
            self.conn.key(&["models"])
        } else {
            self.conn.key(&["models", part])
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Unavailable(format!("redis: {e}"))
}

fn parse(json: &str) -> Result<ModelEntry, RegistryError> {
    serde_json::from_str(json).map_err(unavailable)
}

#[async_trait]
impl ModelRegistry for RedisModelRegistry {
    async fn live(&self) -> Result<Option<ModelEntry>, RegistryError> {
        let mut con = self.conn.con();
        let live: Option<String> = redis::cmd("GET")
            .arg(self.key("live"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        live.as_deref().map(parse).transpose()
    }

    async fn history(&self) -> Result<Vec<ModelEntry>, RegistryError> {
        let mut con = self.conn.con();
        let (entries, rolled): (HashMap<u64, String>, HashMap<u64, String>) = redis::pipe()
            .atomic()
            .cmd("HGETALL")
            .arg(self.key(""))
            .cmd("HGETALL")
            .arg(self.key("rolled_back"))
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::with_capacity(entries.len());
        for (seq, json) in entries {
            let mut e = parse(&json)?;
            if let Some(r) = rolled.get(&seq) {
                e.rolled_back = Some(serde_json::from_str::<RolledBack>(r).map_err(unavailable)?);
            }
            out.push(e);
        }
        out.sort_unstable_by_key(|e| std::cmp::Reverse(e.seq));
        Ok(out)
    }

    async fn body(&self, seq: u64) -> Result<Option<String>, RegistryError> {
        let mut con = self.conn.con();
        redis::cmd("HGET")
            .arg(self.key("bodies"))
            .arg(seq)
            .query_async(&mut con)
            .await
            .map_err(unavailable)
    }

    async fn publish(&self, p: Publish, in_service: usize) -> Result<ModelEntry, RegistryError> {
        let sha256 = p.sha256();
        let entry = ModelEntry {
            seq: 0,
            version: p.version,
            sha256: sha256.clone(),
            published_at_ms: p.at_ms,
            published_by: p.by,
            reason: p.reason,
            rolled_back: None,
        };
        let json = serde_json::to_string(&entry).map_err(unavailable)?;
        debug_assert!(json.starts_with("{\"seq\":0"));
        let mut con = self.conn.con();
        let live: String = self
            .publish
            .key(self.key(""))
            .key(self.key("bodies"))
            .key(self.key("live"))
            .key(self.key("rolled_back"))
            .key(self.key("seq"))
            .arg(json)
            .arg(p.body)
            .arg(sha256)
            .arg(in_service.max(1))
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        parse(&live)
    }

    async fn rollback(&self, r: Rollback) -> Result<ModelEntry, RegistryError> {
        let why = serde_json::to_string(&RolledBack {
            at_ms: r.at_ms,
            by: r.by,
            reason: r.reason,
        })
        .map_err(unavailable)?;
        let mut con = self.conn.con();
        let answer: Vec<String> = self
            .rollback
            .key(self.key(""))
            .key(self.key("live"))
            .key(self.key("rolled_back"))
            .arg(r.expected)
            .arg(why)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let number = |i: usize| {
            answer
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match answer.first().map(String::as_str) {
            Some("ok") => parse(answer.get(1).map_or("", String::as_str)),
            Some("conflict") => Err(RegistryError::Conflict(number(1))),
            Some("none") => Err(RegistryError::NoEarlier(number(1) as usize)),
            Some("empty") => Err(RegistryError::Empty),
            other => Err(unavailable(format!("unexpected answer {other:?}"))),
        }
    }
}
