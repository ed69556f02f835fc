//! Changing campaigns while the service runs: a change is validated,
//! committed to the settings store with its audit entry, given to the
//! ledger (caps), then swapped into the engine's catalog. Every replica
//! (and this one, should a step after the commit fail) picks stored
//! changes up on its next [`CampaignService::refresh`], run every second.

use crate::campaigns::store::{AuditEntry, Commit, CommitError, SettingsStore, Stored};
use crate::campaigns::{CampaignError, CampaignPatch, CampaignSettings, Catalog, NewCampaign};
use crate::engine::Engine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Attempts of a change that meets a concurrent one, before answering
/// `Conflict`.
const COMMIT_TRIES: usize = 5;

/// How often stored changes are looked for: a change made on another
/// replica is in force here within this (plus one store round trip).
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Who asks for a change: the token's name (never its value).
pub const CONFIG_ACTOR: &str = "config";

pub struct CampaignService {
    engine: Arc<Engine>,
    store: Arc<dyn SettingsStore>,
    /// The store version whose changes are all in force here (`u64::MAX`:
    /// none yet).
    applied: AtomicU64,
    /// One change at a time from this replica (the store orders replicas).
    write: tokio::sync::Mutex<()>,
    /// The config's campaigns are reconciled with the store.
    seeded: std::sync::atomic::AtomicBool,
}

impl CampaignService {
    /// Reconciles the config's campaigns with the stored ones (a campaign
    /// new to the store, or whose config changed since it was last
    /// applied, takes the config's settings; otherwise what was changed at
    /// run time stays) and puts the result in force. A store that does
    /// not answer leaves the config's settings in force (logged) and is
    /// tried again by every [`Self::refresh`].
    pub async fn start(engine: Arc<Engine>, store: Arc<dyn SettingsStore>) -> Self {
        let svc = CampaignService {
            engine,
            store,
            applied: AtomicU64::new(u64::MAX),
            write: tokio::sync::Mutex::new(()),
            seeded: std::sync::atomic::AtomicBool::new(false),
        };
        if let Err(e) = svc.refresh().await {
            tracing::warn!(error = %e, "campaign settings store unavailable: the config's campaign settings are in force until it answers");
        }
        svc
    }

    async fn seed(&self) -> Result<(), CampaignError> {
        let seeds = self.engine.catalog.load().settings();
        self.seed_with(seeds).await?;
        self.seeded.store(true, Ordering::Release);
        Ok(())
    }

