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
//! | `offer:<code>` | hash | one offer row (campaign, session, day, amount, issued, expires, state, settled, order) |
//! | `by_session` | hash | `<campaign> 0x1f <session>` -> code (one offer per session and campaign) |
//! | `day:<campaign>:<YYYY-MM-DD>` | hash | reserved, captured, offers of the budget day |
//! | `total:<campaign>` | hash | the same over the campaign's lifetime |
//! | `reserved` / `captured` | sorted sets | codes by expiry / by capture time (sweeper, ROI report) |
//! | `outcomes` / `outcome_at` | hash / sorted set | session -> `converted:order:at`, and by time |
//! | `sess:<session>` | string | a session's state as JSON, with its last-touch time |
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

use crate::ledger::{
    upsert_outcome_key, BudgetSnapshot, Budgets, Captured, Ledger, LedgerError, Offer, Outcome,
    RedeemOutcome, RedeemRequest, ReserveOutcome, ReserveRequest,
};
use crate::session::SessionState;
use crate::store::{SessionStore, SessionUpdate, StoreError};
use crate::voucher::{self, VoucherKey};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
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

    /// Warns when Redis says its writes are not fsynced on every command
    /// (ignored when `CONFIG` is not allowed, as on many managed services).
    pub async fn check_durability(&self) {
        let mut con = self.con();
        let got: Result<Vec<String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("*")
            .query_async(&mut con)
            .await;
        match got {
            Ok(kv) => {
                let get = |name: &str| {
                    kv.chunks(2)
                        .find(|c| c.first().map(String::as_str) == Some(name))
                        .and_then(|c| c.get(1).cloned())
                        .unwrap_or_default()
                };
                let (aof, fsync) = (get("appendonly"), get("appendfsync"));
                let policy = get("maxmemory-policy");
                if !(policy == "noeviction" || policy.starts_with("volatile-")) {
                    // Ledger keys have no TTL: only an allkeys-* policy can
                    // evict them, and an evicted day counter resets a budget.
                    tracing::warn!(
                        maxmemory_policy = %policy,
                        "redis may evict ledger keys under memory pressure, which would reset budgets (set maxmemory-policy noeviction)"
                    );
                }
                if aof != "yes" || fsync != "always" {
                    tracing::warn!(
                        appendonly = %aof,
                        appendfsync = %fsync,
                        "redis does not fsync every write: an acknowledged offer can be lost in a crash (set appendonly yes, appendfsync always)"
                    );
                }
            }
            Err(e) => tracing::info!(error = %e, "redis durability settings not readable"),
        }
    }
}

fn unavailable(e: redis::RedisError) -> LedgerError {
    LedgerError::Unavailable(format!("redis: {e}"))
}

fn bad_reply(what: &str) -> LedgerError {
    LedgerError::Unavailable(format!("redis: unexpected reply to {what}"))
}

// --- ledger ------------------------------------------------------------------

/// The budget rule is `CampaignBudget::remaining_cents`, here in Lua so
/// that the check and the reservation are one atomic step.
/// KEYS: by_session, day, total, reserved, offer key per candidate.
/// ARGV: field, daily cap, total cap (-1: none), n, (amount, code) * n,
/// campaign, session, day, issued, expires, prefix. Answers the offer with
/// its amount and expiry (no second round trip).
const RESERVE: &str = r#"
local base0 = 10 + 2 * tonumber(ARGV[4])
local code = redis.call('HGET', KEYS[1], ARGV[1])
if code then
  local o = redis.call('HMGET', ARGV[base0] .. ':offer:' .. code, 'amount', 'expires')
  return {'already', code, o[1] or '', o[2] or ''}
end
local function num(k, f) return tonumber(redis.call('HGET', k, f) or '0') end
local rem = tonumber(ARGV[2]) - num(KEYS[2], 'reserved') - num(KEYS[2], 'captured')
local tcap = tonumber(ARGV[3])
if tcap >= 0 then
  local t = tcap - num(KEYS[3], 'reserved') - num(KEYS[3], 'captured')
  if t < rem then rem = t end
