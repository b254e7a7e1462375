//! Starting every projector, and the health/metrics endpoint of the process.

use anyhow::Context as _;
use domain::BoundedContext;
use infra::{
    cassandra,
    config::{Config, KafkaConfig},
    control::{ControlPlane, limit::Limit},
    http::{health, with_common_layers},
    kafka::consumer::{self, ConsumerOptions},
    mongo,
    read_models::users::UserProfiles,
    service::Workers,
};
use std::{future::Future, sync::Arc};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::{
    catalog::{Catalog, sources},
    generations::Generations,
};

/// Start the consumer group of `context`'s projector on its topic, feeding `handler`.
fn spawn_projector(
    consumers: &mut JoinSet<anyhow::Result<()>>,
    (kafka, control, limit): (&KafkaConfig, &ControlPlane, &Limit),
    stopped: &watch::Receiver<bool>,
    context: BoundedContext,
    handler: Generations,
) {
    let topics = sources(context).iter().map(|c| kafka.context_topic(*c)).collect();
    let mut options = ConsumerOptions::projector(context.name(), topics);
    options.control = Some(control.settings());
    options.limit = Some(limit.clone());
    let (kafka, stopped, handler) = (kafka.clone(), stopped.clone(), Arc::new(handler));
    consumers.spawn(async move { Ok(consumer::run(&kafka, options, handler, stopped).await?) });
}

/// The running projectors of one process.
pub struct Projectors {
    workers: Workers,
}

impl Projectors {
    /// Connect to the read models, create their schema and start every consumer.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // The users and jobs projectors open personal data with the master keys.
        config.postgres.require_master_keys(config.auth.environment)?;
        let control = ControlPlane::join(&config, "projectors")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        let catalog = Catalog::connect(config.clone()).await?;
        // Each generation's schema is created where it is opened (`Target::open`).
        let session = catalog.session().clone();
        let db = mongo::connect(&config.mongo)
            .await
            .context("could not connect to MongoDB (WORKUP_MONGO_URL)")?;
        // One limit for all the consumers of this instance (`max_concurrency`).
        let limit = Limit::following(&control.settings());
        let (stop, stopped) = watch::channel(false);
        let mut consumers = JoinSet::new();
        for context in BoundedContext::ALL {
            let handler =
                Generations::open(catalog.clone(), context, control.settings(), stopped.clone()).await?;
            spawn_projector(
                &mut consumers,
                (&config.kafka, &control, &limit),
                &stopped,
                context,
                handler,
            );
        }
        let checks = vec![
            health::ready_check(
                "mongodb",
                UserProfiles::new(&db),
                |p| async move { p.ping().await },
            ),
            health::ready_check("cassandra", session, |s| async move { cassandra::ping(&s).await }),
            // The personal data keys (users and jobs projectors open personal fields with them).
            health::ready_check(
                "postgres",
                catalog.ledger().clone(),
                |l| async move { l.ping().await },
            ),
        ];
        let router = with_common_layers(health::router("projectors", checks), &config.http);
        let address = format!("{}:{}", config.http.host, config.http.projectors_port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("could not listen on {address} (WORKUP_PROJECTORS_PORT)"))?;
        Ok(Self {
            workers: Workers::new(listener, router, consumers, stop).with_control(control),
        })
    }

    /// The port of the HTTP endpoint.
    pub fn port(&self) -> u16 {
        self.workers.port()
    }

    /// Run until `shutdown` resolves or a worker fails; then stop every consumer (each finishing
    /// its event in flight and committing its offsets) and the server.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.workers.run_until_stopped("projectors", shutdown).await
    }
}
