//! The ledger in Redis: every change is one Lua script, so the cap check
//! and the reservation are one atomic step across replicas.
//!
//! **Caps changed at run time** live in Redis too, in the hash
//! `caps:<campaign>` (`daily`, `total` with -1 for none, `learning`,
//! `revision`), written only by a revision not lower than the stored one.
//! The reservation script reads them in the same step as the counters, so
//! a replica whose own view is stale can never reserve above a cap another
//! replica lowered; the caps a replica was started with are only the
//! fallback for a campaign that never had its caps changed.

use super::RedisConn;
use crate::domain::voucher::{self, VoucherKey};
use crate::ledger::{check_campaign_id, day_range, CampaignBudget, DaySpend};
use crate::ledger::{
    upsert_outcome_key, BudgetSnapshot, Budgets, Captured, Ledger, LedgerError, Offer, Outcome,
    OutcomeRecorded, RedeemOutcome, RedeemRequest, ReserveOutcome, ReserveRequest,
    REDEEM_REPLAY_MS,
};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;
use std::collections::HashMap;
use std::sync::RwLock;

fn unavailable(e: redis::RedisError) -> LedgerError {
    LedgerError::Unavailable(format!("redis: {e}"))
}

fn bad_reply(what: &str) -> LedgerError {
    LedgerError::Unavailable(format!("redis: unexpected reply to {what}"))
}

// --- ledger ------------------------------------------------------------------

/// The budget rules are `CampaignBudget::remaining_cents` and
/// `CampaignBudget::remaining_learning_cents`, here in Lua so that the
/// check and the reservation are one atomic step.
/// KEYS: by_session, day, total, reserved, caps, offer key per candidate.
/// ARGV: field, daily cap ('' when the replica does not know the campaign),
/// total cap (-1: none), n, (amount, code) * n, campaign, session, day,
/// issued, expires, prefix, learning (1/0), learning cap. The caps in the
/// `caps` hash, when it exists, take the place of the three caps given
/// (they are the latest, whoever set them); a campaign with neither is
/// answered `unknown`. Answers the offer with its amount and expiry (no
/// second round trip). The session's offer, when reserved but past its expiry, is
/// voided first and, voided, frees the session (as `LedgerCore::reserve`). A learning reservation must fit both remainders and is
/// counted in the day's `learning_reserved` as well as in `reserved`.
const RESERVE: &str = r#"
local n = tonumber(ARGV[4])
local base = 4 + 2 * n
local prefix = ARGV[base + 6]
local learning = ARGV[base + 7] == '1'
local dcap, tcap, lcap = ARGV[2], ARGV[3], ARGV[base + 8]
local caps = redis.call('HMGET', KEYS[5], 'daily', 'total', 'learning')
if caps[1] then dcap, tcap, lcap = caps[1], caps[2], caps[3] end
if dcap == '' then return {'unknown'} end
dcap, tcap, lcap = tonumber(dcap), tonumber(tcap), tonumber(lcap)
local code = redis.call('HGET', KEYS[1], ARGV[1])
if code then
  local o = redis.call('HMGET', prefix .. ':offer:' .. code,
    'amount', 'expires', 'state', 'campaign', 'day')
  if o[3] == 'reserved' and tonumber(o[2]) <= tonumber(ARGV[base + 4]) then
    settle(prefix, code, {o[4], o[5], o[1]}, 'voided', ARGV[base + 4], nil)
    o[3] = 'voided'
  end
  if o[3] ~= 'voided' then return {'already', code, o[1] or '', o[2] or ''} end
end
local function num(k, f) return tonumber(redis.call('HGET', k, f) or '0') end
local rem = dcap - num(KEYS[2], 'reserved') - num(KEYS[2], 'captured')
if tcap >= 0 then
  local t = tcap - num(KEYS[3], 'reserved') - num(KEYS[3], 'captured')
  if t < rem then rem = t end
end
if rem < 0 then rem = 0 end
local lrem = lcap - num(KEYS[2], 'learning_reserved')
  - num(KEYS[2], 'learning_captured')
