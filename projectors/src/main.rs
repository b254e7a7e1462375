//! projectors: Kafka consumers that build the read models (DESIGN §6).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("projectors");
    let config = infra::config::Config::parse();
    projectors::runner::Projectors::build(config)
        .await?
        .run_until_stopped(infra::shutdown_signal())
        .await
}
