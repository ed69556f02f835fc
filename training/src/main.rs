//! `nudge-train`: generate synthetic sessions and fit the intent model.
//!
//! ```text
//! nudge-train generate --sessions 40000 --seed 42 --out sessions.jsonl
//! nudge-train fit --data sessions.jsonl --seed 7 --out models/default.json
//! nudge-train fit --generate 40000 --gen-seed 42 --seed 7 --out models/default.json
//! ```
//!
//! `fit --generate N --gen-seed G` fits on exactly the bytes
//! `generate --sessions N --seed G` would write (same SHA-256), without a
//! temporary file.

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use nudge_train::{data, fit};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(name = "nudge-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write generated sessions as JSON lines.
    Generate {
        #[arg(long, default_value_t = 40_000)]
        sessions: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit the intent model and write a nudge-model/1 file.
    Fit(FitArgs),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["data", "generate"])))]
struct FitArgs {
    /// Sessions as JSON lines (from `generate`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Generate this many sessions in memory instead of reading --data.
    #[arg(long)]
    generate: Option<usize>,
    /// Generator seed for --generate.
    #[arg(long, default_value_t = 42)]
    gen_seed: u64,
    /// Model file to write (atomically).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the decision-point sampling and the train/held-out split.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// L2 penalty (alpha/2 |w|^2 on the summed log-loss).
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Share of sessions held out for evaluation.
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    #[arg(long, default_value_t = 1_000)]
    max_iterations: u64,
    /// Converged when |gradient|_2 / rows <= this at the solution.
    #[arg(long, default_value_t = 1e-6)]
    gradient_tolerance: f64,
    /// Decision points used per session (chosen with --seed).
    #[arg(long, default_value_t = 3)]
    max_points: usize,
    /// Hot segment: smallest t with precision(p >= t) >= this (training split).
    #[arg(long, default_value_t = 0.7)]
    hot_precision: f64,
    /// Cold segment: largest t with NPV(p < t) >= this (training split).
    #[arg(long, default_value_t = 0.97)]
    cold_npv: f64,
    /// Minimum training rows in the hot / cold rule sets.
    #[arg(long, default_value_t = 50)]
    min_segment_rows: usize,
    /// Upper clip of Log/Linear features at this training quantile.
    #[arg(long, default_value_t = 0.999)]
    clip_quantile: f64,
    /// Model version prefix (`<prefix>-<yyyymmdd>-<sha8>`).
    #[arg(long, default_value = "default")]
    version_prefix: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Fail (exit 1, nothing written) if the optimiser did not converge.
    #[arg(long)]
    require_converged: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Generate {
            sessions,
            seed,
            out,
        } => {
            let bytes = data::generate_jsonl(sessions, seed);
            fit::write_atomic(&out, &bytes)?;
            eprintln!(
                "wrote {sessions} sessions ({} bytes, sha256 {}) to {}",
                bytes.len(),
                data::sha256_hex(&bytes),
                out.display()
            );
            Ok(())
        }
        Command::Fit(args) => run_fit(args),
    }
}

fn run_fit(a: FitArgs) -> Result<()> {
    let started = Instant::now();
    let (bytes, source) = match (&a.data, a.generate) {
        (Some(path), _) => (
            std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, Some(n)) => (
            data::generate_jsonl(n, a.gen_seed),
            format!("generated: {n} sessions, seed {}", a.gen_seed),
        ),
        (None, None) => unreachable!("clap requires --data or --generate"),
    };
    let info = fit::DataInfo {
        sha256: data::sha256_hex(&bytes),
        source,
    };
    let sessions = data::parse_jsonl(&bytes)?;
    drop(bytes);
    let opts = fit::FitOptions {
        seed: a.seed,
        alpha: a.alpha,
        holdout: a.holdout,
        max_iterations: a.max_iterations,
        gradient_tolerance: a.gradient_tolerance,
        max_points_per_session: a.max_points,
        hot_precision: a.hot_precision,
        cold_npv: a.cold_npv,
        min_segment_rows: a.min_segment_rows,
        clip_quantile: a.clip_quantile,
        version_prefix: a.version_prefix.clone(),
    };
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let result = fit::fit(&sessions, &info, &opts, &command, &fit::created_at())?;
    if !result.converged {
        eprintln!(
            "warning: not converged: |gradient|/rows = {:.3e} > {:.1e} after at most {} iterations",
            result.summary["gradient_norm_per_row"]
                .as_f64()
                .unwrap_or(f64::NAN),
            a.gradient_tolerance,
            a.max_iterations
        );
        if a.require_converged {
            anyhow::bail!("not converged; nothing written");
        }
    }
    // The file must load with the service's own loader.
    result
        .model
        .compile()
        .context("fitted model does not validate")?;
    fit::write_atomic(&a.out, &fit::model_json(&result.model)?)?;
    let secs = started.elapsed().as_secs_f64();
    let h = &result.summary["metrics"]["holdout"];
    if a.json {
        let report = serde_json::json!({
            "out": a.out.display().to_string(),
            "version": result.model.version,
            "converged": result.converged,
            "seconds": secs,
            "terms": result.model.terms.len(),
            "segments": result.model.segments,
            "holdout": h,
            "train": result.summary["metrics"]["train"],
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        println!("model     {} -> {}", result.model.version, a.out.display());
        println!(
            "data      {} sessions, {} rows ({} positive), sha256 {}",
            result.summary["sessions"],
            result.summary["rows"],
            result.summary["positives"],
            info.sha256
        );
        println!(
            "fit       {} terms, converged {}, |grad|/rows {:.2e}, {:.1} s",
            result.model.terms.len(),
            result.converged,
            f(&result.summary["gradient_norm_per_row"]),
            secs
        );
        println!(
            "held-out  {} sessions, {} rows: ROC-AUC {:.4}  log-loss {:.4}  Brier {:.4}",
            h["sessions"],
            h["rows"],
            f(&h["roc_auc"]),
            f(&h["log_loss"]),
            f(&h["brier"])
        );
        println!(
            "segments  hot p >= {:.4}, cold p < {:.4}",
            result.model.segments.hot_at_or_above, result.model.segments.cold_below
        );
        for seg in ["hot", "hesitant", "cold"] {
            println!(
                "  {seg:<9} {:>5.1} % of held-out decision moments, conversion {:.3}",
                100.0 * f(&h["segment_shares"][seg]),
                f(&h["segment_conversion"][seg])
            );
        }
        println!(
            "  hesitant with intent value >= 99 EUR: {:.1} %",
            100.0 * f(&h["hesitant_high_value_share"])
        );
    }
    Ok(())
}
