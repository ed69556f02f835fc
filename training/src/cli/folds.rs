//! `nudge-train folds`: the stratified fold of every CSV row, written so
//! other tools (e.g. scikit-learn) can cross-validate on the same folds.

use super::CsvFolds;
use anyhow::Result;
use clap::Args;
use nudge_train::output;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct FoldsArgs {
    #[command(flatten)]
    csv: CsvFolds,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: FoldsArgs) -> Result<()> {
    let (t, _, f) = a.csv.load()?;
    let (k, seed, out) = (a.csv.k, a.csv.seed, &a.out);
    let mut s = String::from("row,fold\n");
    for (i, v) in f.iter().enumerate() {
        s.push_str(&format!("{i},{v}\n"));
    }
    output::write_atomic(out, s.as_bytes())?;
    eprintln!(
        "wrote {} rows, {k} folds (seed {seed}) to {}",
        t.len(),
        out.display()
    );
    Ok(())
}
