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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::voucher::VoucherKey;
    use crate::ledger::sqlite::SqliteLedger;
    use crate::ledger::{Ledger, RedeemRequest, ReserveOutcome, ReserveRequest, DEFAULT_CAMPAIGN};

    const NOW: i64 = 1_795_341_600_000;

    /// Read beside an open ledger, the file gives what the ledger itself
    /// answers, and a missing file is `None` and stays missing.
    #[tokio::test]
    async fn reads_what_the_ledger_answers_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        assert!(read_only(&path, Budgets::single(10_000)).unwrap().is_none());
        assert!(!path.exists());

        let ledger =
            SqliteLedger::open(&path, Budgets::single(10_000), VoucherKey::random()).unwrap();
        let offer = match ledger
            .reserve(ReserveRequest {
                campaign: DEFAULT_CAMPAIGN,
                session_id: "s1",
                candidates: &[500],
                now_ms: NOW,
                expires_at_ms: NOW + 60_000,
                learning: false,
            })
            .await
            .unwrap()
        {
            ReserveOutcome::Reserved(o) => o,
            other => panic!("{other:?}"),
        };
        ledger
            .redeem(RedeemRequest {
                code: &offer.voucher_code,
                session_id: "s1",
                order_value_cents: 20_000,
                min_order_cents: 0,
                now_ms: NOW + 1,
            })
            .await
            .unwrap();
        for (session, converted) in [("s1", true), ("s2", false)] {
            ledger
                .record_outcome(Outcome {
                    session_id: session.into(),
                    converted,
                    order_value_cents: if converted { 20_000 } else { 0 },
                    at_ms: NOW + 2,
                })
                .await
                .unwrap();
        }
        let (outcomes, captured) = read_only(&path, Budgets::single(10_000)).unwrap().unwrap();
        assert_eq!(outcomes, ledger.outcomes(0).await.unwrap());
        assert_eq!(captured, ledger.captured(0).await.unwrap());
        assert_eq!((outcomes.len(), captured.len()), (2, 1));
        assert_eq!(captured[0].amount_cents, 500);
    }
}
