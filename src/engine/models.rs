//! The model in service and its history ([`crate::models`]): a model is
//! validated before it is published, published before it is served, and
//! swapped in whole (in-flight Decides finish on the model they took).
//! Every replica polls the history's live entry ([`ModelService::sync`]),
//! so a model published once (by a changed file, the command line or a
//! rollback through the admin API) is served everywhere within seconds.

use crate::domain::model::{Model, ModelFile};
use crate::engine::Engine;
use crate::models::{sha256_hex, ModelEntry, ModelRegistry, Publish, RegistryError, Rollback};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, thiserror::Error)]
pub enum ModelServiceError {
    #[error("model refused: {0}")]
    Invalid(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// Whether a model put in service here reached the history.
#[derive(Debug)]
pub enum Adopted {
    Published(ModelEntry),
    /// The history already holds these bytes (this service wrote them
    /// from the history, or an older model was copied back): nothing
    /// changes; a model leaves the history's order only by a publish.
    Known(ModelEntry),
    /// Served here only: the history did not answer (replicas keep theirs
    /// until it is published again).
    ServedHere(RegistryError),
}

pub struct ModelService {
    engine: Arc<Engine>,
    registry: Arc<dyn ModelRegistry>,
    /// Entries kept in service, the live one included.
    in_service: usize,
    /// The history entry served (0: none yet).
    live_seq: AtomicU64,
    /// SHA-256 of the served model file's text.
    served_sha: Mutex<String>,
    /// The last failure logged by `sync` (each distinct one once).
    failure: Mutex<Option<String>>,
    /// One change at a time (publish, rollback, sync): rare, off the
    /// request path, which only loads the engine's model.
    changing: tokio::sync::Mutex<()>,
    /// The model file, rewritten with a model that comes from the history
    /// (a rollback, a publish elsewhere), so that the file, a restart and
    /// a retrain's `--current` agree with what is served.
    file: Option<std::path::PathBuf>,
}

/// Parses and validates a model file's text.
pub fn validate(text: &str, origin: &str) -> Result<Model, ModelServiceError> {
    ModelFile::parse(text, origin)
        .and_then(|f| f.compile())
        .map_err(|e| ModelServiceError::Invalid(e.to_string()))
}

impl ModelService {
    /// `served_text`: the text of the model the engine serves now.
    pub fn new(
        engine: Arc<Engine>,
        registry: Arc<dyn ModelRegistry>,
        keep_previous: usize,
        served_text: &str,
    ) -> Self {
        ModelService {
            engine,
            registry,
            in_service: keep_previous + 1,
            live_seq: AtomicU64::new(0),
            served_sha: Mutex::new(sha256_hex(served_text.as_bytes())),
            failure: Mutex::new(None),
            changing: tokio::sync::Mutex::new(()),
            file: None,
        }
    }

    /// Keeps `path` (the served model file) equal to the live model.
    pub fn with_file(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.file = path;
        self
    }

    /// Writes `text` over the model file when it differs (atomically); a
    /// read-only file is logged, the model stays served.
    async fn mirror_to_file(&self, text: &str) {
        let Some(path) = self.file.clone() else {
            return;
        };
        let text = text.to_owned();
        let written = tokio::task::spawn_blocking(move || {
            let same = std::fs::read(&path).is_ok_and(|old| old == text.as_bytes());
            if same {
                return Ok(false);
            }
            crate::files::atomic_write(&path, text.as_bytes(), crate::files::Access::Default)
                .map(|()| true)
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match written {
            Ok(true) => tracing::info!("model file rewritten with the live model"),
            Ok(false) => {}
            Err(e) => self.note_failure(format!(
                "cannot rewrite the model file with the live model ({e}); it is served anyway, and a restart serves it too"
            )),
        }
    }

    /// At start: a model file the history has never held is published (a
    /// new deployment's model); one it holds is stale or equal, and the
    /// history's live model is served instead (a replica started from an
    /// old image, or after a rollback). A history that does not answer
    /// leaves the file's model in service (logged).
    pub async fn start(&self, served_text: &str, by: &str) {
        let _one = self.changing.lock().await;
        let sha = sha256_hex(served_text.as_bytes());
        match self.registry.history().await {
            Ok(h) if !h.iter().any(|e| e.sha256 == sha) => {
                let version = self.engine.model().version().to_owned();
                let p = Publish {
                    body: served_text.to_owned(),
                    version,
                    at_ms: self.engine.now_ms(),
                    by: by.to_owned(),
                    reason: "model file at start".into(),
                };
                match self.registry.publish(p, self.in_service).await {
                    Ok(e) => {
                        tracing::info!(seq = e.seq, version = %e.version, "model published to the model history");
                        self.live_seq.store(e.seq, Ordering::Release);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "model history unavailable: the model file is served until it answers")
                    }
                }
            }
            Ok(_) => self.sync_locked().await,
            Err(e) => {
                tracing::warn!(error = %e, "model history unavailable: the model file is served until it answers")
            }
        }
    }

    /// Serves the history's live model if it changed. Called every second
    /// by the reload task: one small read.
    pub async fn sync(&self) {
        let _one = self.changing.lock().await;
        self.sync_locked().await;
    }

    async fn sync_locked(&self) {
        let live = match self.registry.live().await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => return self.note_failure(e.to_string()),
        };
        if live.seq == self.live_seq.load(Ordering::Acquire) {
            return;
        }
        if self.served_sha() == live.sha256 {
            self.live_seq.store(live.seq, Ordering::Release);
            return;
        }
        let body = match self.registry.body(live.seq).await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => return self.note_failure(e.to_string()),
        };
        match validate(&body, &format!("model history seq {}", live.seq)) {
            Ok(model) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.swap(model, &body, live.seq, &live.published_by);
                self.mirror_to_file(&body).await;
            }
            Err(e) => self.note_failure(e.to_string()),
        }
    }

