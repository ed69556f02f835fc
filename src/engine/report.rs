//! The ROI report as the engine serves it: the decision log (flushed first)
//! joined to the ledger's outcomes and captures.

use crate::decision_log::{DecisionRecord, LogRecord, OutcomeRecord, LOG_FORMAT_VERSION};
use crate::engine::error::ServiceError;
use crate::engine::Engine;

impl Engine {
    /// The ROI report over the decision log (flushed first) and the
    /// ledger's outcomes and captures. Returns (report, JSON, table).
    pub async fn report(
        &self,
        since_ms: i64,
    ) -> Result<(crate::report::RoiReport, String, String), ServiceError> {
        let Some(dir) = self.log.dir().map(std::path::Path::to_owned) else {
            return Err(ServiceError::FailedPrecondition(
                "the decision log is disabled ([log] enabled = false): no report".into(),
            ));
        };
        self.log.flush().await;
        let records =
            tokio::task::spawn_blocking(move || crate::decision_log::reader::read_dir(&dir))
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let decisions: Vec<DecisionRecord> = records
            .into_iter()
            .filter_map(|r| match r {
                LogRecord::Decision(d) => Some(d),
                _ => None,
            })
            .collect();
        let outcomes: Vec<OutcomeRecord> = self
            .ledger
            .outcomes(0)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .into_iter()
            .map(|o| OutcomeRecord {
                v: LOG_FORMAT_VERSION,
                at_ms: o.at_ms,
                session_id: o.session_id,
                converted: o.converted,
                order_value_cents: o.order_value_cents,
            })
            .collect();
        let captured: Vec<crate::report::Captured> = self
            .ledger
            .captured(0)
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?
            .into_iter()
            .map(|c| crate::report::Captured {
                campaign: c.campaign,
                session_id: c.session_id,
                amount_cents: c.amount_cents,
                learning: c.learning,
            })
            .collect();
        let report = crate::report::roi_report(&crate::report::ReportInput {
            decisions: &decisions,
            outcomes: &outcomes,
            captured: &captured,
            margin_rate: self.policy.margin_rate,
            since_ms: (since_ms > 0).then_some(since_ms),
        });
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let table = crate::report::render_table(&report);
        Ok((report, json, table))
    }
}