if rem < lrem then lrem = rem end
if lrem < 0 then lrem = 0 end
local fits = rem
if learning then fits = lrem end
for i = 1, n do
  local amount = ARGV[3 + 2 * i]
  local c = ARGV[4 + 2 * i]
  local a = tonumber(amount)
  if a > 0 and a <= fits then
    if c == '' then return {'unmintable', amount} end
    local okey = KEYS[5 + i]
    if redis.call('EXISTS', okey) == 1 then return {'collision', c} end
    redis.call('HSET', okey, 'campaign', ARGV[base + 1], 'session', ARGV[base + 2],
      'day', ARGV[base + 3], 'amount', amount, 'issued', ARGV[base + 4],
      'expires', ARGV[base + 5], 'state', 'reserved', 'learning', ARGV[base + 7])
    redis.call('HSET', KEYS[1], ARGV[1], c)
    for _, k in ipairs({KEYS[2], KEYS[3]}) do
      redis.call('HINCRBY', k, 'reserved', amount)
      redis.call('HINCRBY', k, 'offers', 1)
    end
    if learning then redis.call('HINCRBY', KEYS[2], 'learning_reserved', amount) end
    redis.call('ZADD', KEYS[4], ARGV[base + 5], c)
    return {'reserved', c, amount, ARGV[base + 5]}
  end
end
if learning then
  return {'learning_exhausted', string.format('%.0f', rem), string.format('%.0f', lrem)}
end
return {'exhausted', string.format('%.0f', rem)}
"#;

/// Moves an offer out of `reserved` (shared by redeem and the sweeper): the
/// amount leaves the day's and the lifetime's `reserved` (and, for a
/// learning offer, the day's `learning_reserved`) and, when captured, joins
/// the matching `captured` counters. An offer written before learning
/// offers existed has no `learning` field and is main money.
const SETTLE_FN: &str = r#"
local function settle(prefix, code, r, state, now, order)
  -- r = {campaign, day, amount}
  local amount = r[3]
  local okey = prefix .. ':offer:' .. code
  local learning = redis.call('HGET', okey, 'learning') == '1'
  redis.call('HSET', okey, 'state', state, 'settled', now)
  if order then redis.call('HSET', okey, 'order', order) end
  local dkey = prefix .. ':day:' .. r[1] .. ':' .. r[2]
  for _, k in ipairs({dkey, prefix .. ':total:' .. r[1]}) do
    redis.call('HINCRBY', k, 'reserved', '-' .. amount)
    if state == 'captured' then redis.call('HINCRBY', k, 'captured', amount) end
  end
  if learning then
    redis.call('HINCRBY', dkey, 'learning_reserved', '-' .. amount)
    if state == 'captured' then redis.call('HINCRBY', dkey, 'learning_captured', amount) end
  end
  redis.call('ZREM', prefix .. ':reserved', code)
  if state == 'captured' then redis.call('ZADD', prefix .. ':captured', now, code) end
end
"#;

/// ARGV: prefix, code, session, now, order, min order, replay window.
/// A captured code presented again with the same order value within the
/// window of its capture answers `replayed` (accepted again), capturing nothing
/// (`ledger::REDEEM_REPLAY_MS`, as `LedgerCore::redeem`).
const REDEEM: &str = r#"
local prefix, code = ARGV[1], ARGV[2]
local r = redis.call('HMGET', prefix .. ':offer:' .. code,
  'campaign', 'day', 'amount', 'session', 'state', 'expires', 'order', 'settled')
if not r[4] or r[4] ~= ARGV[3] then return {'invalid'} end
if r[5] == 'captured' then
  if r[7] == ARGV[5] and tonumber(ARGV[4]) < tonumber(r[8]) + tonumber(ARGV[7]) then
    return {'replayed', r[3]}
  end
  return {'already'}
end
if r[5] == 'voided' then return {'expired'} end
if tonumber(r[6]) <= tonumber(ARGV[4]) then
  settle(prefix, code, r, 'voided', ARGV[4], nil)
  return {'expired'}
end
if tonumber(ARGV[5]) < tonumber(ARGV[6]) then return {'below'} end
settle(prefix, code, r, 'captured', ARGV[4], ARGV[5])
return {'accepted', r[3]}
"#;

