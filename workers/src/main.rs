//! withdrawal-worker: pays requested withdrawals out through the payout provider (DESIGN §9).
//! Scale by running more of it: the intake is a consumer group, the tasks a shared queue.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("withdrawal-worker");
    let config = infra::config::Config::parse();
    workers::runner::WithdrawalWorker::build(config)
        .await?
        .run_until_stopped(infra::shutdown_signal())
        .await
}