end
if rem < 0 then rem = 0 end
local n = tonumber(ARGV[4])
local base = 4 + 2 * n
for i = 1, n do
  local amount = ARGV[3 + 2 * i]
  local c = ARGV[4 + 2 * i]
  local a = tonumber(amount)
  if a > 0 and a <= rem then
    if c == '' then return {'unmintable', amount} end
    local okey = KEYS[4 + i]
    if redis.call('EXISTS', okey) == 1 then return {'collision', c} end
    redis.call('HSET', okey, 'campaign', ARGV[base + 1], 'session', ARGV[base + 2],
      'day', ARGV[base + 3], 'amount', amount, 'issued', ARGV[base + 4],
      'expires', ARGV[base + 5], 'state', 'reserved')
    redis.call('HSET', KEYS[1], ARGV[1], c)
    for _, k in ipairs({KEYS[2], KEYS[3]}) do
      redis.call('HINCRBY', k, 'reserved', amount)
      redis.call('HINCRBY', k, 'offers', 1)
    end
    redis.call('ZADD', KEYS[4], ARGV[base + 5], c)
    return {'reserved', c, amount, ARGV[base + 5]}
  end
end
return {'exhausted', string.format('%.0f', rem)}
"#;

/// Moves an offer out of `reserved` (shared by redeem and the sweeper).
const SETTLE_FN: &str = r#"
local function settle(prefix, code, r, state, now, order)
  -- r = {campaign, day, amount}
  local amount = r[3]
  redis.call('HSET', prefix .. ':offer:' .. code, 'state', state, 'settled', now)
  if order then redis.call('HSET', prefix .. ':offer:' .. code, 'order', order) end
  for _, k in ipairs({prefix .. ':day:' .. r[1] .. ':' .. r[2], prefix .. ':total:' .. r[1]}) do
    redis.call('HINCRBY', k, 'reserved', '-' .. amount)
    if state == 'captured' then redis.call('HINCRBY', k, 'captured', amount) end
  end
  redis.call('ZREM', prefix .. ':reserved', code)
  if state == 'captured' then redis.call('ZADD', prefix .. ':captured', now, code) end
end
"#;

/// ARGV: prefix, code, session, now, order, min order.
const REDEEM: &str = r#"
local prefix, code = ARGV[1], ARGV[2]
local r = redis.call('HMGET', prefix .. ':offer:' .. code,
  'campaign', 'day', 'amount', 'session', 'state', 'expires')
if not r[4] or r[4] ~= ARGV[3] then return {'invalid'} end
if r[5] == 'captured' then return {'already'} end
if r[5] == 'voided' then return {'expired'} end
if tonumber(r[6]) <= tonumber(ARGV[4]) then
  settle(prefix, code, r, 'voided', ARGV[4], nil)
  return {'expired'}
end
if tonumber(ARGV[5]) < tonumber(ARGV[6]) then return {'below'} end
settle(prefix, code, r, 'captured', ARGV[4], ARGV[5])
return {'accepted', r[3]}
"#;

/// ARGV: prefix, now, batch. Returns {voided, scanned}.
const VOID_EXPIRED: &str = r#"
local prefix = ARGV[1]
local codes = redis.call('ZRANGEBYSCORE', prefix .. ':reserved', '-inf', ARGV[2],
  'LIMIT', 0, tonumber(ARGV[3]))
local voided = 0
for _, code in ipairs(codes) do
  local r = redis.call('HMGET', prefix .. ':offer:' .. code, 'campaign', 'day', 'amount', 'state')
  if r[4] == 'reserved' then
    settle(prefix, code, r, 'voided', ARGV[2], nil)
    voided = voided + 1
  else
    redis.call('ZREM', prefix .. ':reserved', code)
  end
end
return {voided, #codes}
"#;

/// KEYS: outcomes, outcome_at. ARGV: session, `converted:order`, at.
const RECORD_OUTCOME: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2] .. ':' .. ARGV[3]
if old and string.sub(old, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], new)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"#;

