//! Background work of a running service, each task with a shutdown path:
//! the expiry sweeper (any ledger), the pacing loop and the decision log's
//! retention.

use crate::app::pacing_state::save_pacing;
use crate::engine::Engine;
use crate::ledger::Ledger;
use std::sync::Arc;
use std::time::Duration;

/// How often the pacing controllers read the spend.
pub const PACING_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// How often the decision log's retention runs besides at every rotation,
/// so that old files go even when nothing is written.
pub const RETENTION_TICK: Duration = Duration::from_secs(600);

/// Runs `tick` every `every` (the first at once) until `shutdown` fires;
/// the returned handle finishes after the last tick.
pub(crate) fn spawn_every<F, Fut>(
    what: &'static str,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut tick: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = timer.tick() => tick().await,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        tracing::debug!(task = what, "background task stopped");
    })
}

/// Applies the decision log's retention every `every` until `shutdown`
/// fires (the writer also applies it at every rotation).
fn spawn_retention(
    log: crate::decision_log::writer::DecisionLog,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_every("log retention", every, shutdown, move || {
        let log = log.clone();
        async move { log.prune().await }
    })
}

/// Voids expired offers every `every` until `shutdown` fires. The returned
/// handle finishes after the last sweep.
pub fn spawn_sweeper(
    ledger: Arc<dyn Ledger>,
    clock: Arc<dyn crate::clock::Clock>,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    spawn_every("sweeper", every, shutdown, move || {
        let (ledger, clock) = (ledger.clone(), clock.clone());
        async move {
            match ledger.void_expired(clock.now_ms()).await {
                Ok(0) => {}
                Ok(n) => {
                    metrics::counter!("nudge_vouchers_voided_total").increment(n);
                    tracing::info!(voided = n, "expired offers voided")
                }
                Err(e) => tracing::warn!(error = %e, "sweep failed"),
            }
        }
    })
}

/// Background work of a running service: the expiry sweeper, the decision
/// log's retention and the pacing loop (which also saves the pacing state to `pacing_file`, if any, after
/// every tick and when it stops). Dropping it does not stop them; call
/// [`Background::stop`].
pub struct Background {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(
        engine: Arc<Engine>,
        sweep_interval: std::time::Duration,
        pacing_file: Option<std::path::PathBuf>,
    ) -> Background {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let sweeper = spawn_sweeper(
            engine.ledger.clone(),
            engine.clock.clone(),
            sweep_interval,
            rx.clone(),
        );
        let retention = spawn_retention(engine.log.clone(), RETENTION_TICK, rx.clone());
        let mut rx_pacing = rx;
        let e = engine.clone();
        let pacing = tokio::spawn(async move {
            let save = |e: &Engine| {
                let path = pacing_file.clone()?;
                let saved = e.save_pacing();
                Some(tokio::task::spawn_blocking(move || {
                    if let Err(err) = save_pacing(&saved, &path) {
                        tracing::warn!(path = %path.display(), error = %err, "cannot save the pacing state");
                    }
                }))
            };
            let mut tick = tokio::time::interval(PACING_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        e.update_pacing().await;
                        if let Some(h) = save(&e) {
                            let _ = h.await;
                        }
                    }
                    changed = rx_pacing.changed() => {
                        if changed.is_err() || *rx_pacing.borrow() {
                            break;
                        }
                    }
                }
            }
            if let Some(h) = save(&e) {
                let _ = h.await;
            }
            tracing::debug!("pacing loop stopped");
        });
        Background {
            stop,
            tasks: vec![sweeper, retention, pacing],
        }
    }

    /// Stops the tasks and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
