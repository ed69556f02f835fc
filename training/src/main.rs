//! `nudge-train`: generate sessions, fit, cross-validate, evaluate and
//! predict with the intent model.
//!
//! ```text
//! nudge-train generate --sessions 40000 --seed 42 --out sessions.jsonl [--format log] [--world calibrated]
//! nudge-train fit --generate 40000 --gen-seed 42 --seed 7 --alpha 1 --out models/default.json
//! nudge-train fit --logs LOG_DIR --out model.json [--report DIR]
//! nudge-train fit --spec training/specs/uci_online_shoppers.toml \
//!     --data ../shared/data/online_shoppers_intention.csv --out out/uci_online_shoppers.json --report out/report/
//! nudge-train cv --spec S --data D --k 5 --seed 42 --alphas 1
//! nudge-train folds --spec S --data D --k 5 --seed 42 --out folds.csv
//! nudge-train evaluate --model M --data D [--spec S] [--json] [--report DIR]
//! nudge-train predict --model M --data D [--spec S] --out preds.csv
//! nudge-train uplift --logs LOG_DIR --model M --out OUT [--config nudge.toml]
//! nudge-train replay --logs LOG_DIR --model M [--config nudge.toml] [--json]
//! nudge-train retrain --logs LOG_DIR --current M --out OUT [--config nudge.toml] [--json]
//! nudge-train bench [--spec S --data D] [--rows 1000000]
//! ```
//!
//! `--spec` means `--data` is a CSV read through that spec; without it,
//! `evaluate`/`predict` read `--data` as service logs (a JSON-lines file or
//! a directory of them) and `fit --data` reads generated sessions.
//! Every output file is written atomically (temporary file + rename), after
//! all checks passed: an error leaves nothing half-written.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cli::{bench, cv, evaluate, fit, folds, generate, predict, replay, retrain, uplift};

#[derive(Parser, Debug)]
#[command(name = "nudge-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Learn the per-tier voucher response (two-model uplift) from
    /// randomised log decisions into a model file, or evaluate a CSV
    /// experiment through an uplift spec.
    Uplift(Box<uplift::UpliftArgs>),
    /// Write generated sessions as JSON lines.
    Generate(generate::GenerateArgs),
    /// Fit the intent model and write a nudge-model/1 file.
    Fit(Box<fit::FitArgs>),
    /// Stratified k-fold cross-validation of a CSV spec (all rows).
    Cv(cv::CvArgs),
    /// Write the stratified fold of every CSV row (`row,fold`).
    Folds(folds::FoldsArgs),
    /// Score data with a model file (the service's scorer) and report metrics.
    Evaluate(evaluate::EvalArgs),
    /// Write `row,probability` (logs: `row,session_id,at_ms,probability`).
    Predict(predict::PredictArgs),
    /// Off-policy evaluation (IPS, SNIPS, doubly robust) of a candidate
    /// model + policy on logged decisions.
    Replay(replay::ReplayArgs),
    /// The nightly loop: fit intent and response from the logs, compare
    /// with the serving model off-policy, write the better one.
    Retrain(Box<retrain::RetrainArgs>),
    /// Training speed: UCI fit time per fold, and a fit on 1M generated rows.
    Bench(bench::BenchArgs),
}

/// Exit status of `retrain` when the serving model stays (not an error:
/// nothing was written). Errors exit 1, bad arguments 2.
pub const EXIT_KEPT: u8 = 3;

fn main() -> Result<std::process::ExitCode> {
    let done = match Cli::parse().command {
        Command::Retrain(a) => {
            let promoted = retrain::run(*a)?;
            return Ok(if promoted {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(EXIT_KEPT)
            });
        }
        Command::Uplift(a) => uplift::run(&a),
        Command::Generate(a) => generate::run(a),
        Command::Fit(a) => fit::run(*a),
        Command::Cv(a) => cv::run(a),
        Command::Folds(a) => folds::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Replay(a) => replay::run(a),
        Command::Bench(a) => bench::run(a),
    };
    done.map(|()| std::process::ExitCode::SUCCESS)
}
