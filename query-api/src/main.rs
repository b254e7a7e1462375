//! query-api: the read side (DESIGN §3).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("query-api");
    let config = infra::config::Config::parse();
    query_api::startup::Application::build(config)
        .await?
        .run_until_stopped(infra::shutdown_signal())
        .await
}
