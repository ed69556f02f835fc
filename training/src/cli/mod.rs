//! One file per `nudge-train` command: its flags (a clap `Args` struct) and
//! its `run`, which reads the inputs, calls the library and writes or prints
//! the results; this file holds what several commands share.

pub mod bench;
pub mod cv;
pub mod evaluate;
pub mod fit;
pub mod folds;
pub mod generate;
pub mod predict;
pub mod replay;
pub mod retrain;
pub mod score;
pub mod uplift;

use anyhow::{bail, Context as _, Result};
use clap::Args;
use nudge_train::logs::LogSummary;
use nudge_train::spec;
use std::path::{Path, PathBuf};

/// The command as typed, for the lineage of written files.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// A CSV read through its spec and dealt into `k` stratified folds
/// (`cv` and `folds`).
#[derive(Args, Debug)]
pub struct CsvFolds {
    /// Feature spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// CSV file.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl CsvFolds {
    /// The table, the CSV bytes and the fold of every row.
    pub fn load(&self) -> Result<(spec::Table, Vec<u8>, Vec<usize>)> {
        let (_, t, bytes, _) = load_csv(&self.spec, &self.data, true)?;
        if self.k < 2 {
            bail!("--k must be >= 2");
        }
        let fold = nudge_train::cv::stratified_folds(&t.y, self.k, self.seed);
        Ok((t, bytes, fold))
    }
}

/// Reads a CSV through a feature spec: the spec, the table, and the data
/// and spec bytes (for the lineage hashes).
pub fn load_csv(
    spec_path: &Path,
    data_path: &Path,
    for_fit: bool,
) -> Result<(spec::Spec, spec::Table, Vec<u8>, Vec<u8>)> {
    let (s, spec_bytes) = spec::Spec::load(spec_path)?;
    let bytes =
        std::fs::read(data_path).with_context(|| format!("read {}", data_path.display()))?;
    let t = spec::read_csv(&bytes, &s, for_fit)
        .with_context(|| format!("{} with spec {}", data_path.display(), spec_path.display()))?;
    Ok((s, t, bytes, spec_bytes))
}

/// Warns when logged decisions replay to other features than were logged
/// (for logs the service wrote this must not happen).
pub fn warn_skew(summary: &LogSummary) {
    if summary.skewed_decisions > 0 {
        eprintln!(
            "warning: {} decisions replay to features different from the logged ones, e.g. {:?}",
            summary.skewed_decisions,
            summary.skew_examples.first()
        );
    }
}
