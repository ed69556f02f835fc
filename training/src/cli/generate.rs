//! `nudge-train generate`: generated sessions written to a file, as the
//! trainer reads them or in the service's log format.

use anyhow::Result;
use clap::{Args, ValueEnum};
use nudge::sim::synth::ResponseWorld;
use nudge_train::{data, logs, output};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One generated session (events, decision points, truth) per line.
    Sessions,
    /// The service's decision-log format (events, decision, outcome records).
    Log,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[arg(long, default_value_t = 40_000)]
    sessions: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The generator's response world: how strongly vouchers work and how
    /// much of price sensitivity the page signals show.
    #[arg(long, value_enum, default_value_t = ResponseWorld::Calibrated)]
    world: ResponseWorld,
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Sessions)]
    format: Format,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let GenerateArgs {
        sessions,
        seed,
        world,
        out,
        format,
    } = a;
    let bytes = match format {
        Format::Sessions => data::generate_world_jsonl(sessions, seed, world),
        Format::Log => {
            let s = data::parse_jsonl(&data::generate_world_jsonl(sessions, seed, world))?;
            logs::generated_to_log(&s)
        }
    };
    output::write_atomic(&out, &bytes)?;
    eprintln!(
        "wrote {sessions} sessions ({format:?} format, world {world}, {} bytes, sha256 {}) to {}",
        bytes.len(),
        data::sha256_hex(&bytes),
        out.display()
    );
    Ok(())
}
