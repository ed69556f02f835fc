//! `nudge-train`: generate sessions, fit, cross-validate, evaluate and
//! predict with the intent model.
//!
//! ```text
//! nudge-train generate --sessions 40000 --seed 42 --out sessions.jsonl [--format log]
//! nudge-train fit --generate 40000 --gen-seed 42 --seed 7 --alpha 1 --out models/default.json
//! nudge-train fit --logs LOG_DIR --out model.json [--report DIR]
//! nudge-train fit --spec training/specs/uci_online_shoppers.toml \
//!     --data ../shared/data/online_shoppers_intention.csv --out models/uci_online_shoppers.json --report report/
//! nudge-train cv --spec S --data D --k 5 --seed 42 --alphas 1
//! nudge-train folds --spec S --data D --k 5 --seed 42 --out folds.csv
//! nudge-train evaluate --model M --data D [--spec S] [--json] [--report DIR]
//! nudge-train predict --model M --data D [--spec S] --out preds.csv
//! nudge-train bench [--spec S --data D] [--rows 1000000]
//! ```
//!
//! `--spec` means `--data` is a CSV read through that spec; without it,
//! `evaluate`/`predict` read `--data` as service logs (a JSON-lines file or
//! a directory of them) and `fit --data` reads generated sessions.
//! Every output file is written atomically (temporary file + rename), after
//! all checks passed: an error leaves nothing half-written.

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ndarray::Array2;
use nudge::domain::features::FEATURES;
use nudge::domain::model::{Input, ModelFile};
use nudge_train::logs::MissingOutcome;
use nudge_train::{cv, data, eval, fit, logs, report, spec, tabular};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(name = "nudge-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One generated session (events, decision points, truth) per line.
    Sessions,
    /// The service's decision-log format (events, decision, outcome records).
    Log,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Learn the per-tier voucher response (two-model uplift) from
    /// randomised log decisions into a model file, or evaluate a CSV
    /// experiment through an uplift spec.
    Uplift(Box<nudge_train::uplift::UpliftArgs>),
    /// Write generated sessions as JSON lines.
    Generate {
        #[arg(long, default_value_t = 40_000)]
        sessions: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Sessions)]
        format: Format,
    },
    /// Fit the intent model and write a nudge-model/1 file.
    Fit(Box<FitArgs>),
    /// Stratified k-fold cross-validation of a CSV spec (all rows).
    Cv(CvArgs),
    /// Write the stratified fold of every CSV row (`row,fold`).
    Folds {
        #[command(flatten)]
        input: CsvInput,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Score data with a model file (the service's scorer) and report metrics.
    Evaluate(EvalArgs),
    /// Write `row,probability` (logs: `row,session_id,at_ms,probability`).
    Predict {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        spec: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
        missing_outcome: MissingOutcome,
        #[arg(long)]
        out: PathBuf,
    },
    /// Off-policy evaluation (IPS, SNIPS, doubly robust) of a candidate
    /// model + policy on logged decisions.
    Replay(ReplayArgs),
    /// Training speed: UCI fit time per fold, and a fit on 1M generated rows.
    Bench {
        #[arg(long)]
        spec: Option<PathBuf>,
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        k: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 1.0)]
        alpha: f64,
        /// Generated decision-moment rows for the large fit (0 = skip).
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
}

#[derive(Args, Debug)]
struct CsvInput {
    /// Feature spec (TOML).
    #[arg(long)]
    spec: PathBuf,
    /// CSV file.
    #[arg(long)]
    data: PathBuf,
}