/// KEYS: by_session. ARGV: field, prefix. Returns {code, amount, expires}
/// or an empty array.
const OFFER_FOR: &str = r#"
local code = redis.call('HGET', KEYS[1], ARGV[1])
if not code then return {} end
local o = redis.call('HMGET', ARGV[2] .. ':offer:' .. code, 'amount', 'expires')
return {code, o[1] or '', o[2] or ''}
"#;

fn parse_offer(code: &str, amount: &str, expires: &str) -> Result<Offer, LedgerError> {
    match (amount.parse(), expires.parse()) {
        (Ok(amount_cents), Ok(expires_at_ms)) => Ok(Offer {
            voucher_code: code.to_owned(),
            amount_cents,
            expires_at_ms,
        }),
        _ => Err(bad_reply("an offer lookup")),
    }
}

/// How many nonces to try on code collisions (as the in-process core).
const MINT_TRIES: usize = 16;
/// Offers voided per script run (keeps each run short for other clients).
const VOID_BATCH: usize = 500;
/// Rows per page of the report reads (`captured`, `outcomes`): plain
/// commands in pages, never one long script that would stall every replica.
const READ_PAGE: usize = 1_000;

/// The ledger in Redis: any number of replicas share one budget.
pub struct RedisLedger {
    conn: RedisConn,
    budgets: Budgets,
    key: VoucherKey,
    reserve: Script,
    offer_for: Script,
    redeem: Script,
    void: Script,
    record_outcome: Script,
}

impl RedisLedger {
    pub fn new(conn: RedisConn, budgets: Budgets, key: VoucherKey) -> Self {
        RedisLedger {
            conn,
            budgets,
            key,
            reserve: Script::new(RESERVE),
            offer_for: Script::new(OFFER_FOR),
            redeem: Script::new(&format!("{SETTLE_FN}{REDEEM}")),
            void: Script::new(&format!("{SETTLE_FN}{VOID_EXPIRED}")),
            record_outcome: Script::new(RECORD_OUTCOME),
        }
    }

    fn session_field(campaign: &str, session_id: &str) -> String {
        format!("{campaign}\x1f{session_id}")
    }

