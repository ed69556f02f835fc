//! Changes that go live without a restart. The model file is watched (its
//! length and modification time, every [`MODEL_POLL`]); a changed file is
//! read once it has been still for [`MODEL_DEBOUNCE`], validated like at
//! start and swapped in, so that a model written in place (or renamed over
//! the old one) is served within seconds. A file that fails validation
//! leaves the old model serving.
//!
//! A model that goes live is published to the model history
//! ([`crate::engine::models`]); the history's live model is polled every
//! [`MODEL_POLL`] too, so a model published elsewhere (another replica,
//! `nudge model publish`, a rollback) is served here within seconds.
//!
//! SIGHUP re-reads the config file and the model. A config that fails
//! validation changes nothing. Of a valid one, `[policy]`, `[experiment]`,
//! `[pacing]` and the `[budget]` campaigns' caps go live (through the
//! campaign settings' seed reconciliation, so that values changed at run
//! time stay unless the config changed them); every other setting needs a
//! restart and keeps its running value.

use crate::campaigns::Catalog;
use crate::config::Settings;
use crate::engine::campaigns::CampaignService;
use crate::engine::models::{Adopted, ModelService};
use crate::engine::Engine;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the model file's metadata is read.
pub const MODEL_POLL: Duration = Duration::from_secs(1);

/// How long a changed model file must stay unchanged before it is read, so
/// that a file still being written is not read half way.
pub const MODEL_DEBOUNCE: Duration = Duration::from_millis(500);

/// Reads and validates the config again (the same file and environment as
/// at start).
pub type LoadSettings = Box<dyn Fn() -> Result<Settings, String> + Send + Sync>;

/// What a reload needs: the running service, the settings it started with
/// and how to read the config again.
pub struct Reloader {
    pub engine: Arc<Engine>,
    pub campaigns: Arc<CampaignService>,
    pub models: Arc<ModelService>,
    /// The settings the process started with: what cannot change at run
    /// time is compared with them.
    pub running: Settings,
    pub load_settings: LoadSettings,
}

/// The model file's identity as polled.
type Stamp = (u64, Option<SystemTime>);

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok((m.len(), m.modified().ok()))
}

/// The model file's watch state: what was last read, and the last failure
/// logged (each distinct one is logged once).
struct ModelWatch {
    path: PathBuf,
    seen: Option<Stamp>,
    failure: Option<String>,
}

