//! `nudge-train fit`: the intent model fitted from generated sessions,
//! service logs or a CSV (client model), written as a model file with an
//! optional report; every output is rendered before anything is written.

use super::{command_line, cv::table_text, load_csv, warn_skew};
use anyhow::{bail, Context as _, Result};
use clap::Args;
use nudge_train::eval::{self, Evaluation};
use nudge_train::fit::{self, DataInfo, FitOptions, FitResult};
use nudge_train::logs::{self, LogSummary, MissingOutcome};
use nudge_train::{data, output, report, spec, tabular};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["data", "generate", "logs"])))]
pub struct FitArgs {
    /// Generated sessions (JSON lines), or a CSV file with --spec.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Feature spec (TOML): --data is a CSV; fits a client model.
    #[arg(long, requires = "data")]
    spec: Option<PathBuf>,
    /// Generate this many sessions in memory instead of reading --data.
    #[arg(long)]
    generate: Option<usize>,
    /// Service logs (a JSON-lines file or a directory of rotated files).
    #[arg(long)]
    logs: Option<PathBuf>,
    /// Log sessions without an outcome record: skip them, or count them as
    /// not converted.
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    missing_outcome: MissingOutcome,
    /// Generator seed for --generate.
    #[arg(long, default_value_t = 42)]
    gen_seed: u64,
    /// Model file to write (atomically).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the splits (default 7 for sessions, 42 for CSV).
    #[arg(long)]
    seed: Option<u64>,
    /// Session models: fixed L2 penalty (alpha/2 |w|^2 on the summed
    /// log-loss), no cross-validation; thresholds from the training
    /// predictions. Without it, alpha is chosen by CV over --alphas.
    #[arg(long, conflicts_with = "alphas")]
    alpha: Option<f64>,
    /// Comma-separated alpha grid searched by k-fold CV (CSV: stratified
    /// rows; sessions and logs: folds grouped by session).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    alphas: Vec<f64>,
    /// Folds of the cross-validation (fold seed = --seed).
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// Share held out for evaluation (sessions, or stratified CSV rows).
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    #[arg(long, default_value_t = 1_000)]
    max_iterations: u64,
    /// Converged when |gradient|_2 / rows <= this at the solution.
    #[arg(long, default_value_t = 1e-6)]
    gradient_tolerance: f64,
    /// Decision points used per generated session (chosen with --seed).
    #[arg(long, default_value_t = 3)]
    max_points: usize,
    /// Hot segment: smallest t with precision(p >= t) >= this.
    #[arg(long, default_value_t = 0.7)]
    hot_precision: f64,
    /// Cold segment: largest t with NPV(p < t) >= this.
    #[arg(long, default_value_t = 0.97)]
    cold_npv: f64,
    /// Minimum rows in the hot / cold rule sets.
    #[arg(long, default_value_t = 50)]
    min_segment_rows: usize,
    /// CSV: override the rule's hot threshold.
    #[arg(long)]
    hot_at_or_above: Option<f64>,
    /// CSV: override the rule's cold threshold.
    #[arg(long)]
    cold_below: Option<f64>,
    /// Session models: upper clip of Log/Linear features at this quantile.
    #[arg(long, default_value_t = 0.999)]
    clip_quantile: f64,
    /// Model version prefix (`<prefix>-<yyyymmdd>-<sha8>`; default
    /// "default", or the spec's file stem for CSV).
    #[arg(long)]
    version_prefix: Option<String>,
    /// Write index.html and metrics.json (held-out evaluation) here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Fail (exit 1, nothing written) if the optimiser did not converge.
    #[arg(long)]
    require_converged: bool,
    /// Threads for the cross-validation folds of session and log fits
    /// (default: the number of cores); each holds one fold's design matrix.
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(a: FitArgs) -> Result<()> {
    if a.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    nudge_train::parallel::set_threads(a.threads.unwrap_or(0));
    match &a.spec {
        Some(spec) => run_csv(&a, spec),
        None => run_sessions(&a),
    }
}

/// Writes the model file, then the report rendered before it.
fn write_outputs(
    a: &FitArgs,
    model_bytes: &[u8],
    report_html: Option<(PathBuf, String)>,
    metrics: &serde_json::Value,
) -> Result<()> {
    output::write_atomic(&a.out, model_bytes)?;
    if let Some((dir, html)) = report_html {
        report::write_rendered(&dir, &html, metrics)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A client model from a CSV (--spec).

fn run_csv(a: &FitArgs, spec_path: &Path) -> Result<()> {
    let data_path = a.data.as_ref().expect("clap: --spec requires --data");
    let started = Instant::now();
    let (_, t, bytes, spec_bytes) = load_csv(spec_path, data_path, true)?;
    let info = tabular::CsvInfo {
        data_sha256: data::sha256_hex(&bytes),
        data_source: data_path.display().to_string(),
        spec_sha256: data::sha256_hex(&spec_bytes),
        spec_source: spec_path.display().to_string(),
    };
    let opts = csv_options(a, spec_path);
    let r = tabular::fit_csv(&t, &info, &opts, &command_line(), &output::created_at())?;
    if !r.converged {
        eprintln!(
            "warning: final fit not converged: |gradient|/rows = {:.3e}",
            r.model.training["gradient_norm_per_row"]
                .as_f64()
                .unwrap_or(f64::NAN)
        );
        if a.require_converged {
            bail!("not converged; nothing written");
        }
    }
    let model_bytes = output::model_json(&r.model)?;
    // Render the report before writing anything.
    let report_html = match (&a.report, &r.holdout) {
        (Some(dir), Some(e)) => Some((
            dir.clone(),
            csv_report_html(&r, e, &t, &info, data_path, spec_path)?,
        )),
        (Some(_), None) => bail!("--report needs a held-out split (--holdout > 0)"),
        _ => None,
    };
    let metrics = json!({
        "model": r.model.version,
        "holdout": r.holdout,
        "training": r.model.training,
    });
    write_outputs(a, &model_bytes, report_html, &metrics)?;
    print_csv_fit(a, &r, &t, &info, &opts, started)
}

fn csv_options(a: &FitArgs, spec_path: &Path) -> tabular::CsvFitOptions {
    let prefix = a.version_prefix.clone().unwrap_or_else(|| {
        spec_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "csv".into())
    });
    tabular::CsvFitOptions {
        seed: a.seed.unwrap_or(42),
        k: a.k,
        alphas: a.alphas.clone(),
        holdout: a.holdout,
        solver: tabular::Solver {
            max_iterations: a.max_iterations,
            gradient_tolerance: a.gradient_tolerance,
        },
        hot_precision: a.hot_precision,
        cold_npv: a.cold_npv,
        min_segment_rows: a.min_segment_rows,
        hot_at_or_above: a.hot_at_or_above,
        cold_below: a.cold_below,
        version_prefix: prefix,
    }
}

/// The HTML report of a CSV fit: the held-out evaluation, the CV table and
/// the lineage.
fn csv_report_html(
    r: &tabular::CsvFit,
    e: &Evaluation,
    t: &spec::Table,
    info: &tabular::CsvInfo,
    data_path: &Path,
    spec_path: &Path,
) -> Result<String> {
    let y: Vec<bool> = r.held_rows.iter().map(|&i| t.y[i]).collect();
    let coefs = report::coefficients(&r.model);
    let extra = format!(
        "<h2>Cross-validation (training split)</h2>\n<pre>{}</pre>\n<h2>Lineage</h2>\n<pre>{}</pre>\n",
        table_text(&r.cv, Some(r.chosen)),
        nudge::html::escape(&serde_json::to_string_pretty(&json!({
            "data_sha256": info.data_sha256,
            "spec_sha256": info.spec_sha256,
            "command": r.model.training["command"],
            "created_at": r.model.training["created_at"],
            "alpha": r.model.training["alpha"],
        }))?)
    );
    let input = report::ReportInput {
        title: &format!("nudge-train: {}", r.model.version),
        subtitle: &format!(
            "held-out split: {} of {} rows of {} (spec {})",
            y.len(),
            t.len(),
            data_path.display(),
            spec_path.display()
        ),
        p: &r.held_p,
        y: &y,
        evaluation: e,
        coefficients: &coefs,
        extra_html: &extra,
    };
    report::render_html(&input)
}

fn print_csv_fit(
    a: &FitArgs,
    r: &tabular::CsvFit,
    t: &spec::Table,
    info: &tabular::CsvInfo,
    opts: &tabular::CsvFitOptions,
    started: Instant,
) -> Result<()> {
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "out": a.out.display().to_string(),
                "version": r.model.version,
                "converged": r.converged,
                "seconds": started.elapsed().as_secs_f64(),
                "alpha": r.model.training["alpha"],
                "cv": r.cv,
                "holdout": r.holdout,
                "segments": r.model.segments,
            }))?
        );
    } else {
        println!("model     {} -> {}", r.model.version, a.out.display());
        println!(
            "data      {} rows ({} positive), sha256 {}; spec sha256 {}",
            t.len(),
            t.y.iter().filter(|v| **v).count(),
            info.data_sha256,
            info.spec_sha256
        );
        println!(
            "cv        {}-fold stratified on the training split, seed {}",
            opts.k, opts.seed
        );
        print!("{}", table_text(&r.cv, Some(r.chosen)));
        println!(
            "fit       {} terms, alpha {}, converged {}, {:.1} s",
            r.model.terms.len(),
            r.cv[r.chosen].alpha,
            r.converged,
            started.elapsed().as_secs_f64()
        );
        if let Some(e) = &r.holdout {
            println!("held-out:");
            print!("{}", eval::summary_text(e));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A session model from generated sessions or service logs.

fn run_sessions(a: &FitArgs) -> Result<()> {
    let started = Instant::now();
    let opts = session_options(a);
    let command = command_line();
    let (mut result, info, log_summary) = match &a.logs {
        Some(path) => fit_logs(a, path, &opts, &command)?,
        None => fit_sessions(a, &opts, &command)?,
    };
    if let Some(s) = &log_summary {
        result.model.training["log_replay"] = serde_json::to_value(s)?;
    }
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
            bail!("not converged; nothing written");
        }
    }
    // The file must load with the service's own loader.
    result
        .model
        .compile()
        .context("fitted model does not validate")?;
    let model_bytes = output::model_json(&result.model)?;
    let (held_p, held_y) = held_out(&result);
    let evaluation = eval::evaluate(&held_p, &held_y, result.model.segments);
    let report_html = match &a.report {
        Some(dir) => {
            if held_p.is_empty() {
                bail!("--report needs a held-out split (--holdout > 0)");
            }
            let coefs = report::coefficients(&result.model);
            let input = report::ReportInput {
                title: &format!("nudge-train: {}", result.model.version),
                subtitle: &format!("held-out sessions of {}", info.source),
                p: &held_p,
                y: &held_y,
                evaluation: &evaluation,
                coefficients: &coefs,
                extra_html: "",
            };
            Some((dir.clone(), report::render_html(&input)?))
        }
        None => None,
    };
    let metrics = json!({
        "model": result.model.version,
        "holdout": evaluation,
        "training": result.model.training,
    });
    write_outputs(a, &model_bytes, report_html, &metrics)?;
    let secs = started.elapsed().as_secs_f64();
    print_session_fit(a, &result, &info, log_summary.as_ref(), &evaluation, secs)
}

