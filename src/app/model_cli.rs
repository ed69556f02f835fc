//! `nudge model`: the model history from the command line (list, publish,
//! roll back, pull the live model), against the store the config names:
//! `models.sqlite3` in the data directory, or Redis for replicas. A
//! running service picks a change up within seconds (it polls the live
//! entry).

use crate::config::{LedgerBackend, Settings};
use crate::engine::models::{roll_back, validate, ModelServiceError};
use crate::models::{live_of, sha256_hex, ModelEntry, ModelRegistry, Publish, RegistryError};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Who the history names for a change made from the command line.
pub const CLI_ACTOR: &str = "cli";

#[derive(Debug, thiserror::Error)]
pub enum ModelCliError {
    #[error(transparent)]
    Model(#[from] ModelServiceError),
    #[error("the memory ledger keeps the model history inside the running service: use its admin API (/api/v1/models)")]
    MemoryBackend,
    #[error("{0}")]
    Setup(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the live model is {live:?} but this model was trained from {parent:?}: the live model changed since it was trained (a rollback or another publish); retrain, or pass --force")]
    StaleParent { live: String, parent: String },
}

impl From<RegistryError> for ModelCliError {
    fn from(e: RegistryError) -> Self {
        ModelCliError::Model(e.into())
    }
}

/// The history the config names (the service's own).
pub fn registry(settings: &Settings) -> Result<Arc<dyn ModelRegistry>, ModelCliError> {
    if settings.ledger_backend == LedgerBackend::Memory {
        return Err(ModelCliError::MemoryBackend);
    }
    crate::app::model_registry(settings).map_err(|e| ModelCliError::Setup(e.to_string()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The history as a table, newest first.
pub async fn list(registry: &dyn ModelRegistry) -> Result<String, ModelCliError> {
    let history = registry.history().await?;
    if history.is_empty() {
        return Ok("no model published yet\n".into());
    }
    let live = live_of(&history).map(|e| e.seq);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>5}  {:<4}  {:<28}  {:<20}  {:<10}  reason",
        "seq", "", "version", "published", "by"
    );
    for e in &history {
        let state = if Some(e.seq) == live {
            "live"
        } else if e.rolled_back.is_some() {
            "back"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:>5}  {:<4}  {:<28}  {:<20}  {:<10}  {}",
            e.seq,
            state,
            e.version,
            crate::campaigns::rfc3339(e.published_at_ms),
            e.published_by,
            e.reason
        );
        if let Some(r) = &e.rolled_back {
            let _ = writeln!(
                out,
                "{:>5}  {:<4}  rolled back {} by {}: {}",
                "",
                "",
                crate::campaigns::rfc3339(r.at_ms),
                r.by,
                r.reason
            );
        }
    }
    Ok(out)
}

/// The `parent_version` a retrained model names (its lineage).
fn parent_version(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("training")?
        .get("parent_version")?
        .as_str()
        .map(str::to_owned)
}

/// Validates and publishes a model file. A model trained from another
/// model than the live one is refused unless `force`: publishing it would
/// silently undo a rollback or another publish.
pub async fn publish(
    registry: &dyn ModelRegistry,
    keep_previous: usize,
    file: &Path,
    reason: &str,
    force: bool,
) -> Result<ModelEntry, ModelCliError> {
    let text = std::fs::read_to_string(file).map_err(|source| ModelCliError::Io {
        path: file.display().to_string(),
        source,
    })?;
    let model = validate(&text, &file.display().to_string())?;
    if !force {
        if let (Some(parent), Some(live)) = (parent_version(&text), registry.live().await?) {
            if parent != live.version && live.sha256 != sha256_hex(text.as_bytes()) {
                return Err(ModelCliError::StaleParent {
                    live: live.version,
                    parent,
                });
            }
        }
    }
    Ok(registry
        .publish(
            Publish {
                body: text,
                version: model.version().to_owned(),
                at_ms: now_ms(),
                by: CLI_ACTOR.into(),
                reason: reason.to_owned(),
            },
            keep_previous + 1,
        )
        .await?)
}

/// Takes the live model out of service; answers (now live, rolled back).
pub async fn rollback(
    registry: &dyn ModelRegistry,
    reason: &str,
) -> Result<(ModelEntry, ModelEntry), ModelCliError> {
    let done = roll_back(registry, CLI_ACTOR, reason, now_ms()).await?;
    Ok((done.live, done.rolled_back))
}

/// Writes the live model's file to `out` (atomically), for example as
/// `nudge-train retrain --current`.
pub async fn pull(registry: &dyn ModelRegistry, out: &Path) -> Result<ModelEntry, ModelCliError> {
    let live = registry.live().await?.ok_or(RegistryError::Empty)?;
    let body = registry
        .body(live.seq)
        .await?
        .ok_or(RegistryError::Conflict(live.seq))?;
    crate::files::atomic_write(out, body.as_bytes(), crate::files::Access::Default).map_err(
        |source| ModelCliError::Io {
            path: out.display().to_string(),
            source,
        },
    )?;
    Ok(live)
}