#[derive(Args, Debug)]
struct CvArgs {
    #[command(flatten)]
    input: CsvInput,
    #[arg(long, default_value_t = 5)]
    k: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Comma-separated alpha grid (alpha = 1/C of scikit-learn).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1,1,10,100")]
    alphas: Vec<f64>,
    #[arg(long, default_value_t = 1_000)]
    max_iterations: u64,
    #[arg(long, default_value_t = 1e-6)]
    gradient_tolerance: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[arg(long)]
    model: PathBuf,
    /// CSV (with --spec) or service logs (file or directory).
    #[arg(long)]
    data: PathBuf,
    #[arg(long)]
    spec: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = MissingOutcome::Skip)]
    missing_outcome: MissingOutcome,
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

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["data", "generate", "logs"])))]
struct FitArgs {
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Uplift(a) => nudge_train::uplift::run(&a),
        Command::Generate {
            sessions,
            seed,
            out,
            format,
        } => {
            let bytes = match format {
                Format::Sessions => data::generate_jsonl(sessions, seed),
                Format::Log => {
                    let s = data::parse_jsonl(&data::generate_jsonl(sessions, seed))?;
                    logs::generated_to_log(&s)
                }
            };
            fit::write_atomic(&out, &bytes)?;
            eprintln!(
                "wrote {sessions} sessions ({format:?} format, {} bytes, sha256 {}) to {}",
                bytes.len(),
                data::sha256_hex(&bytes),
                out.display()
            );
            Ok(())
        }
        Command::Fit(args) => match args.spec.clone() {
            Some(spec) => run_fit_csv(&args, &spec),
            None => run_fit(*args),
        },
        Command::Cv(a) => run_cv(a),
        Command::Folds {
            input,
            k,
            seed,
            out,
        } => {
            let (_, t, _, _) = load_csv(&input.spec, &input.data, true)?;
            if k < 2 {
                bail!("--k must be >= 2");
            }
            let f = cv::stratified_folds(&t.y, k, seed);
            let mut s = String::from("row,fold\n");
            for (i, v) in f.iter().enumerate() {
                s.push_str(&format!("{i},{v}\n"));
            }
            fit::write_atomic(&out, s.as_bytes())?;
            eprintln!(
                "wrote {} rows, {k} folds (seed {seed}) to {}",
                t.len(),
                out.display()
            );
            Ok(())
        }
        Command::Evaluate(a) => run_evaluate(a),
        Command::Predict {
            model,
            data,
            spec,
            missing_outcome,
            out,
        } => {
            let scored = score(&model, &data, spec.as_deref(), missing_outcome)?;
            let mut s = String::new();
            match &scored.keys {
                Some(keys) => {
                    s.push_str("row,session_id,at_ms,probability\n");
                    for (i, ((sid, at), p)) in keys.iter().zip(&scored.p).enumerate() {
                        s.push_str(&format!("{i},{sid},{at},{p}\n"));
                    }
                }
                None => {
                    s.push_str("row,probability\n");
                    for (i, p) in scored.p.iter().enumerate() {
                        s.push_str(&format!("{i},{p}\n"));
                    }
                }
            }
            fit::write_atomic(&out, s.as_bytes())?;
            eprintln!("wrote {} predictions to {}", scored.p.len(), out.display());
            Ok(())
        }
        Command::Replay(a) => run_replay(a),
        Command::Bench {
            spec,
            data,
            k,
            seed,
            alpha,
            rows,
        } => run_bench(spec, data, k, seed, alpha, rows),
    }
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn load_csv(
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

fn cv_table_text(results: &[cv::CvResult], chosen: Option<usize>) -> String {
    let mut s = String::new();
    for (i, r) in results.iter().enumerate() {
        s.push_str(&format!(
            "alpha {:<8} mean ROC-AUC {:.4} (sd {:.4})  mean log-loss {:.4}  mean fit {:.3} s{}\n",
            r.alpha,
            r.mean_roc_auc,
            r.std_roc_auc,
            r.mean_log_loss,
            r.mean_fit_seconds,
            if Some(i) == chosen { "  <- chosen" } else { "" }
        ));
        for f in &r.folds {
            s.push_str(&format!(
                "    fold {}: {:>5} rows, ROC-AUC {:.4}, log-loss {:.4}, fit {:.3} s{}\n",
                f.fold,
                f.valid_rows,
                f.roc_auc.unwrap_or(f64::NAN),
                f.log_loss,
                f.fit_seconds,
                if f.converged { "" } else { " (NOT converged)" }
            ));
        }
    }
    s
}

fn run_cv(a: CvArgs) -> Result<()> {
    let (_, t, bytes, _) = load_csv(&a.input.spec, &a.input.data, true)?;
    if a.k < 2 {
        bail!("--k must be >= 2");
    }
    let rows: Vec<usize> = (0..t.len()).collect();
    let fold = cv::stratified_folds(&t.y, a.k, a.seed);
    let solver = tabular::Solver {
        max_iterations: a.max_iterations,
        gradient_tolerance: a.gradient_tolerance,
    };
    let results = a
        .alphas
        .iter()
        .map(|&alpha| tabular::cross_validate(&t, &rows, &fold, a.k, alpha, &solver))
        .collect::<Result<Vec<_>>>()?;
    let chosen = cv::select_alpha(&results);
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "data_sha256": data::sha256_hex(&bytes),
                "rows": t.len(),
                "k": a.k,
                "seed": a.seed,
                "chosen": chosen,
                "results": results,
            }))?
        );
    } else {
        println!(
            "{} rows, {}-fold stratified CV, seed {}",
            t.len(),
            a.k,
            a.seed
        );
        print!("{}", cv_table_text(&results, Some(chosen)));
    }
    Ok(())
}