    /// One page (`READ_PAGE` members from `offset`) of a sorted set, scores
    /// `since..`.
    async fn page(
        &self,
        con: &mut ConnectionManager,
        zset: &str,
        since: i64,
        offset: usize,
    ) -> Result<Vec<String>, LedgerError> {
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.conn.key(&[zset]))
            .arg(since)
            .arg("+inf")
            .arg("LIMIT")
            .arg(offset)
            .arg(READ_PAGE)
            .query_async(con)
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Ledger for RedisLedger {
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError> {
        let b = self
            .budgets
            .campaigns
            .get(req.campaign)
            .ok_or_else(|| LedgerError::UnknownCampaign(req.campaign.to_owned()))?;
        let day = self.budgets.day_of(req.now_ms);
        for _ in 0..MINT_TRIES {
            let nonce = rand::random::<u32>();
            let mut codes = Vec::with_capacity(req.candidates.len());
            for &amount in req.candidates {
                // An amount the code cannot carry gets no code: the script
                // answers `unmintable` only if it is the one that fits, as
                // the in-process core would fail only then.
                let code = if amount > 0 {
                    voucher::mint(&self.key, req.session_id, amount, req.expires_at_ms, nonce)
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                codes.push(code);
            }
            let mut inv = self.reserve.prepare_invoke();
            inv.key(self.conn.key(&["by_session"]))
                .key(self.conn.key(&["day", req.campaign, &day]))
                .key(self.conn.key(&["total", req.campaign]))
                .key(self.conn.key(&["reserved"]));
            for c in &codes {
                inv.key(self.conn.key(&["offer", c]));
            }
            inv.arg(Self::session_field(req.campaign, req.session_id))
                .arg(b.daily_cap_cents)
                .arg(b.total_cap_cents.unwrap_or(-1))
                .arg(codes.len());
            for (amount, code) in req.candidates.iter().zip(&codes) {
                inv.arg(*amount).arg(code);
            }
            inv.arg(req.campaign)
                .arg(req.session_id)
                .arg(&day)
                .arg(req.now_ms)
                .arg(req.expires_at_ms)
                .arg(&self.conn.prefix);
            let mut con = self.conn.con();
            let reply: Vec<String> = inv.invoke_async(&mut con).await.map_err(unavailable)?;
            match reply.as_slice() {
                [tag, code, amount, expires] if tag == "reserved" => {
                    return Ok(ReserveOutcome::Reserved(parse_offer(
                        code, amount, expires,
                    )?));
                }
                [tag, code, amount, expires] if tag == "already" => {
                    return Ok(ReserveOutcome::AlreadyOffered(parse_offer(
                        code, amount, expires,
                    )?));
                }
                [tag, rem] if tag == "exhausted" => {
                    let remaining_cents = rem.parse().map_err(|_| bad_reply("reserve"))?;
                    return Ok(ReserveOutcome::Exhausted { remaining_cents });
                }
                [tag, _] if tag == "collision" => continue,
                [tag, amount] if tag == "unmintable" => {
                    return Err(LedgerError::Unavailable(format!(
                        "cannot mint a code for {amount} cents"
                    )))
                }
                _ => return Err(bad_reply("reserve")),
            }
        }
        Err(LedgerError::Unavailable(
            "voucher code space exhausted".into(),
        ))
    }

    async fn offer_for(
        &self,
        campaign: &str,
        session_id: &str,
    ) -> Result<Option<Offer>, LedgerError> {
        let mut con = self.conn.con();
        let reply: Vec<String> = self
            .offer_for
            .key(self.conn.key(&["by_session"]))
            .arg(Self::session_field(campaign, session_id))
            .arg(&self.conn.prefix)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        match reply.as_slice() {
            [] => Ok(None),
            [code, amount, expires] => Ok(Some(parse_offer(code, amount, expires)?)),
            _ => Err(bad_reply("an offer lookup")),
        }
    }

    async fn redeem(&self, req: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError> {
        let mut con = self.conn.con();
        let reply: Vec<String> = self
            .redeem
            .prepare_invoke()
            .arg(&self.conn.prefix)
            .arg(req.code)
            .arg(req.session_id)
            .arg(req.now_ms)
            .arg(req.order_value_cents)
            .arg(req.min_order_cents)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(match reply.first().map(String::as_str) {
            Some("invalid") => RedeemOutcome::Invalid,
            Some("already") => RedeemOutcome::AlreadyRedeemed,
            Some("expired") => RedeemOutcome::Expired,
            Some("below") => RedeemOutcome::OrderBelowMinimum {
                min_order_cents: req.min_order_cents,
            },
            Some("accepted") => RedeemOutcome::Accepted {
                discount_cents: reply
                    .get(1)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| bad_reply("redeem"))?,
            },
            _ => return Err(bad_reply("redeem")),
        })
    }

    async fn void_expired(&self, now_ms: i64) -> Result<u64, LedgerError> {
        let mut total = 0u64;
        loop {
            let mut con = self.conn.con();
            let (voided, scanned): (u64, usize) = self
                .void
                .prepare_invoke()
                .arg(&self.conn.prefix)
                .arg(now_ms)
                .arg(VOID_BATCH)
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            total += voided;
            if scanned < VOID_BATCH {
                return Ok(total);
            }
        }
    }

    async fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError> {
        let b = self
            .budgets
            .campaigns
            .get(campaign)
            .ok_or_else(|| LedgerError::UnknownCampaign(campaign.to_owned()))?;
        let day = self.budgets.day_of(now_ms);
        let fields = &["reserved", "captured", "offers"][..];
        let mut con = self.conn.con();
        let ((dr, dc, doffers), (tr, tc, _)): (
            (Option<i64>, Option<i64>, Option<u64>),
            (Option<i64>, Option<i64>, Option<u64>),
        ) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(self.conn.key(&["day", campaign, &day]))
            .arg(fields)
            .cmd("HMGET")
            .arg(self.conn.key(&["total", campaign]))
            .arg(fields)
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let (dr, dc, tr, tc) = (
            dr.unwrap_or(0),
            dc.unwrap_or(0),
            tr.unwrap_or(0),
            tc.unwrap_or(0),
        );
        Ok(BudgetSnapshot {
            campaign: campaign.to_owned(),
            day,
            cap_cents: b.daily_cap_cents,
            reserved_cents: dr,
            captured_cents: dc,
            remaining_cents: b.remaining_cents(dr + dc, tr + tc),
            offers: doffers.unwrap_or(0),
            total_cap_cents: b.total_cap_cents,
            total_reserved_cents: tr,
            total_captured_cents: tc,
        })
    }

    async fn record_outcome(&self, outcome: Outcome) -> Result<bool, LedgerError> {
        let mut con = self.conn.con();
        let changed: i64 = self
            .record_outcome
            .prepare_invoke()
            .key(self.conn.key(&["outcomes"]))
            .key(self.conn.key(&["outcome_at"]))
            .arg(&outcome.session_id)
            .arg(upsert_outcome_key(&outcome))
            .arg(outcome.at_ms)
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    async fn captured(&self, since_ms: i64) -> Result<Vec<Captured>, LedgerError> {
        let mut v = Vec::new();
        let mut con = self.conn.con();
        let mut offset = 0usize;
        loop {
            let codes = self.page(&mut con, "captured", since_ms, offset).await?;
            let mut pipe = redis::pipe();
            for code in &codes {
                pipe.cmd("HMGET")
                    .arg(self.conn.key(&["offer", code]))
                    .arg(&["campaign", "session", "amount", "settled"][..]);
            }
            type Row = (Option<String>, Option<String>, Option<i64>, Option<i64>);
            let rows: Vec<Row> = if codes.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut con).await.map_err(unavailable)?
            };
            for row in rows {
                let (Some(campaign), Some(session_id), Some(amount_cents), Some(captured_ms)) = row
                else {
                    return Err(bad_reply("captured"));
                };
                v.push(Captured {
                    campaign,
                    session_id,
                    amount_cents,
                    captured_ms,
                });
            }
            if codes.len() < READ_PAGE {
                break;
            }
            offset += READ_PAGE;
        }
        v.sort_by(|a, b| {
            (a.captured_ms, &a.session_id, &a.campaign).cmp(&(
                b.captured_ms,
                &b.session_id,
                &b.campaign,
            ))
        });
        Ok(v)
    }

    async fn outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError> {
        let mut by_session = std::collections::HashMap::new();
        let mut con = self.conn.con();
        let mut offset = 0usize;
        loop {
            let sessions = self.page(&mut con, "outcome_at", since_ms, offset).await?;
            let values: Vec<Option<String>> = if sessions.is_empty() {
                Vec::new()
            } else {
                redis::cmd("HMGET")
                    .arg(self.conn.key(&["outcomes"]))
                    .arg(&sessions)
                    .query_async(&mut con)
                    .await
                    .map_err(unavailable)?
            };
            for (session_id, value) in sessions.iter().zip(values) {
                let o = value
                    .as_deref()
                    .and_then(|v| parse_outcome(session_id, v))
                    .ok_or_else(|| bad_reply("outcomes"))?;
                // A correction moving a session while we page is read once.
                if o.at_ms >= since_ms {
                    by_session.insert(session_id.clone(), o);
                }
            }
            if sessions.len() < READ_PAGE {
                break;
            }
            offset += READ_PAGE;
        }
        let mut v: Vec<Outcome> = by_session.into_values().collect();
        v.sort_by(|a, b| (a.at_ms, &a.session_id).cmp(&(b.at_ms, &b.session_id)));
        Ok(v)
    }
}

/// `converted:order:at` (see [`RECORD_OUTCOME`]).
fn parse_outcome(session_id: &str, value: &str) -> Option<Outcome> {
    let mut it = value.split(':');
    let converted = it.next()? == "1";
    let order_value_cents = it.next()?.parse().ok()?;
    let at_ms = it.next()?.parse().ok()?;
    Some(Outcome {
        session_id: session_id.to_owned(),
        converted,
        order_value_cents,
        at_ms,
    })
}

// --- session store -----------------------------------------------------------

/// KEYS: session. ARGV: expected old value ('' = absent), new value, px.
const CAS: &str = r#"
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// How often a session update is redone after losing a race.
const CAS_TRIES: usize = 200;
/// Redis keeps an idle session this much longer than the TTL (memory
/// reclamation only; expiry semantics use the injected clock, as in memory).
const RECLAIM_SLACK: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct StoredSession {
    state: SessionState,
    touched_ms: i64,
}

/// Session state in Redis, shared by every replica.
pub struct RedisSessionStore {
    conn: RedisConn,
    idle_ttl_ms: i64,
    cas: Script,
}

impl RedisSessionStore {
    pub fn new(conn: RedisConn, idle_ttl: Duration) -> Self {
        RedisSessionStore {
            conn,
            idle_ttl_ms: i64::try_from(idle_ttl.as_millis()).unwrap_or(i64::MAX),
            cas: Script::new(CAS),
        }
    }

