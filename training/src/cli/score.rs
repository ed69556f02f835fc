//! Data read through a model file with the service's own scorer, shared by
//! `evaluate` and `predict` so both score exactly alike.

use super::load_csv;
use anyhow::{bail, Result};
use clap::Args;
use nudge::domain::model::{Input, ModelFile};
use nudge_train::logs::{self, MissingOutcome};
use nudge_train::{data, tabular};
use std::path::PathBuf;

/// The model and the data to score (CSV with --spec, else service logs).
#[derive(Args, Debug)]
pub struct ScoreInput {
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    pub missing_outcome: MissingOutcome,
}

/// Probabilities and labels of a data set under a model file.
pub struct Scored {
    pub model: ModelFile,
    pub p: Vec<f64>,
    pub y: Vec<bool>,
    /// Logs: `(session_id, at_ms)` per row.
    pub keys: Option<Vec<(String, i64)>>,
    pub data_sha256: String,
    pub log_summary: Option<logs::LogSummary>,
}

/// Scores `input.data` with `input.model`; the model's input kind must
/// match the data (client model for a CSV, session model for logs).
pub fn score(input: &ScoreInput) -> Result<Scored> {
    let file = ModelFile::load(&input.model)?;
    let model = file.compile()?;
    match input.spec.as_deref() {
        Some(sp) => {
            if model.input() != Input::Client {
                bail!(
                    "model {} has input \"session\"; a CSV with a spec needs a client model (input \"client\")",
                    model.version()
                );
            }
            let (_, t, bytes, _) = load_csv(sp, &input.data, false)?;
            let rows: Vec<usize> = (0..t.len()).collect();
            let p = tabular::score_table(&model, &t, &rows)?;
            Ok(Scored {
                model: file,
                p,
                y: t.y,
                keys: None,
                data_sha256: data::sha256_hex(&bytes),
                log_summary: None,
            })
        }
        None => {
            if model.input() != Input::Session {
                bail!(
                    "model {} has input \"client\": pass --spec to read --data as a CSV",
                    model.version()
                );
            }
            let (rows, summary, sha256) = logs::read(&input.data, input.missing_outcome)?;
            let empty = nudge::domain::model::ClientFeatures::default();
            let p = rows
                .iter()
                .map(|r| {
                    model
                        .score(&r.row.features, &empty)
                        .map(|s| s.probability)
                        .map_err(|e| {
                            anyhow::anyhow!("session {} at {}: {e}", r.session_id, r.at_ms)
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Scored {
                model: file,
                p,
                y: rows.iter().map(|r| r.row.converted).collect(),
                keys: Some(
                    rows.iter()
                        .map(|r| (r.session_id.clone(), r.at_ms))
                        .collect(),
                ),
                data_sha256: sha256,
                log_summary: Some(summary),
            })
        }
    }
}
