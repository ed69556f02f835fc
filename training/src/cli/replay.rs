//! `nudge-train replay`: off-policy evaluation of a candidate model or fixed
//! voucher on the service's logs, before it is deployed.

use anyhow::{bail, Result};
use clap::Args;
use nudge::domain::model::{Input, ModelFile};
use nudge_train::logs::MissingOutcome;
use nudge_train::replay;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("candidate").required(true).args(["model", "fixed_cents"])))]
pub struct ReplayArgs {
    /// Service logs (a JSON-lines file or a directory of rotated files).
    #[arg(long)]
    logs: PathBuf,
    /// Candidate model file, decided with the config's policy (lambda 0).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Candidate: this fixed amount to every evaluated session (0 = none).
    #[arg(long)]
    fixed_cents: Option<i64>,
    /// Service config: the candidate's policy; its tiers and minimum order
    /// must be the logging ones. Default: the documented defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = replay::Reward::Net)]
    reward: replay::Reward,
    /// Override the explore share read from the logged propensities.
    #[arg(long)]
    explore_share: Option<f64>,
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    missing_outcome: MissingOutcome,
    /// Days the logs cover, for per-day values (default: their time span).
    #[arg(long)]
    days: Option<f64>,
    /// Cross-fitting folds of the direct model.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: ReplayArgs) -> Result<()> {
    let settings = replay::load_settings(a.config.as_deref())?;
    let candidate = match (&a.model, a.fixed_cents) {
        (Some(p), _) => {
            let model = ModelFile::load(p)?.compile()?;
            if model.input() != Input::Session {
                bail!("replay needs a session model (input \"session\")");
            }
            replay::Candidate::Rule {
                model,
                policy: settings.policy.clone(),
            }
        }
        (None, Some(c)) => replay::Candidate::Fixed { amount_cents: c },
        _ => unreachable!("clap requires a candidate"),
    };
    if a.folds < 2 {
        bail!("--folds must be >= 2");
    }
    let mut opts = replay::Options::new(&settings.policy, settings.min_order_cents, a.reward);
    opts.explore_share = a.explore_share;
    opts.missing = a.missing_outcome;
    opts.days = a.days;
    opts.folds = a.folds;
    let (_, report) = replay::replay_path(&a.logs, &candidate, &opts)?;
    if report.coverage.propensity_mismatches > 0 {
        eprintln!(
            "warning: {} decisions' logged propensities disagree with the exploration mixture (explore share {}): the estimates are not trustworthy",
            report.coverage.propensity_mismatches, report.coverage.explore_share
        );
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay::render_text(&report));
    }
    Ok(())
}
