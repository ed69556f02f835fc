//! Readiness: the model is loaded (an engine exists only with one) and the
//! ledger and the session store answer a cheap probe, every second. The
//! admin server's `/readyz` and the gRPC health status of the Offers
//! service both follow it, so that a load balancer stops sending calls
//! that could only be answered without a voucher.

use crate::engine::Engine;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the stores are probed.
pub const PROBE_TICK: Duration = Duration::from_secs(1);

/// A probe slower than this fails: a store that slow cannot serve Decide.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The last probe's verdict: what failed and why; ready when nothing did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    pub failed: Vec<(&'static str, String)>,
    /// The version of the model in force, so that ops see which one is live.
    pub model_version: String,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.failed.is_empty()
    }

    /// The body `/readyz` answers:
    /// `{"failed":{"ledger":"..."},"model":"loaded","model_version":"v3","ready":false}`.
    pub fn to_json(&self) -> String {
        let failed: serde_json::Map<String, serde_json::Value> = self
            .failed
            .iter()
            .map(|(what, why)| ((*what).to_owned(), why.clone().into()))
            .collect();
        serde_json::json!({
            "ready": self.ready(),
            "model": "loaded",
            "model_version": self.model_version,
            "failed": failed,
        })
        .to_string()
    }
}

/// Probes the ledger and the session store once, side by side.
pub async fn probe(engine: &Engine) -> Readiness {
    let timed_out = || format!("no answer within {} ms", PROBE_TIMEOUT.as_millis());
    let (ledger, sessions) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, engine.ledger.ping()),
        tokio::time::timeout(PROBE_TIMEOUT, engine.sessions.ping()),
    );
    let mut failed = Vec::new();
    match ledger {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed.push(("ledger", e.to_string())),
        Err(_) => failed.push(("ledger", timed_out())),
    }
    match sessions {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed.push(("sessions", e.to_string())),
        Err(_) => failed.push(("sessions", timed_out())),
    }
    Readiness {
        failed,
        model_version: engine.model().version().to_owned(),
    }
}

/// Probes every [`PROBE_TICK`] until `shutdown` fires; the receiver sees
/// each change (and closes when the task stops). A change is logged once:
/// not ready with what failed, ready again.
pub fn spawn(
    engine: Arc<Engine>,
    shutdown: watch::Receiver<bool>,
) -> (watch::Receiver<Readiness>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Readiness::default());
    let tx = Arc::new(tx);
    let task = super::tasks::spawn_every("readiness probe", PROBE_TICK, shutdown, move || {
        let (engine, tx) = (engine.clone(), tx.clone());
        async move {
            let now = probe(&engine).await;
            tx.send_if_modified(|was| {
                if *was == now {
                    return false;
                }
                // A new model alone changes the answer, not the verdict.
                if was.ready() == now.ready() && was.failed == now.failed {
                    *was = now;
                    return true;
                }
                if now.ready() {
                    tracing::info!("ready again: the stores answer");
                } else {
                    tracing::warn!(failed = %now.to_json(), "not ready");
                }
                *was = now;
                true
            });
        }
    });
    (rx, task)
}
