//! The ledger file read without writing: what `nudge report` needs
//! (outcomes and captures) from a ledger the service may be using
//! meanwhile. Nothing is created, migrated or restored.

use super::{load_rows, outcomes_since, sql_err};
use crate::ledger::core::LedgerCore;
use crate::ledger::{Budgets, Captured, LedgerError, Outcome};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// A ledger's outcomes and captured vouchers.
pub type Recorded = (Vec<Outcome>, Vec<Captured>);

/// Every outcome and every captured voucher in the ledger file at `path`,
/// opened read-only (`None` when there is no such file: nothing is
/// created). A ledger of an earlier build that was never migrated is an
/// error naming the file (start the service once to migrate it).
pub fn read_only(path: &Path, budgets: Budgets) -> Result<Option<Recorded>, LedgerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| LedgerError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
    // The service may be committing meanwhile: wait for it as it waits.
    conn.busy_timeout(Duration::from_secs(5)).map_err(sql_err)?;
    let outcomes = outcomes_since(&conn, 0)?;
    let mut core = LedgerCore::new(budgets, crate::domain::voucher::VoucherKey::random());
    core.load(load_rows(&conn)?);
    Ok(Some((outcomes, core.captured(0))))
}
