//! The embedded durable ledger: SQLite (bundled, WAL, `synchronous=FULL`)
//! under the data directory.
//!
//! One writer thread owns the connection and the [`LedgerCore`]. Requests
//! arrive on a channel; the thread takes every request waiting (up to
//! [`MAX_BATCH`]), applies them to the core, writes all their effects in
//! one transaction and only then answers — group commit: one fsync for a
//! burst of concurrent Decides, and no offer is ever returned before it is
//! durable.
//!
//! **Storage faults** (a full disk, an I/O error): a failed commit is retried
//! a few times with a short backoff; if it still fails, the batch is given
//! up — its effects are undone in the core ([`LedgerCore::undo`], so memory
//! equals the file again without reloading it), and every request of the
//! batch gets `Unavailable`. Until the next attempt is due (a backoff from
//! 100 ms doubling to 2 s), writes are refused at once without touching the
//! disk, while reads (an existing offer, the budget) are answered from
//! memory: Decide answers quickly with a score and no voucher
//! (`BUDGET_UNAVAILABLE`) instead of queueing behind a failing disk. The
//! first commit that succeeds again ends the outage; nothing needs a
//! restart. Failures are logged once per interval with a count.
//!
//! On open, the core is rebuilt from the `offers` table, so budgets and
//! outstanding offers are restored exactly after a restart or a crash. A
//! database written before the learning budget existed gets its `learning`
//! column on open (every old offer was paid from the main budget).
//!
//! **Caps** changed at run time ([`Ledger::set_budget`]) go to the writer
//! thread on the channel reservations use, so a reservation sent after the
//! change returns is checked against the new caps. They are not stored
//! here: the settings store keeps them and the service applies them again
//! after every open (until then the configured caps hold). The spend
//! history ([`Ledger::spend_by_day`]) is read from the core, which holds
//! every day's counters since it is rebuilt from all rows at open.
//!
//! Whether a session holds an offer (the first question of every Decide)
//! is answered without the writer for a session that never had one
//! ([`MaybeOffered`]).
//!
//! Expired offers are voided by a sweeper task (see [`spawn_sweeper`]) that
//! stops with the server.

use crate::domain::voucher::VoucherKey;
use crate::ledger::{
    check_campaign_id, upsert_outcome, BudgetSnapshot, Budgets, CampaignBudget, Captured, DaySpend,
    Effect, Ledger, LedgerCore, LedgerError, Offer, OfferRow, OfferState, Outcome, OutcomeRecorded,
    RedeemOutcome, RedeemRequest, ReserveOutcome, ReserveRequest,
};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

use crate::files::DiskFull;
use crate::ledger::offered::MaybeOffered;

/// Most requests committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Queue of requests waiting for the writer.
const QUEUE: usize = 4_096;
/// Pauses before retrying a failed commit within one batch (transient
/// faults); then the batch is given up.
const COMMIT_RETRIES: [Duration; 2] = [Duration::from_millis(10), Duration::from_millis(40)];
/// After a batch is given up, writes are refused without touching the disk
/// for this long, doubling with every failed attempt up to
/// [`BACKOFF_MAX`]: the longest a recovered disk waits to be used again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Repeating storage errors: one line per interval.
const LOG_EVERY: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS offers (
    code              TEXT PRIMARY KEY,
    campaign          TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    day               TEXT NOT NULL,
    amount_cents      INTEGER NOT NULL CHECK (amount_cents > 0),
    issued_ms         INTEGER NOT NULL,
    expires_ms        INTEGER NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('reserved', 'captured', 'voided')),
    settled_ms        INTEGER,
    order_value_cents INTEGER,
    learning          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS offers_open ON offers (state, expires_ms);
CREATE UNIQUE INDEX IF NOT EXISTS offers_live ON offers (campaign, session_id)
    WHERE state <> 'voided';
CREATE TABLE IF NOT EXISTS outcomes (
    session_id        TEXT PRIMARY KEY,
    converted         INTEGER NOT NULL,
    order_value_cents INTEGER NOT NULL,
    at_ms             INTEGER NOT NULL
);
";

