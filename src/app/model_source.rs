//! Where the served model comes from: the configured file, else
//! `models/default.json`, else the copy embedded in the binary.

use crate::config::{Settings, DEFAULT_MODEL};
use crate::domain::model::{Model, ModelError, ModelFile};

/// The default model, embedded at build time so `nudge serve` works from any
/// directory with zero set-up.
pub const EMBEDDED_DEFAULT_MODEL: &str = include_str!("../../models/default.json");

/// Loads the configured model; with no model configured, `models/default.json`
/// if present, else the embedded copy. Returns the model and where it came from.
pub fn load_model(settings: &Settings) -> Result<(Model, String), ModelError> {
    if let Some(path) = &settings.model {
        return Ok((Model::load(path)?, path.display().to_string()));
    }
    let default = std::path::Path::new(DEFAULT_MODEL);
    if default.exists() {
        return Ok((Model::load(default)?, DEFAULT_MODEL.to_owned()));
    }
    let file: ModelFile =
        serde_json::from_str(EMBEDDED_DEFAULT_MODEL).map_err(|source| ModelError::Parse {
            path: "<embedded>".into(),
            source,
        })?;
    Ok((file.compile()?, "<embedded default>".to_owned()))
}

/// The model file `load_model` reads, when it is a file (a reload watches
/// it); `None` for the embedded copy, which cannot change.
pub fn model_file(settings: &Settings) -> Option<std::path::PathBuf> {
    if let Some(path) = &settings.model {
        return Some(path.clone());
    }
    let default = std::path::Path::new(DEFAULT_MODEL);
    default.exists().then(|| default.to_path_buf())
}
