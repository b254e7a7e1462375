//! `control`: steer the running services (DESIGN §10). See `control --help`.

use clap::Parser;
use control::{Cli, Outcome};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // Usage errors exit 2 (clap), --help and --version 0.
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match control::run(&cli, &mut stdout).await {
        Ok(outcome) => {
            if let Outcome::Failed(reason) = &outcome {
                eprintln!("error: {reason}");
            }
            outcome.exit_code()
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
