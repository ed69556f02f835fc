//! `nudge-train evaluate`: a model file judged on data (metrics,
//! calibration, segments), printed, as JSON, or as an HTML report.

use super::score::{score, ScoreInput};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use nudge_train::{data, eval, report};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(mut_arg("data", |a| a.help("CSV (with --spec) or service logs (file or directory)")))]
pub struct EvalArgs {
    #[command(flatten)]
    input: ScoreInput,
    /// Override the model's thresholds for the confusion tables.
    #[arg(long)]
    hot_at_or_above: Option<f64>,
    #[arg(long)]
    cold_below: Option<f64>,
    #[arg(long)]
    json: bool,
    /// Write index.html and metrics.json into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> Result<()> {
    if a.input.spec.is_none() && a.input.data.is_file() {
        // Without --spec the data is read as service logs; a CSV would fail
        // there with a JSON parse error that does not say what is wrong.
        use std::io::Read as _;
        let mut head = Vec::new();
        std::fs::File::open(&a.input.data)
            .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
            .with_context(|| format!("read {}", a.input.data.display()))?;
        if let Some(hint) = data::csv_hint(&head) {
            bail!("--data {}: {hint}", a.input.data.display());
        }
    }
    let s = score(&a.input)?;
    if s.p.is_empty() {
        bail!("no rows to evaluate");
    }
    let t = nudge::domain::policy::SegmentThresholds {
        hot_at_or_above: a
            .hot_at_or_above
            .unwrap_or(s.model.segments.hot_at_or_above),
        cold_below: a.cold_below.unwrap_or(s.model.segments.cold_below),
    };
    let e = eval::evaluate(&s.p, &s.y, t);
    let metrics = json!({
        "model": s.model.version,
        "model_file": a.input.model.display().to_string(),
        "data": a.input.data.display().to_string(),
        "data_sha256": s.data_sha256,
        "spec": a.input.spec.as_ref().map(|p| p.display().to_string()),
        "evaluation": e,
        "log_replay": s.log_summary,
    });
    if let Some(dir) = &a.report {
        let coefs = report::coefficients(&s.model);
        let input = report::ReportInput {
            title: &format!("nudge-train evaluate: {}", s.model.version),
            subtitle: &format!("{} rows of {}", s.p.len(), a.input.data.display()),
            p: &s.p,
            y: &s.y,
            evaluation: &e,
            coefficients: &coefs,
            extra_html: "",
        };
        report::write_report(dir, &input, &metrics)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        println!("model {} on {}", s.model.version, a.input.data.display());
        if let Some(l) = &s.log_summary {
            println!(
                "logs: {} sessions, {} decisions, {} without outcome, {} skewed",
                l.sessions, l.decisions, l.decisions_without_outcome, l.skewed_decisions
            );
        }
        print!("{}", eval::summary_text(&e));
    }
    Ok(())
}
