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
    let (model, source, _) = load_model_text(settings)?;
    Ok((model, source))
}

/// [`load_model`], with the text the model was read from (the model
/// history keeps it).
pub fn load_model_text(settings: &Settings) -> Result<(Model, String, String), ModelError> {
    let (text, source) = match model_file(settings) {
        Some(path) => (
            std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
                path: path.display().to_string(),
                source,
            })?,
            path.display().to_string(),
        ),
        None => (
            EMBEDDED_DEFAULT_MODEL.to_owned(),
            "<embedded default>".to_owned(),
        ),
    };
    let model = ModelFile::parse(&text, &source)?.compile()?;
    Ok((model, source, text))
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