fn run_fit_csv(a: &FitArgs, spec_path: &Path) -> Result<()> {
    let data_path = a.data.as_ref().expect("clap: --spec requires --data");
    let started = Instant::now();
    let (_, t, bytes, spec_bytes) = load_csv(spec_path, data_path, true)?;
    let info = tabular::CsvInfo {
        data_sha256: data::sha256_hex(&bytes),
        data_source: data_path.display().to_string(),
        spec_sha256: data::sha256_hex(&spec_bytes),
        spec_source: spec_path.display().to_string(),
    };
    let prefix = a.version_prefix.clone().unwrap_or_else(|| {
        spec_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "csv".into())
    });
    let opts = tabular::CsvFitOptions {
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
    };
    let r = tabular::fit_csv(&t, &info, &opts, &command_line(), &fit::created_at())?;
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
    let model_bytes = fit::model_json(&r.model)?;
    // Render the report before writing anything.
    let report = match (&a.report, &r.holdout) {
        (Some(dir), Some(e)) => {
            let y: Vec<bool> = r.held_rows.iter().map(|&i| t.y[i]).collect();
            let coefs = report::coefficients(&r.model);
            let extra = format!(
                "<h2>Cross-validation (training split)</h2>\n<pre>{}</pre>\n<h2>Lineage</h2>\n<pre>{}</pre>\n",
                cv_table_text(&r.cv, Some(r.chosen)),
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
            Some((dir.clone(), report::render_html(&input)?))
        }
        (Some(_), None) => bail!("--report needs a held-out split (--holdout > 0)"),
        _ => None,
    };
    fit::write_atomic(&a.out, &model_bytes)?;
    if let Some((dir, html)) = report {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut m = serde_json::to_vec_pretty(&json!({
            "model": r.model.version,
            "holdout": r.holdout,
            "training": r.model.training,
        }))?;
        m.push(b'\n');
        fit::write_atomic(&dir.join("metrics.json"), &m)?;
        fit::write_atomic(&dir.join("index.html"), html.as_bytes())?;
    }
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
        print!("{}", cv_table_text(&r.cv, Some(r.chosen)));
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

fn run_fit(a: FitArgs) -> Result<()> {
    let started = Instant::now();
    let seed = a.seed.unwrap_or(7);
    let opts = fit::FitOptions {
        seed,
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
    };
    let command = command_line();
    let (mut result, info, log_summary) = if let Some(path) = &a.logs {
        let (rows, summary, bytes) = logs::read(path, a.missing_outcome)?;
        let info = fit::DataInfo {
            sha256: data::sha256_hex(&bytes),
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
        if summary.skewed_decisions > 0 {
            eprintln!(
                "warning: {} decisions replay to features different from the logged ones, e.g. {:?}",
                summary.skewed_decisions,
                summary.skew_examples.first()
            );
        }
        let n_sessions = rows.iter().map(|r| r.row.session + 1).max().unwrap_or(0);
        let rows = rows.into_iter().map(|r| r.row).collect();
        let r = fit::fit_rows(rows, n_sessions, &info, &opts, &command, &fit::created_at())?;
        (r, info, Some(summary))
    } else {
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
        let info = fit::DataInfo {
            sha256: data::sha256_hex(&bytes),
            source,
        };
        let sessions = data::parse_jsonl(&bytes)?;
        drop(bytes);
        let r = fit::fit(&sessions, &info, &opts, &command, &fit::created_at())?;
        (r, info, None)
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
    let model_bytes = fit::model_json(&result.model)?;
    let held_p: Vec<f64> = result
        .p
        .iter()
        .zip(&result.held_out)
        .filter(|(_, h)| **h)
        .map(|(p, _)| *p)
        .collect();
    let held_y: Vec<bool> = result
        .rows
        .iter()
        .zip(&result.held_out)
        .filter(|(_, h)| **h)
        .map(|(r, _)| r.converted)
        .collect();
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
    fit::write_atomic(&a.out, &model_bytes)?;
    if let Some((dir, html)) = report_html {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut m = serde_json::to_vec_pretty(&json!({
            "model": result.model.version,
            "holdout": evaluation,
            "training": result.model.training,
        }))?;
        m.push(b'\n');
        fit::write_atomic(&dir.join("metrics.json"), &m)?;
        fit::write_atomic(&dir.join("index.html"), html.as_bytes())?;
    }
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

/// Probabilities and labels of a data set under a model file.
struct Scored {
    model: ModelFile,
    p: Vec<f64>,
    y: Vec<bool>,
    /// Logs: `(session_id, at_ms)` per row.
    keys: Option<Vec<(String, i64)>>,
    data_sha256: String,
    log_summary: Option<logs::LogSummary>,
}

fn score(
    model_path: &Path,
    data_path: &Path,
    spec_path: Option<&Path>,
    missing: MissingOutcome,
) -> Result<Scored> {
    let file = ModelFile::load(model_path)?;
    let model = file.compile()?;
    match spec_path {
        Some(sp) => {
            if model.input() != Input::Client {
                bail!(
                    "model {} has input \"session\"; a CSV with a spec needs a client model (input \"client\")",
                    model.version()
                );
            }
            let (_, t, bytes, _) = load_csv(sp, data_path, false)?;
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
            let (rows, summary, bytes) = logs::read(data_path, missing)?;
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
                data_sha256: data::sha256_hex(&bytes),
                log_summary: Some(summary),
            })
        }
    }
}

fn run_evaluate(a: EvalArgs) -> Result<()> {
    let s = score(&a.model, &a.data, a.spec.as_deref(), a.missing_outcome)?;
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
        "model_file": a.model.display().to_string(),
        "data": a.data.display().to_string(),
        "data_sha256": s.data_sha256,
        "spec": a.spec.as_ref().map(|p| p.display().to_string()),
        "evaluation": e,
        "log_replay": s.log_summary,
    });
    if let Some(dir) = &a.report {
        let coefs = report::coefficients(&s.model);
        let input = report::ReportInput {
            title: &format!("nudge-train evaluate: {}", s.model.version),
            subtitle: &format!("{} rows of {}", s.p.len(), a.data.display()),
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
        println!("model {} on {}", s.model.version, a.data.display());
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

fn run_bench(
    spec_path: Option<PathBuf>,
    data_path: Option<PathBuf>,
    k: usize,
    seed: u64,
    alpha: f64,
    n_rows: usize,
) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec_path =
        spec_path.unwrap_or_else(|| root.join("training/specs/uci_online_shoppers.toml"));
    let data_path =
        data_path.unwrap_or_else(|| root.join("../shared/data/online_shoppers_intention.csv"));
    let solver = tabular::Solver::default();
    if data_path.exists() {
        let (_, t, _, _) = load_csv(&spec_path, &data_path, true)?;
        let rows: Vec<usize> = (0..t.len()).collect();
        let fold = cv::stratified_folds(&t.y, k, seed);
        let r = tabular::cross_validate(&t, &rows, &fold, k, alpha, &solver)?;
        println!(
            "UCI {}: {} rows, {k}-fold stratified CV (seed {seed}), alpha {alpha}",
            data_path.display(),
            t.len()
        );
        for f in &r.folds {
            println!(
                "  fold {}: fit {:.1} ms ({} train rows), ROC-AUC {:.4}",
                f.fold,
                1e3 * f.fit_seconds,
                f.train_rows,
                f.roc_auc.unwrap_or(f64::NAN)
            );
        }
        println!(
            "  mean fit {:.1} ms per fold, mean ROC-AUC {:.4}",
            1e3 * r.mean_fit_seconds,
            r.mean_roc_auc
        );
    } else {
        println!(
            "UCI: {} not found, skipped (CI provides ../shared/data)",
            data_path.display()
        );
    }
    if n_rows > 0 {
        let t0 = Instant::now();
        let mut gen = nudge::sim::synth::Generator::new(nudge::sim::synth::GeneratorConfig {
            seed,
            ..Default::default()
        });
        let mut rows = Vec::with_capacity(n_rows);
        let mut sessions = 0usize;
        while rows.len() < n_rows {
            let chunk: Vec<_> = (&mut gen).take(10_000).collect();
            let mut r = data::rows(&chunk, 3, seed);
            for row in &mut r {
                row.session += sessions;
            }
            sessions += chunk.len();
            rows.extend(r);
        }
        rows.truncate(n_rows);
        let gen_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let mut kept = Vec::new();
        for j in 0..FEATURES.len() {
            let raw: Vec<f64> = rows.iter().map(|r| r.features.0[j]).collect();
            if let Some(ts) = fit::learn_transforms(j, &raw, 0.999) {
                kept.push((j, ts));
            }
        }
        let x = Array2::from_shape_fn((rows.len(), kept.len()), |(i, c)| {
            let (j, ts) = &kept[c];
            fit::apply(ts, rows[i].features.0[*j])
        });
        let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
        let prep_s = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let m = fit::fit_logistic(
            &x,
            &y,
            alpha,
            solver.max_iterations,
            solver.gradient_tolerance,
        )?;
        let fit_s = t2.elapsed().as_secs_f64();
        println!(
            "generated: {} rows from {sessions} sessions ({} features): generate+replay {:.1} s, transforms+design {:.1} s, fit {:.1} s (|grad|/rows {:.1e}, converged {})",
            rows.len(),
            kept.len(),
            gen_s,
            prep_s,
            fit_s,
            m.gradient_norm_per_row,
            m.gradient_norm_per_row <= solver.gradient_tolerance
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("candidate").required(true).args(["model", "fixed_cents"])))]
struct ReplayArgs {
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
    #[arg(long, value_enum, default_value_t = nudge_train::replay::Reward::Net)]
    reward: nudge_train::replay::Reward,
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

fn run_replay(a: ReplayArgs) -> Result<()> {
    use nudge_train::replay;
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
    let (_, _, records) = logs::read_records(&a.logs)?;
    let (_, report) = replay::replay(&records, &candidate, &opts)?;
    if report.coverage.propensity_mismatches > 0 {
        eprintln!(
            "warning: {} decisions' logged propensities disagree with the exploration mixture (explore share {}): the estimates are not trustworthy",
            report.coverage.propensity_mismatches, report.coverage.explore_share
        );
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay::render_text(&report));
    }
    Ok(())
}