impl Reloader {
    /// Runs until `shutdown` fires.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut model = crate::app::model_source::model_file(&self.running).map(|path| {
            let seen = stamp(&path).ok();
            ModelWatch {
                path,
                seen,
                failure: None,
            }
        });
        #[cfg(unix)]
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for sighup: the config is not reloaded");
                None
            }
        };
        let mut tick = tokio::time::interval(MODEL_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(w) = model.as_mut() {
                        self.poll_model(w, &shutdown).await;
                    }
                    self.models.sync().await;
                }
                _ = hangup => {
                    tracing::info!(signal = "sighup", "reloading the config and the model");
                    self.reload_config().await;
                    if let Some(w) = model.as_mut() {
                        let now = stamp(&w.path).ok();
                        self.load_model(w, now).await;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        tracing::debug!(task = "reload", "background task stopped");
    }

    /// Reads the model file if it changed and has since been still for
    /// [`MODEL_DEBOUNCE`].
    async fn poll_model(&self, w: &mut ModelWatch, shutdown: &watch::Receiver<bool>) {
        let Ok(mut now) = stamp(&w.path) else {
            // Missing for a moment (a writer replacing it): the model in
            // force stays and the next poll looks again.
            return;
        };
        if Some(now) == w.seen {
            return;
        }
        loop {
            tokio::time::sleep(MODEL_DEBOUNCE).await;
            if *shutdown.borrow() {
                return;
            }
            match stamp(&w.path) {
                Ok(s) if s == now => break,
                Ok(s) => now = s,
                Err(_) => return,
            }
        }
        self.load_model(w, Some(now)).await;
    }

    /// Reads, validates and puts in force the model file (publishing it
    /// to the model history); a failure leaves the model in force and is
    /// logged once per distinct reason.
    async fn load_model(&self, w: &mut ModelWatch, now: Option<Stamp>) {
        w.seen = now;
        let path = w.path.clone();
        let text = match tokio::task::spawn_blocking(move || std::fs::read_to_string(&path)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return self.model_refused(w, e.to_string()),
            Err(e) => return self.model_refused(w, e.to_string()),
        };
        match self.models.adopt_file(text).await {
            Ok(adopted) => {
                w.failure = None;
                match adopted {
                    Adopted::Published(e) => tracing::info!(
                        path = %w.path.display(),
                        version = %e.version,
                        seq = e.seq,
                        "model file reloaded and published"
                    ),
                    Adopted::Known(e) if self.models.live_seq() == Some(e.seq) => {}
                    Adopted::Known(e) => tracing::info!(
                        path = %w.path.display(),
                        version = %e.version,
                        seq = e.seq,
                        "model file holds a model the history already has: the live model stays (nudge model publish serves it again)"
                    ),
                    Adopted::ServedHere(e) => tracing::warn!(
                        path = %w.path.display(),
                        error = %e,
                        "model file reloaded here only: the model history did not answer, other replicas keep theirs"
                    ),
                }
            }
            Err(e) => self.model_refused(w, e.to_string()),
        }
    }

    fn model_refused(&self, w: &mut ModelWatch, e: String) {
        if w.failure.as_deref() != Some(e.as_str()) {
            tracing::warn!(path = %w.path.display(), error = %e, "model file refused: the model in force stays");
            w.failure = Some(e);
        }
    }

    /// Reads the config again and puts its run-time sections in force.
    async fn reload_config(&self) {
        let next = match (self.load_settings)() {
            Ok(s) => s,
            Err(e) => {
                // One log line, though a parse error quotes the file.
                let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
                tracing::warn!(error = %e, "config reload refused: the running settings stay");
                return;
            }
        };
        let fixed = needs_restart(&self.running, &next);
        if !fixed.is_empty() {
            tracing::warn!(
                settings = %fixed.join(", "),
                "setting needs a restart; the running value stays"
            );
        }
        let mut base = Engine::base_of(&next);
        // The budget days and the default campaign are fixed at start.
        base.timezone = self.running.budgets.timezone;
        base.default_campaign = self.running.default_campaign.clone();
        let mut budgets = next.budgets.clone();
        budgets.timezone = self.running.budgets.timezone;
        let seeds = Catalog::from_config(&budgets, &base, &next.campaign_overrides).settings();
        match self.campaigns.reconfigure(base, seeds).await {
            Ok(()) => tracing::info!("config reloaded"),
            Err(e) => tracing::warn!(
                error = %e,
                "config reload incomplete: the campaign settings store did not answer, it is tried again on the next sighup"
            ),
        }
    }
}

/// The settings, as config names, that differ between `running` and
/// `next` and cannot change while the process runs.
pub fn needs_restart(running: &Settings, next: &Settings) -> Vec<&'static str> {
    let mut fixed = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            fixed.push(name);
        }
    };
    check("listen", running.listen == next.listen);
    check("admin_listen", running.admin_listen == next.admin_listen);
    check("model", running.model == next.model);
    check(
        "model_history.keep",
        running.model_history_keep == next.model_history_keep,
    );
    check("data_dir", running.data_dir == next.data_dir);
    check(
        "ledger.backend",
        running.ledger_backend == next.ledger_backend,
    );
    check(
        "ledger.sweep_interval_secs",
        running.sweep_interval == next.sweep_interval,
    );
    check(
        "sessions",
        running.session_backend == next.session_backend
            && running.idle_ttl == next.idle_ttl
            && running.max_sessions == next.max_sessions
            && running.session_redis == next.session_redis,
    );
    check("redis", running.redis == next.redis);
    check("log", running.log == next.log);
    check("server", running.server == next.server);
    check("limits", running.limits == next.limits);
    check("tls", running.tls == next.tls);
    check("http.cors_allow_origins", running.cors == next.cors);
    check(
        "admin.tokens",
        running.admin_tokens.list() == next.admin_tokens.list(),
    );
    check(
        "voucher",
        running.voucher_secret == next.voucher_secret
            && running.min_order_cents == next.min_order_cents,
    );
    check("policy.offer_ttl_secs", running.offer_ttl == next.offer_ttl);
    check(
        "budget.timezone",
        running.budgets.timezone == next.budgets.timezone,
    );
    check(
        "budget.default_campaign",
        running.default_campaign == next.default_campaign,
    );
    fixed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn settings(toml: &str) -> Settings {
        let raw: RawConfig = toml::from_str(toml).expect("parses");
        raw.validate().expect("valid")
    }

    #[test]
    fn only_the_fixed_settings_that_changed_are_named() {
        let a = settings("listen = \"127.0.0.1:1\"\n[policy]\nmin_intent_cents = 100\n");
        let b = settings("listen = \"127.0.0.1:2\"\n[policy]\nmin_intent_cents = 900\n");
        assert_eq!(needs_restart(&a, &b), vec!["listen"]);
        assert!(needs_restart(&a, &a).is_empty());
    }
}