    /// The live state in a stored value. A value that does not parse (a
    /// format from another release, a hand edit) is logged and treated as
    /// no session: the session starts afresh instead of failing every
    /// request until the key expires.
    fn live(&self, session_id: &str, raw: &str, now_ms: i64) -> Option<SessionState> {
        match serde_json::from_str::<StoredSession>(raw) {
            Ok(s) => (now_ms.saturating_sub(s.touched_ms) <= self.idle_ttl_ms).then_some(s.state),
            Err(e) => {
                tracing::warn!(session = %session_id, error = %e, "unreadable session state in redis, starting afresh");
                None
            }
        }
    }
}

fn store_unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn apply(
        &self,
        session_id: &str,
        update: SessionUpdate<'_>,
    ) -> Result<SessionState, StoreError> {
        let key = self.conn.key(&["sess", session_id]);
        let px = u64::try_from(self.idle_ttl_ms)
            .unwrap_or(u64::MAX / 2)
            .saturating_add(RECLAIM_SLACK.as_millis() as u64);
        let mut con = self.conn.con();
        for _ in 0..CAS_TRIES {
            let old: Option<String> = con.get(&key).await.map_err(store_unavailable)?;
            let base = match &old {
                Some(raw) => self
                    .live(session_id, raw, update.now_ms)
                    .unwrap_or_default(),
                None => SessionState::default(),
            };
            let state = update.fold(base);
            let new = serde_json::to_string(&StoredSession {
                state: state.clone(),
                touched_ms: update.now_ms,
            })
            .map_err(|e| StoreError::Unavailable(format!("session encode: {e}")))?;
            let ok: i64 = self
                .cas
                .key(&key)
                .arg(old.as_deref().unwrap_or(""))
                .arg(&new)
                .arg(px)
                .invoke_async(&mut con)
                .await
                .map_err(store_unavailable)?;
            if ok == 1 {
                return Ok(state);
            }
        }
        Err(StoreError::Unavailable(format!(
            "redis: session {session_id:?} changed under {CAS_TRIES} updates in a row"
        )))
    }

    async fn get_many(
        &self,
        session_ids: &[&str],
        now_ms: i64,
    ) -> Result<Vec<Option<SessionState>>, StoreError> {
        if session_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = session_ids
            .iter()
            .map(|id| self.conn.key(&["sess", id]))
            .collect();
        let mut con = self.conn.con();
        let raws: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut con)
            .await
            .map_err(store_unavailable)?;
        Ok(raws
            .iter()
            .zip(session_ids)
            .map(|(r, id)| r.as_deref().and_then(|raw| self.live(id, raw, now_ms)))
            .collect())
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
