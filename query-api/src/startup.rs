//! Building and running query-api.

use anyhow::Context as _;
use axum::Router;
use domain::BoundedContext;
use futures::FutureExt;
use infra::{
    cassandra,
    config::Config,
    control::ControlPlane,
    http::auth::TokenKeys,
    read_models::generation::{ReadModelStore, Target},
};
use std::future::Future;
use tokio::net::TcpListener;

use crate::{
    ops::{OpsState, data::Sources},
    routes,
    state::{AppState, LiveState},
};

/// A built query-api, listening.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// Followed while it runs.
    _control: ControlPlane,
}

impl Application {
    /// Connect to the read models and bind.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let control = ControlPlane::join(&config, "query-api")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        let session = cassandra::connect(&config.cassandra)
            .await
            .context("could not connect to Cassandra (WORKUP_CASSANDRA_NODES)")?;
        // Every read model at the generation the control plane makes active.
        let settings = control.settings();
        let serving = settings.borrow().clone();
        let open = |context: BoundedContext| {
            let (session, config) = (&session, &config);
            let target = Target::generation(context, serving.read_model(context.name()).active);
            async move {
                target
                    .open(session, config)
                    .await
                    .with_context(|| format!("could not open the read model {target}"))
            }
        };
        let (
            ReadModelStore::Users(profiles),
            ReadModelStore::Jobs(jobs, cache),
            ReadModelStore::Contracts(contracts),
            ReadModelStore::Payments(payments),
        ) = (
            open(BoundedContext::Users).await?,
            open(BoundedContext::Jobs).await?,
            open(BoundedContext::Contracts).await?,
            open(BoundedContext::Payments).await?,
        )
        else {
            anyhow::bail!("a read model opened as another one");
        };
        let state = AppState {
            keys: TokenKeys::new(&config.auth)?,
            profiles,
            jobs,
            cache,
            wait: config.http.consistency_wait(),
            contracts,
            payments,
            media: infra::media::MediaStore::new(&config.media.dir),
        };
        let ops = OpsState {
            keys: state.keys.clone(),
            sources: Sources::open(&config)
                .context("could not prepare the operations page (WORKUP_PG_URL)")?,
        };
        let live = LiveState::follow(state, &serving, config.clone(), session, settings);
        let router = routes::router(live, ops, &control, &config.http);
        let address = format!("{}:{}", config.http.host, config.http.query_api_port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("could not listen on {address} (WORKUP_QUERY_API_PORT)"))?;
        Ok(Self {
            listener,
            router,
            _control: control,
        })
    }

    /// The port it listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// Serve until `shutdown` resolves, then finish in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "query-api listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.map(|_| ()))
            .await?;
        Ok(())
    }
}