fn session_options(a: &FitArgs) -> FitOptions {
    FitOptions {
        seed: a.seed.unwrap_or(7),
        alpha: a.alpha.unwrap_or(1.0),
        // --alpha A: no CV, fit with A.
        alphas: if a.alpha.is_some() {
            Vec::new()
        } else {
            a.alphas.clone()
        },
        k: a.k,
        holdout: a.holdout,
        max_iterations: a.max_iterations,
        gradient_tolerance: a.gradient_tolerance,
        max_points_per_session: a.max_points,
        hot_precision: a.hot_precision,
        cold_npv: a.cold_npv,
        min_segment_rows: a.min_segment_rows,
        clip_quantile: a.clip_quantile,
        version_prefix: a.version_prefix.clone().unwrap_or_else(|| "default".into()),
    }
}

/// Fits on service logs (`--logs`): the decisions replayed into rows.
fn fit_logs(
    a: &FitArgs,
    path: &Path,
    opts: &FitOptions,
    command: &str,
) -> Result<(FitResult, DataInfo, Option<LogSummary>)> {
    let read = logs::read_rows(path, a.missing_outcome)?;
    let summary = read.summary;
    let info = DataInfo {
        sha256: read.sha256,
        source: format!("logs: {}", path.display()),
    };
    eprintln!(
            "logs      {} files, {} sessions, {} decisions -> {} rows; {} sessions without outcome ({:?}); {} skewed decisions",
            summary.files.len(),
            summary.sessions,
            summary.decisions,
            summary.rows,
            summary.sessions_without_outcome,
            a.missing_outcome,
            summary.skewed_decisions
        );
    warn_skew(&summary);
    // Sessions up to the last one with a row (the split draws per session).
    let n_sessions = read.rows.last().map_or(0, |r| r.session + 1);
    let r = fit::fit_rows(
        read.rows,
        n_sessions,
        &info,
        opts,
        command,
        &output::created_at(),
    )?;
    Ok((r, info, Some(summary)))
}

