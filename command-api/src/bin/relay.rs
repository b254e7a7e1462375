//! relay: the outbox relay on its own (DESIGN §1, §5), for running it apart from command-api
//! (several instances may run; one batch is in flight at a time across all of them).

use anyhow::Context as _;
use clap::Parser;
use infra::{
    config::{ControlConfig, Environment, KafkaConfig, PostgresConfig},
    control::{self, ControlPlane},
    http::health,
    kafka,
    ledger::Ledger,
    relay::Relay,
};
use tokio::{net::TcpListener, sync::watch};

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
    /// The control plane (DESIGN §10): `control freeze relay` pauses it.
    #[command(flatten)]
    control: ControlConfig,
    /// `dev` runs with the local control key when none is set.
    #[arg(long = "env", env = "WORKUP_ENV", value_enum, default_value = "production")]
    environment: Environment,
    /// Events published per broker round trip.
    #[arg(
        long = "relay-batch-size",
        env = "WORKUP_RELAY_BATCH_SIZE",
        default_value_t = 500
    )]
    batch_size: i64,
    /// Address of `/health`, `/ready` and `/metrics` (lag gauges).
    #[arg(
        long = "relay-listen",
        env = "WORKUP_RELAY_LISTEN",
        default_value = "127.0.0.1:8083"
    )]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    infra::telemetry::init("relay");
    let args = Args::parse();
    let ledger = Ledger::connect(&args.postgres).await?;
    kafka::ensure_topics(&args.kafka, &kafka::context_topics(&args.kafka), false).await?;
    let control = ControlPlane::join_with(&args.kafka, &args.control, args.environment, "relay")
        .await
        .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
    control::follow_pool_limit(ledger.clone(), control.settings(), args.postgres.max_connections);
    let relay = Relay::new(ledger.clone(), &args.kafka, args.batch_size)?.with_control(control.settings());
    let ready = health::ready_check("postgres", ledger, |l| async move { l.ping().await });
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("could not listen on {} (WORKUP_RELAY_LISTEN)", args.listen))?;
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(relay.run(stopped.clone()));
    let server =
        axum::serve(listener, health::router("relay", vec![ready])).with_graceful_shutdown(async move {
            let mut stopped = stopped;
            let _ = stopped.changed().await;
        });
    let server = tokio::spawn(server.into_future());
    infra::shutdown_signal().await;
    let _ = stop.send(true);
    running.await?;
    server.await??;
    drop(control);
    Ok(())
}
