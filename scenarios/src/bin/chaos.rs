//! chaos: the whole platform under the marketplace load and seeded faults, with the invariants
//! checked at the end (see `scenarios::chaos`). Run it with `bash scripts/chaos.sh` (which
//! builds the services and starts the local infrastructure first); it restarts that
//! infrastructure's servers as faults, so run nothing else against them meanwhile.
//!
//!   bash scripts/chaos.sh                              # 3 minutes, a random seed
//!   bash scripts/chaos.sh --seed 42 --duration 600     # repeat a run, longer
//!
//! Exits 1 when an invariant is violated or a fault did not recover; the seed is printed.

use clap::Parser;
use scenarios::chaos::{self, Settings};
use std::{path::PathBuf, process::ExitCode, time::Duration};

#[derive(Debug, Parser)]
#[command(about = "Chaos soak: the platform under load and seeded faults, invariants checked at the end")]
struct Args {
    /// Seconds of load (faults meanwhile).
    #[arg(long, default_value_t = 180)]
    duration: u64,
    /// Seed of the fault schedule and the actors' choices (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Actors running the marketplace flow at once.
    #[arg(long, default_value_t = 6)]
    actors: usize,
    /// Mean seconds between two faults.
    #[arg(long, default_value_t = 15)]
    fault_every: u64,
    /// No faults (a baseline).
    #[arg(long)]
    no_faults: bool,
    /// Where the service binaries and `control` are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The local infrastructure script.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/infra.sh"))]
    infra_script: PathBuf,
    /// Where the logs and the report go (default: target/chaos/<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// RUST_LOG of the services.
    #[arg(long, default_value = "warn")]
    service_log: String,
    /// Longest wait, in seconds, for the pipeline to drain after the load.
    #[arg(long, default_value_t = 300)]
    drain_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| rand::random::<u32>().into());
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .ok_or_else(|| anyhow::anyhow!("no directory of this binary"))?,
    };
    let out_dir = args
        .out
        .unwrap_or_else(|| bin_dir.join("..").join("chaos").join(seed.to_string()));
    let report = chaos::run(Settings {
        duration: Duration::from_secs(args.duration),
        seed,
        actors: args.actors,
        fault_every: Duration::from_secs(args.fault_every),
        no_faults: args.no_faults,
        bin_dir,
        infra_script: args.infra_script,
        out_dir: out_dir.clone(),
        log_filter: args.service_log,
        drain_timeout: Duration::from_secs(args.drain_timeout),
    })
    .await?;
    let text = report.render();
    println!("\n{text}");
    std::fs::write(out_dir.join("report.md"), &text)?;
    println!("report written to {}", out_dir.join("report.md").display());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
