//! command-api: the write side (DESIGN §3). Also runs the outbox relay.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("command-api");
    let config = infra::config::Config::parse();
    command_api::startup::Application::build(config)
        .await?
        .run_until_stopped(infra::shutdown_signal())
        .await
}