/// Fits on generated sessions (`--data` JSON lines or `--generate N`).
fn fit_sessions(
    a: &FitArgs,
    opts: &FitOptions,
    command: &str,
) -> Result<(FitResult, DataInfo, Option<LogSummary>)> {
    let (bytes, source) = match (&a.data, a.generate) {
        (Some(path), _) => (
            std::fs::read(path).with_context(|| format!("read {}", path.display()))?,
            path.display().to_string(),
        ),
        (None, Some(n)) => (
            data::generate_jsonl(n, a.gen_seed),
            format!("generated: {n} sessions, seed {}", a.gen_seed),
        ),
        _ => unreachable!("clap requires an input"),
    };
    let info = DataInfo {
        sha256: data::sha256_hex(&bytes),
        source,
    };
    let sessions = data::parse_jsonl(&bytes)?;
    drop(bytes);
    let r = fit::fit(&sessions, &info, opts, command, &output::created_at())?;
    Ok((r, info, None))
}

/// The held-out probabilities and labels of a session fit.
fn held_out(result: &FitResult) -> (Vec<f64>, Vec<bool>) {
    result
        .p
        .iter()
        .zip(&result.rows)
        .zip(&result.held_out)
        .filter(|(_, h)| **h)
        .map(|((p, r), _)| (*p, r.converted))
        .unzip()
}