    fn note_failure(&self, e: String) {
        let mut last = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(e.as_str()) {
            tracing::warn!(error = %e, "model history: the model in service stays");
            *last = Some(e);
        }
    }

    fn served_sha(&self) -> String {
        self.served_sha
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn swap(&self, model: Model, text: &str, seq: u64, by: &str) {
        let sha = sha256_hex(text.as_bytes());
        if sha == self.served_sha() {
            self.live_seq.store(seq, Ordering::Release);
            return;
        }
        let old = self.engine.model();
        let model = Arc::new(model);
        self.engine.set_model(model.clone());
        *self.served_sha.lock().unwrap_or_else(|e| e.into_inner()) = sha;
        self.live_seq.store(seq, Ordering::Release);
        record_model_swap(old.version(), model.version());
        tracing::info!(
            old_version = old.version(),
            new_version = model.version(),
            seq,
            by,
            "model in service changed"
        );
    }

    /// Validates, publishes and serves a model file's text. A history that
    /// does not answer is an error: nothing changes.
    pub async fn publish(
        &self,
        text: String,
        by: &str,
        reason: &str,
    ) -> Result<ModelEntry, ModelServiceError> {
        let model = validate(&text, "model")?;
        let _one = self.changing.lock().await;
        let entry = self
            .registry
            .publish(
                Publish {
                    body: text.clone(),
                    version: model.version().to_owned(),
                    at_ms: self.engine.now_ms(),
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                },
                self.in_service,
            )
            .await?;
        self.swap(model, &text, entry.seq, by);
        self.mirror_to_file(&text).await;
        Ok(entry)
    }

    /// A model file changed on disk: validated, served here, and published
    /// for the replicas (served here alone when the history does not
    /// answer: scoring does not wait for a store). A file whose bytes the
    /// history already holds changes nothing: it is this service's own
    /// copy of a history model (the file follows the live model), or an
    /// old model copied back, which `nudge model publish` serves again.
    pub async fn adopt_file(&self, text: String) -> Result<Adopted, ModelServiceError> {
        let model = validate(&text, "model file")?;
        let _one = self.changing.lock().await;
        let sha = sha256_hex(text.as_bytes());
        match self.registry.history().await {
            Ok(h) => {
                if let Some(known) = h.into_iter().find(|e| e.sha256 == sha) {
                    return Ok(Adopted::Known(known));
                }
            }
            Err(e) => {
                self.swap(model, &text, self.live_seq.load(Ordering::Acquire), "file");
                return Ok(Adopted::ServedHere(e));
            }
        }
        let p = Publish {
            body: text.clone(),
            version: model.version().to_owned(),
            at_ms: self.engine.now_ms(),
            by: "file".into(),
            reason: "model file changed".into(),
        };
        match self.registry.publish(p, self.in_service).await {
            Ok(entry) => {
                self.swap(model, &text, entry.seq, "file");
                Ok(Adopted::Published(entry))
            }
            Err(e) => {
                // The served seq stays, so that `sync` does not put the
                // history's (older) live model back.
                self.swap(model, &text, self.live_seq.load(Ordering::Acquire), "file");
                Ok(Adopted::ServedHere(e))
            }
        }
    }

    /// Takes the live model out of service and serves the one before it.
    /// The earlier model is validated first: one this build cannot serve
    /// is refused and nothing changes. Answers (now live, rolled back).
    pub async fn rollback(
        &self,
        by: &str,
        reason: &str,
    ) -> Result<(ModelEntry, ModelEntry), ModelServiceError> {
        let _one = self.changing.lock().await;
        let done = roll_back(&*self.registry, by, reason, self.engine.now_ms()).await;
        match done {
            Ok(done) => {
                self.swap(done.model, &done.body, done.live.seq, by);
                self.mirror_to_file(&done.body).await;
                Ok((done.live, done.rolled_back))
            }
            Err(e) => {
                if matches!(e, ModelServiceError::Registry(RegistryError::Conflict(_))) {
                    // Changed meanwhile: serve what is live now.
                    self.sync_locked().await;
                }
                Err(e)
            }
        }
    }

    /// Every kept entry, newest first.
    pub async fn history(&self) -> Result<Vec<ModelEntry>, RegistryError> {
        self.registry.history().await
    }

    /// The history entry served here (`None`: not published yet).
    pub fn live_seq(&self) -> Option<u64> {
        Some(self.live_seq.load(Ordering::Acquire)).filter(|s| *s != 0)
    }
}

/// A rollback done: the entry now live with its validated model and text,
/// and the entry taken out of service.
pub struct RolledBackTo {
    pub live: ModelEntry,
    pub model: Model,
    pub body: String,
    pub rolled_back: ModelEntry,
}

/// Takes the live model out of the history's service. The earlier model
/// is read and validated first: one this build cannot serve is refused
/// and nothing changes. Used by the service and by `nudge model rollback`.
pub async fn roll_back(
    registry: &dyn ModelRegistry,
    by: &str,
    reason: &str,
    at_ms: i64,
) -> Result<RolledBackTo, ModelServiceError> {
    let history = registry.history().await?;
    let live = crate::models::live_of(&history)
        .ok_or(RegistryError::Empty)?
        .clone();
    let earlier = crate::models::earlier_of(&history, live.seq)
        .ok_or(RegistryError::NoEarlier(history.len() - 1))?
        .clone();
    let body = registry
        .body(earlier.seq)
        .await?
        .ok_or(RegistryError::Conflict(live.seq))?;
    let model = validate(&body, &format!("model history seq {}", earlier.seq))?;
    let now_live = registry
        .rollback(Rollback {
            expected: live.seq,
            at_ms,
            by: by.to_owned(),
            reason: reason.to_owned(),
        })
        .await?;
    if now_live.seq != earlier.seq {
        return Err(RegistryError::Conflict(now_live.seq).into());
    }
    let mut rolled_back = live;
    rolled_back.rolled_back = Some(crate::models::RolledBack {
        at_ms,
        by: by.to_owned(),
        reason: reason.to_owned(),
    });
    Ok(RolledBackTo {
        live: now_live,
        model,
        body,
        rolled_back,
    })
}

/// Moves the `nudge_model_info` gauge to the model now in service: the old
/// version's series drops to 0, the live one is 1.
fn record_model_swap(old_version: &str, new_version: &str) {
    if old_version != new_version {
        metrics::gauge!("nudge_model_info", "version" => old_version.to_owned()).set(0.0);
    }
    metrics::gauge!("nudge_model_info", "version" => new_version.to_owned()).set(1.0);
}