enum Cmd {
    Reserve {
        campaign: String,
        session_id: String,
        candidates: Vec<i64>,
        now_ms: i64,
        expires_at_ms: i64,
        learning: bool,
        reply: oneshot::Sender<Result<ReserveOutcome, LedgerError>>,
    },
    OfferFor {
        campaign: String,
        session_id: String,
        reply: oneshot::Sender<Result<Option<Offer>, LedgerError>>,
    },
    Redeem {
        code: String,
        session_id: String,
        order_value_cents: i64,
        min_order_cents: i64,
        now_ms: i64,
        reply: oneshot::Sender<Result<RedeemOutcome, LedgerError>>,
    },
    VoidExpired {
        now_ms: i64,
        reply: oneshot::Sender<Result<u64, LedgerError>>,
    },
    Snapshot {
        campaign: String,
        now_ms: i64,
        reply: oneshot::Sender<Result<BudgetSnapshot, LedgerError>>,
    },
    Outcome {
        outcome: Outcome,
        reply: oneshot::Sender<Result<OutcomeRecorded, LedgerError>>,
    },
    Captured {
        since_ms: i64,
        reply: oneshot::Sender<Result<Vec<Captured>, LedgerError>>,
    },
    Outcomes {
        since_ms: i64,
        reply: oneshot::Sender<Result<Vec<Outcome>, LedgerError>>,
    },
    Rows {
        reply: oneshot::Sender<Result<Vec<OfferRow>, LedgerError>>,
    },
    SetBudget {
        campaign: String,
        budget: CampaignBudget,
        revision: u64,
        reply: oneshot::Sender<Result<bool, LedgerError>>,
    },
    SpendByDay {
        campaign: String,
        from_day: String,
        to_day: String,
        reply: oneshot::Sender<Result<Vec<DaySpend>, LedgerError>>,
    },
}

/// A reply to send once the batch is committed.
enum Pending {
    Reserve(
        oneshot::Sender<Result<ReserveOutcome, LedgerError>>,
        Result<ReserveOutcome, LedgerError>,
    ),
    OfferFor(
        oneshot::Sender<Result<Option<Offer>, LedgerError>>,
        Option<Offer>,
    ),
    Redeem(
        oneshot::Sender<Result<RedeemOutcome, LedgerError>>,
        RedeemOutcome,
    ),
    Void(oneshot::Sender<Result<u64, LedgerError>>, u64),
    Snapshot(
        oneshot::Sender<Result<BudgetSnapshot, LedgerError>>,
        Result<BudgetSnapshot, LedgerError>,
    ),
    Outcome(
        oneshot::Sender<Result<OutcomeRecorded, LedgerError>>,
        Result<OutcomeRecorded, LedgerError>,
    ),
    Captured(
        oneshot::Sender<Result<Vec<Captured>, LedgerError>>,
        Vec<Captured>,
    ),
    Outcomes(
        oneshot::Sender<Result<Vec<Outcome>, LedgerError>>,
        Result<Vec<Outcome>, LedgerError>,
    ),
    Rows(
        oneshot::Sender<Result<Vec<OfferRow>, LedgerError>>,
        Vec<OfferRow>,
    ),
    SpendByDay(
        oneshot::Sender<Result<Vec<DaySpend>, LedgerError>>,
        Result<Vec<DaySpend>, LedgerError>,
    ),
}