fn print_session_fit(
    a: &FitArgs,
    result: &FitResult,
    info: &DataInfo,
    log_summary: Option<&LogSummary>,
    evaluation: &Evaluation,
    secs: f64,
) -> Result<()> {
    let h = &result.summary["metrics"]["holdout"];
    if a.json {
        let report = serde_json::json!({
            "out": a.out.display().to_string(),
            "version": result.model.version,
            "converged": result.converged,
            "seconds": secs,
            "terms": result.model.terms.len(),
            "alpha": result.alpha,
            "alpha_selection": result.summary["alpha_selection"],
            "segments": result.model.segments,
            "holdout": h,
            "train": result.summary["metrics"]["train"],
            "log_replay": log_summary,
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
        match result.cv_chosen {
            Some(_) => println!(
                "alpha     {} (chosen by {}-fold CV over {:?}: lowest mean out-of-fold log-loss)",
                result.alpha, a.k, a.alphas
            ),
            None => println!("alpha     {} (fixed by --alpha, no CV)", result.alpha),
        }
        println!(
            "fit       {} terms, converged {}, |grad|/rows {:.2e}, {:.1} s",
            result.model.terms.len(),
            result.converged,
            f(&result.summary["gradient_norm_per_row"]),
            secs
        );
        println!(
            "held-out  {} sessions, {} rows: ROC-AUC {:.4}  PR-AUC {:.4}  log-loss {:.4}  Brier {:.4}",
            h["sessions"],
            h["rows"],
            f(&h["roc_auc"]),
            evaluation.pr_auc.unwrap_or(f64::NAN),
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
