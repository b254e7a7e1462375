//! sagas: the process managers (DESIGN §7).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("sagas");
    let config = infra::config::Config::parse();
    sagas::runner::Sagas::build(config)
        .await?
        .run_until_stopped(infra::shutdown_signal())
        .await
}