impl Pending {
    fn send_ok(self) {
        // A caller that went away (cancelled request) is not an error here:
        // its effect is durable and will be found by the next request.
        let _ = match self {
            Pending::Reserve(tx, r) => tx.send(r).map_err(drop),
            Pending::OfferFor(tx, r) => tx.send(Ok(r)).map_err(drop),
            Pending::Redeem(tx, r) => tx.send(Ok(r)).map_err(drop),
            Pending::Void(tx, r) => tx.send(Ok(r)).map_err(drop),
            Pending::Snapshot(tx, r) => tx.send(r).map_err(drop),
            Pending::Outcome(tx, r) => tx.send(r).map_err(drop),
            Pending::Captured(tx, r) => tx.send(Ok(r)).map_err(drop),
            Pending::Outcomes(tx, r) => tx.send(r).map_err(drop),
            Pending::Rows(tx, r) => tx.send(Ok(r)).map_err(drop),
            Pending::SpendByDay(tx, r) => tx.send(r).map_err(drop),
        };
    }

    fn send_err(self, msg: &str) {
        let e = || LedgerError::Unavailable(msg.to_owned());
        let _ = match self {
            Pending::Reserve(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::OfferFor(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Redeem(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Void(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Snapshot(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Outcome(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Captured(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Outcomes(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::Rows(tx, _) => tx.send(Err(e())).map_err(drop),
            Pending::SpendByDay(tx, _) => tx.send(Err(e())).map_err(drop),
        };
    }
}

/// The SQLite ledger handle. Cloning shares the writer; the writer thread
/// stops when the last handle is dropped.
#[derive(Clone)]
pub struct SqliteLedger {
    tx: mpsc::Sender<Cmd>,
    path: Arc<PathBuf>,
    /// Sessions the writer need not be asked about.
    offered: Arc<MaybeOffered>,
}

fn sql_err(e: rusqlite::Error) -> LedgerError {
    LedgerError::Unavailable(format!("sqlite: {e}"))
}

/// The database and its `-wal` and `-shm` files hold voucher codes and
/// session ids: owner-only (0600). The database is created with that mode
/// before SQLite opens it (SQLite gives its side files the database's mode);
/// files of an earlier build are tightened.
fn owner_only_files(path: &Path) -> Result<(), LedgerError> {
    let io = |e: std::io::Error| LedgerError::Unavailable(format!("{}: {e}", path.display()));
    if !path.exists() {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
    }
    crate::files::set_mode(path, 0o600).map_err(io)?;
    for side in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(side);
        // Absent, or removed meanwhile by the last connection closing.
        match crate::files::set_mode(Path::new(&p), 0o600) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    Ok(())
}

fn open_connection(path: &Path) -> Result<Connection, LedgerError> {
    owner_only_files(path)?;
    let conn = Connection::open(path).map_err(sql_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_err)?;
    // FULL: a committed offer survives power loss, not only a process crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
    conn.execute_batch(SCHEMA).map_err(sql_err)?;
    migrate(&conn)?;
    owner_only_files(path)?;
    Ok(conn)
}

/// Brings a database of an earlier build up to [`SCHEMA`]: the `learning`
/// column (0 for every existing offer: they were all paid from the main
/// budget). Idempotent.
fn migrate(conn: &Connection) -> Result<(), LedgerError> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('offers')")
        .map_err(sql_err)?;
    let columns = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(sql_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(sql_err)?;
    if !columns.iter().any(|c| c == "learning") {
        conn.execute_batch("ALTER TABLE offers ADD COLUMN learning INTEGER NOT NULL DEFAULT 0")
            .map_err(sql_err)?;
        tracing::info!("ledger migrated: offers.learning added");
    }
    // One offer per session and campaign was a table constraint; it is now
    // one *live* offer (`offers_live`), so a session whose offer was voided
    // can be offered again. SQLite drops a table constraint only by
    // rebuilding the table.
    let sql: String = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'offers'",
            [],
            |r| r.get(0),
        )
        .map_err(sql_err)?;
    if sql.contains("UNIQUE") {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE;
             DROP INDEX IF EXISTS offers_open;
             DROP INDEX IF EXISTS offers_live;
             ALTER TABLE offers RENAME TO offers_old;
             {SCHEMA}
             INSERT INTO offers (code, campaign, session_id, day, amount_cents, issued_ms, \
               expires_ms, state, settled_ms, order_value_cents, learning) \
               SELECT code, campaign, session_id, day, amount_cents, issued_ms, expires_ms, \
               state, settled_ms, order_value_cents, learning FROM offers_old;
             DROP TABLE offers_old;
             COMMIT;"
        ))
        .map_err(sql_err)?;
        tracing::info!("ledger migrated: one live offer per session");
    }
    Ok(())
}

/// Every outcome recorded at or after `since_ms`, oldest first.
fn outcomes_since(conn: &Connection, since_ms: i64) -> Result<Vec<Outcome>, LedgerError> {
    let mut stmt = conn
        .prepare(
            "SELECT session_id, converted, order_value_cents, at_ms FROM outcomes \
             WHERE at_ms >= ?1 ORDER BY at_ms, session_id",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![since_ms], |r| {
            Ok(Outcome {
                session_id: r.get(0)?,
                converted: r.get(1)?,
                order_value_cents: r.get(2)?,
                at_ms: r.get(3)?,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
}

fn load_rows(conn: &Connection) -> Result<Vec<OfferRow>, LedgerError> {
    let mut stmt = conn
        .prepare(
            "SELECT code, campaign, session_id, day, amount_cents, issued_ms, expires_ms, state, \
             settled_ms, order_value_cents, learning FROM offers",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map([], |r| {
            let state: String = r.get(7)?;
            Ok(OfferRow {
                code: r.get(0)?,
                campaign: r.get(1)?,
                session_id: r.get(2)?,
                day: r.get(3)?,
                amount_cents: r.get(4)?,
                issued_ms: r.get(5)?,
                expires_ms: r.get(6)?,
                state: OfferState::parse(&state).unwrap_or(OfferState::Voided),
                settled_ms: r.get(8)?,
                order_value_cents: r.get(9)?,
                learning: r.get::<_, i64>(10)? != 0,
            })
        })
        .map_err(sql_err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql_err)
}

fn persist(tx: &rusqlite::Transaction<'_>, effect: &Effect) -> rusqlite::Result<()> {
    match effect {
        Effect::Insert(r) => tx.execute(
            "INSERT INTO offers (code, campaign, session_id, day, amount_cents, issued_ms, \
             expires_ms, state, settled_ms, order_value_cents, learning) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                r.code,
                r.campaign,
                r.session_id,
                r.day,
                r.amount_cents,
                r.issued_ms,
                r.expires_ms,
                r.state.as_str(),
                r.settled_ms,
                r.order_value_cents,
                i64::from(r.learning)
            ],
        )?,
        Effect::Update(r) => tx.execute(
            "UPDATE offers SET state = ?2, settled_ms = ?3, order_value_cents = ?4 WHERE code = ?1",
            params![r.code, r.state.as_str(), r.settled_ms, r.order_value_cents],
        )?,
    };
    Ok(())
}

struct Writer {
    conn: Connection,
    core: LedgerCore,
    offered: Arc<MaybeOffered>,
    health: Health,
    disk_full: DiskFull,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
        }
        tracing::debug!("ledger writer stopped");
    }

    fn process(&mut self, batch: &mut Vec<Cmd>) {
        let mut pending = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        let mut effects: Vec<Effect> = Vec::new();
        let mut outcome_writes: Vec<Outcome> = Vec::new();
        let mut outcome_cache: HashMap<String, Outcome> = HashMap::new();
        // While the storage is failing, a request that would write is undone
        // and refused on its own, so that the requests after it never see its
        // effects and reads are still answered.
        let may_write = self.health.may_write(Instant::now());
        for cmd in batch.drain(..) {
            let (effects_before, outcomes_before) = (effects.len(), outcome_writes.len());
            match cmd {
                Cmd::Reserve {
                    campaign,
                    session_id,
                    candidates,
                    now_ms,
                    expires_at_ms,
                    learning,
                    reply,
                } => {
                    let r = self.core.reserve(&ReserveRequest {
                        campaign: &campaign,
                        session_id: &session_id,
                        candidates: &candidates,
                        now_ms,
                        expires_at_ms,
                        learning,
                    });
                    let r = r.map(|(o, e)| {
                        if let ReserveOutcome::Reserved(_) = &o {
                            self.offered.insert(&campaign, &session_id);
                        }
                        effects.extend(e);
                        o
                    });
                    pending.push(Pending::Reserve(reply, r));
                }
                Cmd::OfferFor {
                    campaign,
                    session_id,
                    reply,
                } => pending.push(Pending::OfferFor(
                    reply,
                    self.core.offer_for(&campaign, &session_id),
                )),
                Cmd::Redeem {
                    code,
                    session_id,
                    order_value_cents,
                    min_order_cents,
                    now_ms,
                    reply,
                } => {
                    let (o, e) = self.core.redeem(&RedeemRequest {
                        code: &code,
                        session_id: &session_id,
                        order_value_cents,
                        min_order_cents,
                        now_ms,
                    });
                    effects.extend(e);
                    pending.push(Pending::Redeem(reply, o));
                }
                Cmd::VoidExpired { now_ms, reply } => {
                    let e = self.core.void_expired(now_ms);
                    let n = e.len() as u64;
                    effects.extend(e);
                    pending.push(Pending::Void(reply, n));
                }
                Cmd::Snapshot {
                    campaign,
                    now_ms,
                    reply,
                } => pending.push(Pending::Snapshot(
                    reply,
                    self.core.snapshot(&campaign, now_ms),
                )),
                Cmd::Outcome { outcome, reply } => {
                    // The recorded outcome decides what may change: one that
                    // cannot be read is an error, never "no outcome yet".
                    let existing = match outcome_cache.get(&outcome.session_id) {
                        Some(o) => Ok(Some(o.clone())),
                        None => self.read_outcome(&outcome.session_id),
                    };
                    let changed = existing.map(|existing| {
                        let mut map = HashMap::new();
                        if let Some(o) = existing {
                            map.insert(o.session_id.clone(), o);
                        }
                        upsert_outcome(&mut map, outcome.clone())
                    });
                    if changed.as_ref().is_ok_and(OutcomeRecorded::is_new) {
                        outcome_cache.insert(outcome.session_id.clone(), outcome.clone());
                        outcome_writes.push(outcome);
                    }
                    pending.push(Pending::Outcome(reply, changed));
                }
                Cmd::Captured { since_ms, reply } => {
                    pending.push(Pending::Captured(reply, self.core.captured(since_ms)))
                }
                Cmd::Outcomes { since_ms, reply } => {
                    pending.push(Pending::Outcomes(reply, self.read_outcomes(since_ms)))
                }
                Cmd::Rows { reply } => pending.push(Pending::Rows(reply, self.core.rows())),
                Cmd::SetBudget {
                    campaign,
                    budget,
                    revision,
                    reply,
                } => {
                    // Nothing to write, so nothing to wait for: the caps are
                    // in force for every request after this one, and a
                    // failed commit of the batch does not take them back.
                    let applied = self.core.set_budget(&campaign, budget, revision);
                    tracing::info!(campaign, revision, applied, "ledger caps set");
                    let _ = reply.send(Ok(applied));
                }
                Cmd::SpendByDay {
                    campaign,
                    from_day,
                    to_day,
                    reply,
                } => pending.push(Pending::SpendByDay(
                    reply,
                    self.core.spend_by_day(&campaign, &from_day, &to_day),
                )),
            }
            let wrote = effects.len() > effects_before || outcome_writes.len() > outcomes_before;
            if wrote && !may_write {
                self.core.undo(&effects[effects_before..]);
                effects.truncate(effects_before);
                for o in outcome_writes.drain(outcomes_before..) {
                    outcome_cache.remove(&o.session_id);
                }
                refused.extend(pending.pop());
            }
        }
        if !refused.is_empty() {
            let msg = self.health.refusal(refused.len());
            refused.into_iter().for_each(|p| p.send_err(&msg));
        }
        if effects.is_empty() && outcome_writes.is_empty() {
            pending.into_iter().for_each(Pending::send_ok);
            return;
        }
        match self.commit_with_retries(&effects, &outcome_writes) {
            Ok(()) => {
                self.health.succeeded();
                pending.into_iter().for_each(Pending::send_ok);
            }
            Err(e) => {
                // Nothing of the batch is on disk: take it out of memory too,
                // exactly, and tell every request of the batch (a read after
                // a write in the batch saw the write).
                self.core.undo(&effects);
                self.health.failed(&e, pending.len());
                let msg = format!("ledger commit failed: {e}");
                pending.into_iter().for_each(|p| p.send_err(&msg));
            }
        }
    }

    /// Commits, retrying after each pause of [`COMMIT_RETRIES`]; the last
    /// error when every attempt failed. A failed attempt is rolled back.
    fn commit_with_retries(
        &mut self,
        effects: &[Effect],
        outcomes: &[Outcome],
    ) -> rusqlite::Result<()> {
        let mut result = self.commit(effects, outcomes);
        for pause in COMMIT_RETRIES {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(pause);
            result = self.commit(effects, outcomes);
        }
        result
    }

    fn commit(&mut self, effects: &[Effect], outcomes: &[Outcome]) -> rusqlite::Result<()> {
        if self.disk_full.is_set() {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full (disk-full drill)".into()),
            ));
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for e in effects {
            persist(&tx, e)?;
        }
        for o in outcomes {
            tx.execute(
                "INSERT INTO outcomes (session_id, converted, order_value_cents, at_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (session_id) DO UPDATE SET \
                 converted = excluded.converted, order_value_cents = excluded.order_value_cents, \
                 at_ms = excluded.at_ms",
                params![o.session_id, o.converted, o.order_value_cents, o.at_ms],
            )?;
        }
        tx.commit()
    }

    fn read_outcome(&self, session_id: &str) -> Result<Option<Outcome>, LedgerError> {
        self.conn
            .query_row(
                "SELECT session_id, converted, order_value_cents, at_ms FROM outcomes WHERE session_id = ?1",
                params![session_id],
                |r| {
                    Ok(Outcome {
                        session_id: r.get(0)?,
                        converted: r.get(1)?,
                        order_value_cents: r.get(2)?,
                        at_ms: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(sql_err)
    }

    fn read_outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError> {
        outcomes_since(&self.conn, since_ms)
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file and starts its writer
    /// thread. Budget state and outstanding offers are rebuilt from disk.
    pub fn open(path: &Path, budgets: Budgets, key: VoucherKey) -> Result<Self, LedgerError> {
        Self::open_with(path, budgets, key, DiskFull::default())
    }

    /// [`SqliteLedger::open`] with a [`DiskFull`] switch: while it is on,
    /// every commit fails as on a full disk (fault drills, tests).
    pub fn open_with(
        path: &Path,
        budgets: Budgets,
        key: VoucherKey,
        disk_full: DiskFull,
    ) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                LedgerError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = open_connection(path)?;
        let rows = load_rows(&conn)?;
        let n = rows.len();
        let offered = Arc::new(MaybeOffered::default());
        rows.iter()
            .for_each(|r| offered.insert(&r.campaign, &r.session_id));
        let mut core = LedgerCore::new(budgets, key);
        core.load(rows);
        if !core.within_caps() {
            tracing::warn!(path = %path.display(), "ledger on disk exceeds a configured cap (was the cap lowered?)");
        }
        tracing::info!(path = %path.display(), offers = n, "ledger opened");
        let (tx, rx) = mpsc::channel(QUEUE);
        // The writer logs where its opener logs.
        let dispatch = crate::throttle::current_dispatch();
        let writer = Writer {
            conn,
            core,
            offered: offered.clone(),
            health: Health::new(),
            disk_full,
        };
        std::thread::Builder::new()
            .name("nudge-ledger".into())
            .spawn(move || crate::throttle::with_dispatch(&dispatch, || writer.run(rx)))
            .map_err(|e| LedgerError::Unavailable(format!("cannot start ledger writer: {e}")))?;
        Ok(SqliteLedger {
            tx,
            path: Arc::new(path.to_owned()),
            offered,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LedgerError>>) -> Cmd,
    ) -> Result<T, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| LedgerError::Unavailable("ledger writer stopped".into()))?;
        rx.await
            .map_err(|_| LedgerError::Unavailable("ledger writer stopped".into()))?
    }

    /// Every row, for audits and tests.
    pub async fn rows(&self) -> Result<Vec<OfferRow>, LedgerError> {
        self.call(|reply| Cmd::Rows { reply }).await
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn reserve(&self, req: ReserveRequest<'_>) -> Result<ReserveOutcome, LedgerError> {
        self.call(|reply| Cmd::Reserve {
            campaign: req.campaign.to_owned(),
            session_id: req.session_id.to_owned(),
            candidates: req.candidates.to_vec(),
            now_ms: req.now_ms,
            expires_at_ms: req.expires_at_ms,
            learning: req.learning,
            reply,
        })
        .await
    }

    async fn offer_for(
        &self,
        campaign: &str,
        session_id: &str,
    ) -> Result<Option<Offer>, LedgerError> {
        if !self.offered.may_hold(campaign, session_id) {
            return Ok(None);
        }
        self.call(|reply| Cmd::OfferFor {
            campaign: campaign.to_owned(),
            session_id: session_id.to_owned(),
            reply,
        })
        .await
    }

    async fn redeem(&self, req: RedeemRequest<'_>) -> Result<RedeemOutcome, LedgerError> {
        self.call(|reply| Cmd::Redeem {
            code: req.code.to_owned(),
            session_id: req.session_id.to_owned(),
            order_value_cents: req.order_value_cents,
            min_order_cents: req.min_order_cents,
            now_ms: req.now_ms,
            reply,
        })
        .await
    }

    async fn void_expired(&self, now_ms: i64) -> Result<u64, LedgerError> {
        self.call(|reply| Cmd::VoidExpired { now_ms, reply }).await
    }

    async fn snapshot(&self, campaign: &str, now_ms: i64) -> Result<BudgetSnapshot, LedgerError> {
        self.call(|reply| Cmd::Snapshot {
            campaign: campaign.to_owned(),
            now_ms,
            reply,
        })
        .await
    }

    async fn record_outcome(&self, outcome: Outcome) -> Result<OutcomeRecorded, LedgerError> {
        self.call(|reply| Cmd::Outcome { outcome, reply }).await
    }

    async fn captured(&self, since_ms: i64) -> Result<Vec<Captured>, LedgerError> {
        self.call(|reply| Cmd::Captured { since_ms, reply }).await
    }

    async fn outcomes(&self, since_ms: i64) -> Result<Vec<Outcome>, LedgerError> {
        self.call(|reply| Cmd::Outcomes { since_ms, reply }).await
    }

    async fn set_budget(
        &self,
        campaign: &str,
        budget: CampaignBudget,
        revision: u64,
    ) -> Result<bool, LedgerError> {
        check_campaign_id(campaign)?;
        budget.check()?;
        self.call(|reply| Cmd::SetBudget {
            campaign: campaign.to_owned(),
            budget,
            revision,
            reply,
        })
        .await
    }

    async fn spend_by_day(
        &self,
        campaign: &str,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<DaySpend>, LedgerError> {
        self.call(|reply| Cmd::SpendByDay {
            campaign: campaign.to_owned(),
            from_day: from_day.to_owned(),
            to_day: to_day.to_owned(),
            reply,
        })
        .await
    }

    /// The writer thread answers an empty read (captures after the end of
    /// time).
    async fn ping(&self) -> Result<(), LedgerError> {
        self.captured(i64::MAX).await.map(|_| ())
    }
}

#[path = "sqlite_read.rs"]
mod read;
pub use read::read_only;

#[path = "sqlite_health.rs"]
mod health;
use health::Health;

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