    /// Commits each seed the store does not hold as its campaign's config
    /// seed yet (audited as actor `config`); a campaign whose seed is
    /// unchanged keeps what was changed at run time.
    async fn seed_with(&self, seeds: Vec<CampaignSettings>) -> Result<(), CampaignError> {
        let svc = self;
        let (stored, _) = svc.store.load().await?;
        let by_id: HashMap<&str, &Stored> =
            stored.iter().map(|s| (s.settings.id.as_str(), s)).collect();
        for seed in seeds {
            let seed_json = seed_json(&seed);
            let current = by_id.get(seed.id.as_str()).copied();
            if current.is_some_and(|c| c.seed.as_deref() == Some(seed_json.as_str())) {
                continue;
            }
            let now_ms = svc.engine.now_ms();
            let mut settings = seed.clone();
            settings.revision = current.map_or(1, |c| c.settings.revision + 1);
            settings.updated_ms = now_ms;
            let before = current.map(|c| c.settings.clone());
            let changes = settings.diff(before.as_ref());
            let commit = Commit {
                expected: current.map(|c| c.settings.revision),
                stored: Stored {
                    settings: settings.clone(),
                    seed: Some(seed_json),
                },
                audit: AuditEntry {
                    seq: 0,
                    at_ms: now_ms,
                    actor: CONFIG_ACTOR.to_owned(),
                    campaign: settings.id.clone(),
                    action: "config".to_owned(),
                    before,
                    after: settings,
                    changes,
                    reason: "set by the config file".to_owned(),
                },
            };
            match svc.store.commit(commit).await {
                Ok(_) | Err(CommitError::Stale) => {} // another replica seeded it
                Err(CommitError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Puts a reloaded config's policy sections in force: `base` (policy,
    /// experiment, pacing) replaces the engine's, the catalog is rebuilt on
    /// it, and `seeds` (the config's campaigns built on `base`) are
    /// reconciled with the store like at start, so that a campaign whose
    /// config values changed takes them (caps reach the ledger with a new
    /// revision) while one changed only at run time keeps its values.
    ///
    /// Pacers keep their state; with a changed `[pacing]` each campaign
    /// gets a pacer on the new settings that starts from the old one's
    /// saved lambda and integral.
    pub async fn reconfigure(
        &self,
        base: crate::campaigns::Base,
        seeds: Vec<CampaignSettings>,
    ) -> Result<(), CampaignError> {
        let _guard = self.write.lock().await;
        let pacing_changed = self.engine.base.load().pacing != base.pacing;
        self.engine.base.store(Arc::new(base));
        let current = self.engine.catalog.load_full();
        let base = self.engine.base.load();
        let next = if pacing_changed {
            let next = Catalog::build(current.settings(), &base, None);
            let day = self.engine.budgets.day_of(self.engine.now_ms());
            for (id, c) in &next.campaigns {
                if let Some(old) = current.campaigns.get(id) {
                    c.pacer.restore(&old.pacer.save(&day), &day);
                }
            }
            next
        } else {
            Catalog::build(current.settings(), &base, Some(&current))
        };
        self.engine.catalog.store(Arc::new(next));
        self.seed_with(seeds).await?;
        self.seeded.store(true, Ordering::Release);
        self.apply_stored().await
    }

    /// Puts every stored change in force here if the store moved on: caps
    /// to the ledger first, then the engine's catalog. Cheap when nothing
    /// changed (one version read).
    pub async fn refresh(&self) -> Result<bool, CampaignError> {
        if !self.seeded.load(Ordering::Acquire) {
            let _guard = self.write.lock().await;
            if !self.seeded.load(Ordering::Acquire) {
                self.seed().await?;
            }
        }
        let version = self.store.version().await?;
        if version == self.applied.load(Ordering::Acquire) {
            return Ok(false);
        }
        let _guard = self.write.lock().await;
        self.apply_stored().await?;
        Ok(true)
    }

    async fn apply_stored(&self) -> Result<(), CampaignError> {
        let (stored, version) = self.store.load().await?;
        let current = self.engine.catalog.load_full();
        for s in &stored {
            let known = current.campaigns.get(&s.settings.id);
            if known.is_none_or(|c| c.settings.revision != s.settings.revision) {
                self.engine
                    .ledger
                    .set_budget(&s.settings.id, s.settings.budget(), s.settings.revision)
                    .await
                    .map_err(|e| CampaignError::Unavailable(e.to_string()))?;
            }
        }
        let mut settings: Vec<CampaignSettings> = stored.into_iter().map(|s| s.settings).collect();
        // A campaign the store does not hold yet (a failed seed) stays as
        // the config gives it.
        for c in current.campaigns.values() {
            if !settings.iter().any(|s| s.id == c.settings.id) {
                settings.push(c.settings.clone());
            }
        }
        for s in &settings {
            let was = current.campaigns.get(&s.id).map(|c| &c.settings);
            if was.is_some_and(|w| w.revision != s.revision) {
                announce(was, s);
            }
        }
        let next = Catalog::build(settings, &self.engine.base.load(), Some(&current));
        self.engine.catalog.store(Arc::new(next));
        self.applied.store(version, Ordering::Release);
        Ok(())
    }

    /// The campaigns in force here, by id.
    pub fn list(&self) -> Vec<CampaignSettings> {
        self.engine.catalog.load().settings()
    }

    pub fn get(&self, id: &str) -> Result<CampaignSettings, CampaignError> {
        self.engine
            .catalog
            .load()
            .campaigns
            .get(id)
            .map(|c| c.settings.clone())
            .ok_or_else(|| CampaignError::NotFound(id.to_owned()))
    }

    /// Applies `patch` to the stored campaign (retrying on top of a
    /// concurrent change) and puts it in force.
    pub async fn patch(
        &self,
        id: &str,
        patch: &CampaignPatch,
        actor: &str,
    ) -> Result<(CampaignSettings, AuditEntry), CampaignError> {
        let _guard = self.write.lock().await;
        for _ in 0..COMMIT_TRIES {
            let (stored, _) = self.store.load().await?;
            let current = stored
                .into_iter()
                .find(|s| s.settings.id == id)
                .ok_or_else(|| CampaignError::NotFound(id.to_owned()))?;
            let now_ms = self.engine.now_ms();
            let next = patch.apply(&current.settings, &self.engine.base.load(), now_ms)?;
            let commit = Commit {
                expected: Some(current.settings.revision),
                stored: Stored {
                    settings: next.clone(),
                    seed: current.seed.clone(),
                },
                audit: AuditEntry {
                    seq: 0,
                    at_ms: now_ms,
                    actor: actor.to_owned(),
                    campaign: id.to_owned(),
                    action: "update".to_owned(),
                    changes: next.diff(Some(&current.settings)),
                    before: Some(current.settings),
                    after: next.clone(),
                    reason: patch.reason.clone().unwrap_or_default(),
                },
            };
            match self.store.commit(commit).await {
                Ok(entry) => {
                    self.apply_stored().await?;
                    return Ok((next, entry));
                }
                Err(CommitError::Stale) => continue,
                Err(CommitError::Store(e)) => return Err(e),
            }
        }
        Err(CampaignError::Conflict(id.to_owned()))
    }

    /// Creates a campaign and puts it in force.
    pub async fn create(
        &self,
        new: &NewCampaign,
        actor: &str,
    ) -> Result<(CampaignSettings, AuditEntry), CampaignError> {
        let _guard = self.write.lock().await;
        let now_ms = self.engine.now_ms();
        let settings = new.settings(&self.engine.base.load(), now_ms)?;
        let commit = Commit {
            expected: None,
            stored: Stored {
                settings: settings.clone(),
                seed: None,
            },
            audit: AuditEntry {
                seq: 0,
                at_ms: now_ms,
                actor: actor.to_owned(),
                campaign: settings.id.clone(),
                action: "create".to_owned(),
                before: None,
                after: settings.clone(),
                changes: settings.diff(None),
                reason: new.rest.reason.clone().unwrap_or_default(),
            },
        };
        match self.store.commit(commit).await {
            Ok(entry) => {
                self.apply_stored().await?;
                Ok((settings, entry))
            }
            Err(CommitError::Stale) => Err(CampaignError::Exists(settings.id)),
            Err(CommitError::Store(e)) => Err(e),
        }
    }

    /// The audit trail, newest first.
    pub async fn audit(
        &self,
        campaign: Option<&str>,
        limit: usize,
        before_seq: Option<u64>,
    ) -> Result<Vec<AuditEntry>, CampaignError> {
        self.store.audit(campaign, limit, before_seq).await
    }

    /// Refreshes every `every` until `shutdown` flips; failures are logged
    /// once per interval with a count.
    pub async fn run_refresh(
        self: Arc<Self>,
        every: std::time::Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        static FAILED: crate::throttle::LogThrottle =
            crate::throttle::LogThrottle::new(std::time::Duration::from_secs(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.refresh().await {
                if let Some(count) = FAILED.hit() {
                    tracing::warn!(count, error = %e, "cannot read campaign settings: the settings in force stay");
                }
            }
        }
    }
}

/// The config's settings of a campaign as the store remembers them.
fn seed_json(seed: &CampaignSettings) -> String {
    let mut s = seed.clone();
    s.revision = 0;
    s.updated_ms = 0;
    serde_json::to_string(&s).unwrap_or_default()
}

/// One log line and the gauges for a change now in force.
fn announce(was: Option<&CampaignSettings>, now: &CampaignSettings) {
    let changes = now.diff(was);
    if was.is_some_and(|w| w.paused != now.paused) {
        if now.paused {
            tracing::warn!(campaign = %now.id, "campaign paused: no new vouchers");
        } else {
            tracing::info!(campaign = %now.id, "campaign resumed");
        }
    }
    if was.is_some_and(|w| w.same_values(now)) {
        // A new revision with the values in force (the stored revision
        // met at start): nothing for a reader of the log.
        tracing::debug!(campaign = %now.id, revision = now.revision, "campaign settings unchanged");
        return;
    }
    tracing::info!(campaign = %now.id, revision = now.revision, %changes, "campaign settings changed");
}
