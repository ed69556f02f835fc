//! `nudge-train cv`: stratified k-fold cross-validation of a CSV spec over
//! an alpha grid, printed so a penalty can be chosen before fitting.

use super::CsvFolds;
use anyhow::Result;
use clap::Args;
use nudge_train::{cv, data, tabular};
use serde_json::json;

#[derive(Args, Debug)]
pub struct CvArgs {
    #[command(flatten)]
    csv: CsvFolds,
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

/// The per-alpha and per-fold lines of a CV (also in `fit --spec`'s output
/// and report).
pub fn table_text(results: &[cv::CvResult], chosen: Option<usize>) -> String {
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

pub fn run(a: CvArgs) -> Result<()> {
    let (t, bytes, fold) = a.csv.load()?;
    let rows: Vec<usize> = (0..t.len()).collect();
    let solver = tabular::Solver {
        max_iterations: a.max_iterations,
        gradient_tolerance: a.gradient_tolerance,
    };
    let results = a
        .alphas
        .iter()
        .map(|&alpha| tabular::cross_validate(&t, &rows, &fold, a.csv.k, alpha, &solver))
        .collect::<Result<Vec<_>>>()?;
    let chosen = cv::select_alpha(&results);
    let fits = results.iter().map(|r| r.folds.len()).sum::<usize>();
    let stopped = results
        .iter()
        .flat_map(|r| &r.folds)
        .filter(|f| !f.converged)
        .count();
    if stopped > 0 {
        // Said on stderr as well, so `--json` output cannot hide it.
        eprintln!(
            "warning: {stopped} of {fits} fold fits not converged: |gradient|/rows > {:.1e} after at most {} iterations",
            a.gradient_tolerance, a.max_iterations
        );
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "data_sha256": data::sha256_hex(&bytes),
                "rows": t.len(),
                "k": a.csv.k,
                "seed": a.csv.seed,
                "chosen": chosen,
                "results": results,
            }))?
        );
    } else {
        println!(
            "{} rows, {}-fold stratified CV, seed {}",
            t.len(),
            a.csv.k,
            a.csv.seed
        );
        print!("{}", table_text(&results, Some(chosen)));
    }
    Ok(())
}
