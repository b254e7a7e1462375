//! command-api: the write side (DESIGN §3). Also runs the outbox relay.

use clap::Parser;

/// glibc's allocator took 14-19 % of the service's CPU under the HTTP benchmark, mimalloc about
/// 10 % (README, "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("command-api");
    let config = infra::config::Config::parse();
    command_api::startup::Application::build(config)
        .await?
        .run_until_stopped(infra::shutdown_signal())
        .await
}
