//! The pacing controllers' state across restarts, kept next to the ledger.

use crate::config::{LedgerBackend, Settings};
use crate::engine::Engine;
use crate::files::{atomic_write, Access};

/// The pacing controllers' state across restarts (next to the ledger).
pub const PACING_FILE: &str = "pacing.json";

/// Where the pacing state is kept: with a durable ledger (SQLite, or Redis:
/// each replica paces its own share and keeps its own file). A memory
/// ledger forgets the day's spend on restart, and a controller restored
/// against a spend of zero would be steering the wrong day.
pub fn pacing_file(settings: &Settings) -> Option<std::path::PathBuf> {
    (settings.ledger_backend != LedgerBackend::Memory).then(|| settings.data_dir.join(PACING_FILE))
}

/// Restores the pacing state from `path` if it is there. Pacing steers
/// spend within the budget, it never decides whether money may be spent
/// (the ledger does), so an unreadable file is logged and ignored.
pub fn load_pacing(engine: &Engine, path: &std::path::Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the pacing state, pacing starts afresh");
            return;
        }
    };
    match serde_json::from_str::<crate::domain::pacing::SavedPacing>(&text) {
        Ok(s) if s.format == crate::domain::pacing::SAVED_FORMAT => {
            let n = engine.restore_pacing(&s);
            tracing::info!(path = %path.display(), restored = n, "pacing state restored");
        }
        Ok(s) => {
            tracing::warn!(path = %path.display(), format = %s.format, "unknown pacing state format, pacing starts afresh")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "bad pacing state, pacing starts afresh")
        }
    }
}

/// Writes the pacing state to `path` atomically.
pub fn save_pacing(
    saved: &crate::domain::pacing::SavedPacing,
    path: &std::path::Path,
) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    atomic_write(path, &bytes, Access::Default)
}
