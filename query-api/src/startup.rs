//! Building and running query-api.

use anyhow::Context as _;
use axum::Router;
use futures::FutureExt;
use infra::{
    cassandra,
    config::Config,
    control::ControlPlane,
    http::auth::TokenKeys,
    mongo,
    read_models::{jobs::JobStore, users::UserProfiles},
    redis::Cache,
};
use std::future::Future;
use tokio::net::TcpListener;

use crate::{routes, state::AppState};

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
        let session = cassandra::connect(&config.cassandra)
            .await
            .context("could not connect to Cassandra (WORKUP_CASSANDRA_NODES)")?;
        cassandra::ensure_schema(&session, &config.cassandra)
            .await
            .context("could not create the Cassandra schema")?;
        let db = mongo::connect(&config.mongo)
            .await
            .context("could not connect to MongoDB (WORKUP_MONGO_URL)")?;
        infra::read_models::contracts::ensure_schema(&session, &config.cassandra.keyspace)
            .await
            .context("could not create the contracts tables")?;
        let contracts = infra::read_models::contracts::ContractsReadModel::new(
            session.clone(),
            &config.cassandra.keyspace,
        )
        .await?;
        infra::read_models::payments::ensure_schema(&session, &config.cassandra.keyspace)
            .await
            .context("could not create the payments tables")?;
        let payments = infra::read_models::payments::Payments::new(
            session.clone(),
            &config.cassandra.keyspace,
            &config.redis,
        )
        .await
        .context("could not open the payments read model")?;
        infra::read_models::jobs::ensure_schema(&session, &config.cassandra.keyspace)
            .await
            .context("could not create the jobs tables")?;
        let state = AppState {
            keys: TokenKeys::new(&config.auth)?,
            profiles: UserProfiles::new(&db),
            jobs: JobStore::new(session, &config.cassandra.keyspace).await?,
            cache: Cache::connect(&config.redis)
                .await
                .context("could not connect to Redis (WORKUP_REDIS_URL)")?,
            wait: config.http.consistency_wait(),
            contracts,
            payments,
            media: infra::media::MediaStore::new(&config.media.dir),
        };
        let control = ControlPlane::join(&config, "query-api")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        let router = routes::router(state, &control, &config.http);
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
