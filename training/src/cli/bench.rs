//! `nudge-train bench`: how long training takes (UCI fit time per fold, a
//! fit on a million generated rows), so a slowdown shows before release.

use super::load_csv;
use anyhow::Result;
use clap::Args;
use nudge_train::data::{self, Row};
use nudge_train::fit::SessionEncoder;
use nudge_train::{cv, tabular};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
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
}

pub fn run(a: BenchArgs) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec_path = a
        .spec
        .unwrap_or_else(|| root.join("training/specs/uci_online_shoppers.toml"));
    let data_path = a
        .data
        .unwrap_or_else(|| root.join("../shared/data/online_shoppers_intention.csv"));
    let solver = tabular::Solver::default();
    uci(&spec_path, &data_path, a.k, a.seed, a.alpha, &solver)?;
    if a.rows > 0 {
        generated(a.rows, a.seed, a.alpha, &solver)?;
    }
    Ok(())
}

/// Stratified k-fold CV on the UCI file, timed per fold (skipped when the
/// file is absent).
fn uci(
    spec_path: &Path,
    data_path: &Path,
    k: usize,
    seed: u64,
    alpha: f64,
    solver: &tabular::Solver,
) -> Result<()> {
    if data_path.exists() {
        let (_, t, _, _) = load_csv(spec_path, data_path, true)?;
        let rows: Vec<usize> = (0..t.len()).collect();
        let fold = cv::stratified_folds(&t.y, k, seed);
        let r = tabular::cross_validate(&t, &rows, &fold, k, alpha, solver)?;
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
    Ok(())
}

/// `n_rows` decision moments of generated sessions: generated, encoded and
/// fitted, each step timed.
fn generated(n_rows: usize, seed: u64, alpha: f64, solver: &tabular::Solver) -> Result<()> {
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
    let refs: Vec<&Row> = rows.iter().collect();
    let enc = SessionEncoder::learn(&refs, 0.999);
    let x = enc.design(&refs);
    let y: Vec<bool> = rows.iter().map(|r| r.converted).collect();
    let prep_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let m = solver.fit(&x, &y, alpha)?;
    let fit_s = t2.elapsed().as_secs_f64();
    println!(
        "generated: {} rows from {sessions} sessions ({} features): generate+replay {:.1} s, transforms+design {:.1} s, fit {:.1} s (|grad|/rows {:.1e}, converged {})",
        rows.len(),
        enc.kept.len(),
        gen_s,
        prep_s,
        fit_s,
        m.gradient_norm_per_row,
        m.gradient_norm_per_row <= solver.gradient_tolerance
    );
    Ok(())
}
