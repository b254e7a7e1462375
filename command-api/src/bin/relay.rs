//! relay: the outbox relay on its own (DESIGN §1, §5), for running it apart from command-api
//! (several instances may run; one batch is in flight at a time across all of them).

use clap::Parser;
use infra::{
    config::{KafkaConfig, PostgresConfig},
    kafka,
    ledger::Ledger,
    relay::Relay,
};
use tokio::sync::watch;

/// The relay's settings: the ledger and the broker (the same variables as every service).
#[derive(Debug, Parser)]
#[command(about = "Publishes the ledger's outbox to Kafka")]
struct Args {
    /// Ledger database.
    #[command(flatten)]
    postgres: PostgresConfig,
    /// Kafka-protocol broker.
    #[command(flatten)]
    kafka: KafkaConfig,
    /// Events published per broker round trip.
    #[arg(
        long = "relay-batch-size",
        env = "WORKUP_RELAY_BATCH_SIZE",
        default_value_t = 500
    )]
    batch_size: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("relay");
    let args = Args::parse();
    let ledger = Ledger::connect(&args.postgres).await?;
    kafka::ensure_topics(&args.kafka, &kafka::context_topics(&args.kafka), false).await?;
    let relay = Relay::new(ledger, &args.kafka, args.batch_size)?;
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(relay.run(stopped));
    infra::shutdown_signal().await;
    let _ = stop.send(true);
    running.await?;
    Ok(())
}
