//! `nudge-train retrain`: the nightly loop (fit a candidate from the logs,
//! compare it with the serving model off-policy, write the candidate only
//! when it is better), printing the library's report. Exit status 0: the
//! candidate was promoted; 3: the serving model stays and nothing was
//! written; 1: an error; 2: bad arguments.

use super::command_line;
use anyhow::Result;
use clap::Args;
use nudge_train::logs::MissingOutcome;
use nudge_train::retrain;
use nudge_train::uplift::{Interactions, Learner, Setting};
use std::path::PathBuf;

/// `nudge-train retrain` (see [`nudge_train::retrain`] and README
/// "Retraining: `nudge-train retrain`").
#[derive(Args, Debug)]
pub struct RetrainArgs {
    /// The service's decision logs with outcomes (file or directory).
    #[arg(long)]
    logs: PathBuf,
    /// The serving model file.
    #[arg(long)]
    current: PathBuf,
    /// Where the candidate is written (atomically) when it is promoted;
    /// left untouched when the serving model stays.
    #[arg(long)]
    out: PathBuf,
    /// Service config: the policy (margin, tiers, minimum order) the models
    /// are valued with. Default: the documented defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the evaluation split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of the randomised sessions kept for the comparison.
    #[arg(long, default_value_t = 0.3)]
    evaluation_share: f64,
    /// Intent model: at most this many sessions (drawn at random with
    /// --seed) from the non-evaluation sessions; 0: all.
    #[arg(long, default_value_t = retrain::DEFAULT_INTENT_SESSIONS)]
    intent_sessions: usize,
    /// Intent model: a fixed L2 penalty instead of CV over --alphas.
    #[arg(long)]
    intent_alpha: Option<f64>,
    /// Alpha grid of the cross-validations (intent and response).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    alphas: Vec<f64>,
    /// Response learners tried (default: both).
    #[arg(long, value_enum)]
    learner: Option<Learner>,
    /// The pooled learner's interaction sets tried.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "none,share,signals,share-signals,all"
    )]
    interactions: Vec<Interactions>,
    /// Standard errors the served lift stays below the estimate.
    #[arg(long, default_value_t = nudge::domain::model::DEFAULT_LOWER_BOUND_Z)]
    lower_bound_z: f64,
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    missing_outcome: MissingOutcome,
    /// Print the report as JSON (format nudge-retrain/1).
    #[arg(long)]
    json: bool,
}

/// Runs the loop and prints its report; `Ok(true)` when the candidate was
/// promoted (written to `--out`), `Ok(false)` when the serving model stays
/// (nothing written; `main` exits with status 3).
pub fn run(a: RetrainArgs) -> Result<bool> {
    let mut o = retrain::Options::new(a.logs, a.current, a.out);
    o.config = a.config;
    o.seed = a.seed;
    o.evaluation_share = a.evaluation_share;
    o.missing = a.missing_outcome;
    o.intent_sessions = (a.intent_sessions > 0).then_some(a.intent_sessions);
    o.command = command_line();
    o.intent.alphas = if a.intent_alpha.is_some() {
        Vec::new()
    } else {
        a.alphas.clone()
    };
    o.intent.alpha = a.intent_alpha.unwrap_or(1.0);
    o.uplift.alphas = Some(a.alphas);
    o.uplift.settings = Setting::grid(a.learner, &a.interactions);
    o.uplift.lower_bound_z = a.lower_bound_z;
    let report = retrain::run(&o)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(report.promoted)
}
