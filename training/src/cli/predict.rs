//! `nudge-train predict`: a model file's probability for every row, written
//! as CSV for comparison with other tools.

use super::score::{score, ScoreInput};
use anyhow::Result;
use clap::Args;
use nudge_train::output;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    input: ScoreInput,
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: PredictArgs) -> Result<()> {
    let scored = score(&a.input)?;
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
    output::write_atomic(&a.out, s.as_bytes())?;
    eprintln!(
        "wrote {} predictions to {}",
        scored.p.len(),
        a.out.display()
    );
    Ok(())
}
