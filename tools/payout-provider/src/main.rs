//! `payout-provider`: serve the simulated payout provider over HTTP.

use std::{io::IsTerminal, time::Duration};

use anyhow::Context;
use clap::Parser;
use payout_provider::{MAX_DELAY, Provider, Settings};
use tokio::net::TcpListener;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

/// Serve a simulated payout provider (idempotent by withdrawal id, configurable latency and failures).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Host or address to listen on.
    #[arg(long, env = "WORKUP_PAYOUT_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "WORKUP_PAYOUT_PORT", default_value_t = 8086)]
    port: u16,
    /// Time from a payout's creation to its settlement, in milliseconds.
    #[arg(long, env = "WORKUP_PAYOUT_LATENCY_MS", default_value_t = 200)]
    latency_ms: u64,
    /// Extra random delay per payout, uniform in 0..jitter, in milliseconds.
    #[arg(long, env = "WORKUP_PAYOUT_JITTER_MS", default_value_t = 0)]
    jitter_ms: u64,
    /// Share of withdrawal ids declined, in [0, 1] (deterministic per id).
    #[arg(long, env = "WORKUP_PAYOUT_FAILURE_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    failure_rate: f64,
}

fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be within [0, 1]".to_owned())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args = Args::parse();
    let settings = Settings {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        failure_rate: args.failure_rate,
    };
    anyhow::ensure!(
        settings.latency.saturating_add(settings.jitter) <= MAX_DELAY,
        "--latency-ms plus --jitter-ms must not exceed one day"
    );

    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("binding {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        latency_ms = args.latency_ms,
        jitter_ms = args.jitter_ms,
        failure_rate = args.failure_rate,
        "payout provider listening"
    );

    let provider = Provider::new(settings);
    // In-flight requests wait for their payouts to settle (at most latency + jitter).
    axum::serve(listener, provider.router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!(stats = ?provider.stats(), "payout provider stopped (payouts are discarded)");
    Ok(())
}

/// Filter from `RUST_LOG` (default `info`); JSON lines when `WORKUP_LOG_FORMAT=json`, as the
/// services do (`infra::telemetry`), plain text otherwise.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var("WORKUP_LOG_FORMAT").is_ok_and(|f| f == "json") {
        registry.with(tracing_subscriber::fmt::layer().json()).init();
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .init();
    }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
