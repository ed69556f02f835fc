//! `nudge report`: the ROI report from the service's files, read without
//! writing. No ledger file, data directory, key file or pacing state is
//! created or restored, so the report can run beside the service, on a
//! copy of its files, or on an empty directory.

use super::ServerError;
use crate::config::{LedgerBackend, LogConfig, Settings};
use crate::report::sessions::SessionFold;
use crate::report::{Captured, RoiReport};
use std::path::PathBuf;

/// A report and what the reader could not find (each a sentence for the
/// operator: a missing ledger or log reads as "nothing recorded yet").
#[derive(Debug)]
pub struct FileReport {
    pub report: RoiReport,
    pub notes: Vec<String>,
}

/// The report over the decision log under `log_dir` and the configured
/// ledger's outcomes and captures, counting sessions whose first eligible
/// decision is at or after `since_ms` (0: all).
pub async fn report_from_files(
    settings: &Settings,
    log_dir: PathBuf,
    since_ms: i64,
) -> Result<FileReport, ServerError> {
    let mut notes = Vec::new();
    let (outcomes, captured) = match settings.ledger_backend {
        LedgerBackend::Sqlite => {
            let path = settings.data_dir.join(super::LEDGER_FILE);
            let budgets = settings.budgets.clone();
            let read = path.clone();
            let found = tokio::task::spawn_blocking(move || {
                crate::ledger::sqlite::read_only(&read, budgets)
            })
            .await
            .map_err(|e| ServerError::Setup(e.to_string()))?
            .map_err(|e| ServerError::Setup(e.to_string()))?;
            found.unwrap_or_else(|| {
                notes.push(format!(
                    "no ledger at {}: no outcomes and no captured vouchers recorded yet",
                    path.display()
                ));
                (Vec::new(), Vec::new())
            })
        }
        LedgerBackend::Redis => {
            let redis = settings.redis.as_ref().ok_or_else(|| {
                ServerError::Setup("a redis ledger is configured without [redis] settings".into())
            })?;
            let conn = crate::redis::RedisConn::new(redis).map_err(ServerError::Setup)?;
            let ledger = crate::redis::RedisLedger::new(
                conn,
                settings.budgets.clone(),
                crate::domain::voucher::VoucherKey::random(),
            );
            use crate::ledger::Ledger;
            let unavailable = |e: crate::ledger::LedgerError| ServerError::Setup(e.to_string());
            (
                ledger.outcomes(0).await.map_err(unavailable)?,
                ledger.captured(0).await.map_err(unavailable)?,
            )
        }
        LedgerBackend::Memory => {
            notes.push(
                "the memory ledger keeps nothing between runs: no outcomes and no captured vouchers"
                    .into(),
            );
            (Vec::new(), Vec::new())
        }
    };
    let captured: Vec<Captured> = captured
        .into_iter()
        .map(|c| Captured {
            campaign: c.campaign,
            session_id: c.session_id,
            amount_cents: c.amount_cents,
            learning: c.learning,
        })
        .collect();
    let max_sessions = settings
        .log
        .map_or(LogConfig::DEFAULT_REPORT_MAX_SESSIONS, |l| {
            l.report_max_sessions
        });
    let margin_rate = settings.policy.margin_rate;
    if !log_dir.is_dir() {
        notes.push(format!(
            "no decision log under {}: no decisions recorded yet",
            log_dir.display()
        ));
    }
    let report = tokio::task::spawn_blocking(move || {
        let mut fold = SessionFold::new(max_sessions);
        if log_dir.is_dir() {
            fold.pass(&log_dir)
                .map_err(|e| ServerError::Setup(format!("{}: {e}", log_dir.display())))?;
        }
        let latest = crate::report::latest_outcomes(outcomes.iter().map(|o| {
            (
                o.session_id.as_str(),
                o.at_ms,
                o.converted,
                o.order_value_cents,
            )
        }));
        Ok::<_, ServerError>(fold.report(
            &latest,
            &captured,
            margin_rate,
            (since_ms > 0).then_some(since_ms),
        ))
    })
    .await
    .map_err(|e| ServerError::Setup(e.to_string()))??;
    Ok(FileReport { report, notes })
}
