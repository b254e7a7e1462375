//! Building and running command-api: bind, create topics, start the relay, serve.

use anyhow::Context as _;
use axum::Router;
use futures::FutureExt;
use infra::{
    config::Config,
    control::{self, ControlPlane},
    http::{
        auth::{Passwords, TokenKeys},
        limits::SignInLimits,
    },
    kafka,
    ledger::Ledger,
    relay::Relay,
};
use std::future::Future;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{routes, state::AppState};

/// Events the relay publishes per broker round trip.
const RELAY_BATCH: i64 = 500;

/// A built command-api: listening, with its relay running.
pub struct Application {
    listener: TcpListener,
    router: Router,
    relay: JoinHandle<()>,
    stop_relay: watch::Sender<bool>,
    /// Followed while it runs.
    control: ControlPlane,
}

impl Application {
    /// Connect to the ledger (migrating it), create the topics, start the relay and bind.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Refuse a weak token secret before touching anything else.
        TokenKeys::new(&config.auth)?;
        config.postgres.require_master_keys(config.auth.environment)?;
        let ledger = Ledger::connect(&config.postgres)
            .await
            .with_context(|| "could not connect to the ledger (WORKUP_PG_URL)".to_string())?;
        ledger
            .seal_legacy_personal_data()
            .await
            .context("could not seal the personal data of earlier events")?;
        kafka::ensure_topics(&config.kafka, &kafka::context_topics(&config.kafka), false)
            .await
            .context("could not create the Kafka topics (WORKUP_KAFKA_BROKERS)")?;
        // The current settings are applied before the first request is taken.
        let control = ControlPlane::join(&config, "command-api")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        control::follow_pool_limit(
            ledger.clone(),
            control.settings(),
            config.postgres.max_connections,
        );
        let relay = Relay::new(ledger.clone(), &config.kafka, RELAY_BATCH)?.with_control(control.settings());
        let (stop_relay, stopped) = watch::channel(false);
        let relay = tokio::spawn(relay.run(stopped));
        let state = AppState {
            ledger,
            keys: TokenKeys::new(&config.auth)?,
            passwords: Passwords::new(config.auth.hash_concurrency),
            limits: SignInLimits::new(&config.auth),
            media: infra::media::MediaStore::new(&config.media.dir),
            max_photo_bytes: config.media.max_photo_bytes,
            max_resume_bytes: config.media.max_resume_bytes,
            cooldown: config.withdrawals.cooldown(),
        };
        let router = routes::router(state, &control, &config.http);
        let address = format!("{}:{}", config.http.host, config.http.command_api_port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("could not listen on {address} (WORKUP_COMMAND_API_PORT)"))?;
        Ok(Self {
            listener,
            router,
            relay,
            stop_relay,
            control,
        })
    }

    /// Its id on the control plane (DESIGN §10).
    pub fn instance_id(&self) -> &str {
        self.control.instance_id()
    }

    /// The port it listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests and the relay batch.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "command-api listening");
        let app = self
            .router
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.map(|_| ()))
            .await?;
        let _ = self.stop_relay.send(true);
        self.relay.await?;
        drop(self.control);
        Ok(())
    }
}