/// KEYS: caps. ARGV: daily, total (-1: none), learning, revision. Writes
/// the caps unless the stored revision is higher; 1 when written. Revisions
/// are compared as decimal strings: exact over all of u64, which Lua's
/// numbers are not.
const SET_BUDGET: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'revision')
local new = ARGV[4]
if cur and (#cur > #new or (#cur == #new and cur > new)) then return 0 end
redis.call('HSET', KEYS[1], 'daily', ARGV[1], 'total', ARGV[2], 'learning', ARGV[3],
  'revision', new)
return 1
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
/// Returns {1, ''} when recorded, {0, old} when unchanged, {2, old} when
/// refused: the rule of `ledger::outcome_change` (a converted outcome is
/// final; "not converted" may become "converted").
const RECORD_OUTCOME: &str = r#"
local old = redis.call('HGET', KEYS[1], ARGV[1])
local new = ARGV[2] .. ':' .. ARGV[3]
if old then
  if string.sub(old, 1, #ARGV[2] + 1) == ARGV[2] .. ':' then return {0, old} end
  if string.sub(old, 1, 2) == '1:' then return {2, old} end
end
redis.call('HSET', KEYS[1], ARGV[1], new)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return {1, ''}
"#;

/// KEYS: by_session. ARGV: field, prefix. Returns {code, amount, expires}
/// or, when there is none or it was voided, an empty array.
const OFFER_FOR: &str = r#"
local code = redis.call('HGET', KEYS[1], ARGV[1])
if not code then return {} end
local o = redis.call('HMGET', ARGV[2] .. ':offer:' .. code, 'amount', 'expires', 'state')
if o[3] == 'voided' then return {} end
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
    /// The caps this replica knows (configured, or set through it) with
    /// their revisions, and the time zone: the fallback of a campaign with
    /// no `caps` hash. Never locked across an `.await`.
    local: RwLock<(Budgets, HashMap<String, u64>)>,
    key: VoucherKey,
    reserve: Script,
    offer_for: Script,
    redeem: Script,
    void: Script,
    record_outcome: Script,
    set_budget: Script,
}

/// The fields of a `caps` hash, in this order.
const CAPS_FIELDS: [&str; 3] = ["daily", "total", "learning"];

/// Caps read from a `caps` hash: `None` when it does not exist.
fn parse_caps(
    fields: (Option<i64>, Option<i64>, Option<i64>),
) -> Result<Option<CampaignBudget>, LedgerError> {
    match fields {
        (None, None, None) => Ok(None),
        (Some(daily), Some(total), Some(learning)) => Ok(Some(CampaignBudget {
            daily_cap_cents: daily,
            total_cap_cents: (total >= 0).then_some(total),
            learning_cap_cents: learning,
        })),
        _ => Err(bad_reply("a caps lookup")),
    }
}

impl RedisLedger {
    pub fn new(conn: RedisConn, budgets: Budgets, key: VoucherKey) -> Self {
        RedisLedger {
            conn,
            local: RwLock::new((budgets, HashMap::new())),
            key,
            reserve: Script::new(&format!("{SETTLE_FN}{RESERVE}")),
            offer_for: Script::new(OFFER_FOR),
            redeem: Script::new(&format!("{SETTLE_FN}{REDEEM}")),
            void: Script::new(&format!("{SETTLE_FN}{VOID_EXPIRED}")),
            record_outcome: Script::new(RECORD_OUTCOME),
            set_budget: Script::new(SET_BUDGET),
        }
    }

    /// The local day of `now_ms` and the caps this replica knows for the
    /// campaign, if any.
    fn local(
        &self,
        campaign: &str,
        now_ms: i64,
    ) -> Result<(String, Option<CampaignBudget>), LedgerError> {
        let local = self
            .local
            .read()
            .map_err(|_| LedgerError::Unavailable("ledger caps lock poisoned".into()))?;
        let b = &local.0;
        Ok((b.day_of(now_ms), b.campaigns.get(campaign).cloned()))
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
        let (day, local) = self.local(req.campaign, req.now_ms)?;
        // Unknown here may still be known in Redis (caps set through
        // another replica): the script decides.
        let (daily, total, learning) = match &local {
            Some(b) => (
                b.daily_cap_cents.to_string(),
                b.total_cap_cents.unwrap_or(-1),
                b.learning_cap_cents,
            ),
            None => (String::new(), -1, 0),
        };
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
                .key(self.conn.key(&["reserved"]))
                .key(self.conn.key(&["caps", req.campaign]));
            for c in &codes {
                inv.key(self.conn.key(&["offer", c]));
            }
            inv.arg(Self::session_field(req.campaign, req.session_id))
                .arg(&daily)
                .arg(total)
                .arg(codes.len());
            for (amount, code) in req.candidates.iter().zip(&codes) {
                inv.arg(*amount).arg(code);
            }
            inv.arg(req.campaign)
                .arg(req.session_id)
                .arg(&day)
                .arg(req.now_ms)
                .arg(req.expires_at_ms)
                .arg(&self.conn.prefix)
                .arg(if req.learning { "1" } else { "0" })
                .arg(learning);
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
                [tag, rem, lrem] if tag == "learning_exhausted" => {
                    let (Ok(remaining_cents), Ok(learning_remaining_cents)) =
                        (rem.parse(), lrem.parse())
                    else {
                        return Err(bad_reply("reserve"));
                    };
                    return Ok(ReserveOutcome::LearningExhausted {
                        remaining_cents,
                        learning_remaining_cents,
                    });
                }
                [tag] if tag == "unknown" => {
                    return Err(LedgerError::UnknownCampaign(req.campaign.to_owned()))
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
            .arg(REDEEM_REPLAY_MS)
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
            Some(status @ ("accepted" | "replayed")) => RedeemOutcome::Accepted {
                discount_cents: reply
                    .get(1)
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| bad_reply("redeem"))?,
                replayed: status == "replayed",
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
        let (day, local) = self.local(campaign, now_ms)?;
        let day_fields = &[
            "reserved",
            "captured",
            "offers",
            "learning_reserved",
            "learning_captured",
        ][..];
        let mut con = self.conn.con();
        type DayRow = (
            Option<i64>,
            Option<i64>,
            Option<u64>,
            Option<i64>,
            Option<i64>,
        );
        type CapsRow = (Option<i64>, Option<i64>, Option<i64>);
        // The caps are read with the counters (one atomic round trip), so
        // the remainder is the one a reservation would see.
        let ((dr, dc, doffers, dlr, dlc), (tr, tc), caps): (
            DayRow,
            (Option<i64>, Option<i64>),
            CapsRow,
        ) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(self.conn.key(&["day", campaign, &day]))
            .arg(day_fields)
            .cmd("HMGET")
            .arg(self.conn.key(&["total", campaign]))
            .arg(&["reserved", "captured"][..])
            .cmd("HMGET")
            .arg(self.conn.key(&["caps", campaign]))
            .arg(&CAPS_FIELDS[..])
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        let b = parse_caps(caps)?
            .or(local)
            .ok_or_else(|| LedgerError::UnknownCampaign(campaign.to_owned()))?;
        let (dr, dc, tr, tc) = (
            dr.unwrap_or(0),
            dc.unwrap_or(0),
            tr.unwrap_or(0),
            tc.unwrap_or(0),
        );
        let (dlr, dlc) = (dlr.unwrap_or(0), dlc.unwrap_or(0));
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
            learning_cap_cents: b.learning_cap_cents,
            learning_reserved_cents: dlr,
            learning_captured_cents: dlc,
            learning_remaining_cents: b.remaining_learning_cents(dr + dc, tr + tc, dlr + dlc),
        })
    }

    async fn record_outcome(&self, outcome: Outcome) -> Result<OutcomeRecorded, LedgerError> {
        let mut con = self.conn.con();
        let (changed, old): (i64, String) = self
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
        match changed {
            1 => Ok(OutcomeRecorded::New),
            0 => Ok(OutcomeRecorded::Unchanged),
            _ => parse_outcome(&outcome.session_id, &old)
                .map(|current| OutcomeRecorded::Refused { current })
                .ok_or_else(|| bad_reply("an outcome")),
        }
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
                    .arg(&["campaign", "session", "amount", "settled", "learning"][..]);
            }
            type Row = (
                Option<String>,
                Option<String>,
                Option<i64>,
                Option<i64>,
                Option<String>,
            );
            let rows: Vec<Row> = if codes.is_empty() {
                Vec::new()
            } else {
                pipe.query_async(&mut con).await.map_err(unavailable)?
            };
            for row in rows {
                let (
                    Some(campaign),
                    Some(session_id),
                    Some(amount_cents),
                    Some(captured_ms),
                    learning,
                ) = row
                else {
                    return Err(bad_reply("captured"));
                };
                v.push(Captured {
                    campaign,
                    session_id,
                    amount_cents,
                    captured_ms,
                    learning: learning.as_deref() == Some("1"),
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

    /// The caps go to Redis first (every replica's reservations read them
    /// there), then to this replica's own view.
    async fn set_budget(
        &self,
        campaign: &str,
        budget: CampaignBudget,
        revision: u64,
    ) -> Result<bool, LedgerError> {
        check_campaign_id(campaign)?;
        budget.check()?;
        let mut con = self.conn.con();
        let applied: i64 = self
            .set_budget
            .key(self.conn.key(&["caps", campaign]))
            .arg(budget.daily_cap_cents)
            .arg(budget.total_cap_cents.unwrap_or(-1))
            .arg(budget.learning_cap_cents)
            .arg(revision.to_string())
            .invoke_async(&mut con)
            .await
            .map_err(unavailable)?;
        let applied = applied == 1;
        if applied {
            let mut local = self
                .local
                .write()
                .map_err(|_| LedgerError::Unavailable("ledger caps lock poisoned".into()))?;
            let (budgets, revisions) = &mut *local;
            // Two changes through this replica may return in either order.
            if revisions.get(campaign).is_none_or(|r| *r <= revision) {
                revisions.insert(campaign.to_owned(), revision);
                budgets.campaigns.insert(campaign.to_owned(), budget);
            }
        }
        tracing::info!(campaign, revision, applied, "ledger caps set");
        Ok(applied)
    }

    /// One round trip: whether Redis knows the campaign's caps, then the
    /// day hashes of the range.
    async fn spend_by_day(
        &self,
        campaign: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DaySpend>, LedgerError> {
        let days = day_range(from_day, to_day)?;
        let (_, local) = self.local(campaign, 0)?;
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(self.conn.key(&["caps", campaign]));
        for day in &days {
            pipe.cmd("HMGET")
                .arg(self.conn.key(&["day", campaign, day]))
                .arg(
                    &[
                        "reserved",
                        "captured",
                        "offers",
                        "learning_reserved",
                        "learning_captured",
                    ][..],
                );
        }
        let mut con = self.conn.con();
        let values: Vec<redis::Value> = pipe.query_async(&mut con).await.map_err(unavailable)?;
        let mut values = values.into_iter();
        let known: bool = values
            .next()
            .and_then(|v| redis::from_redis_value::<i64>(v).ok())
            .ok_or_else(|| bad_reply("a spend history"))?
            == 1;
        if !known && local.is_none() {
            return Err(LedgerError::UnknownCampaign(campaign.to_owned()));
        }
        type DayRow = (
            Option<i64>,
            Option<i64>,
            Option<u64>,
            Option<i64>,
            Option<i64>,
        );
        let mut v = Vec::new();
        for (day, value) in days.into_iter().zip(values) {
            let (r, c, offers, lr, lc): DayRow =
                redis::from_redis_value(value).map_err(|_| bad_reply("a spend history"))?;
            let offers = offers.unwrap_or(0);
            if offers > 0 {
                v.push(DaySpend {
                    day,
                    reserved_cents: r.unwrap_or(0),
                    captured_cents: c.unwrap_or(0),
                    offers,
                    learning_reserved_cents: lr.unwrap_or(0),
                    learning_captured_cents: lc.unwrap_or(0),
                });
            }
        }
        Ok(v)
    }

    async fn ping(&self) -> Result<(), LedgerError> {
        self.conn.ping().await.map_err(LedgerError::Unavailable)
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
