//! Starting every projector, and the health/metrics endpoint of the process.

use anyhow::Context as _;
use domain::BoundedContext;
use infra::read_models::contracts::{self as contracts_read_model, ContractsReadModel};
use infra::read_models::jobs::{self as jobs_read_model, JobStore};
use infra::{
    cassandra,
    config::Config,
    config::KafkaConfig,
    control::{ControlPlane, limit::Limit},
    http::{health, with_common_layers},
    kafka::consumer::{self, ConsumerOptions, EventHandler, HandlerError},
    ledger::{RecordedEvent, Upcasters},
    mongo,
    read_models::users::UserProfiles,
    redis::Cache,
    service::Workers,
};
use std::{future::Future, sync::Arc};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};

use crate::contracts::ContractsProjector;
use crate::payments::PaymentsProjector;
use crate::{jobs::JobsProjector, users::UsersProjector};
use infra::read_models::payments::{self as payments_read_model, Payments};

/// Every projector of the process, as one handler type for [`spawn_projector`]; each context
/// adds its variant.
pub enum Projector {
    /// users → MongoDB profiles.
    Users(UsersProjector),
    /// jobs → Cassandra and the cache.
    Jobs(JobsProjector),
    /// contracts → Cassandra contracts, milestones and termination requests.
    Contracts(ContractsProjector),
    /// payments → Redis wallets and withdrawals, Cassandra payment requests.
    Payments(PaymentsProjector),
}

impl From<PaymentsProjector> for Projector {
    fn from(p: PaymentsProjector) -> Self {
        Self::Payments(p)
    }
}

impl From<UsersProjector> for Projector {
    fn from(p: UsersProjector) -> Self {
        Self::Users(p)
    }
}

impl From<JobsProjector> for Projector {
    fn from(p: JobsProjector) -> Self {
        Self::Jobs(p)
    }
}

impl From<ContractsProjector> for Projector {
    fn from(p: ContractsProjector) -> Self {
        Self::Contracts(p)
    }
}

impl EventHandler for Projector {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        match self {
            Self::Users(p) => p.handle(event).await,
            Self::Jobs(p) => p.handle(event).await,
            Self::Contracts(p) => p.handle(event).await,
            Self::Payments(p) => p.handle(event).await,
        }
    }
}

/// Start consumer group `name` on the topics of `contexts`, feeding `handler`.
fn spawn_projector(
    consumers: &mut JoinSet<anyhow::Result<()>>,
    (kafka, control, limit): (&KafkaConfig, &ControlPlane, &Limit),
    stopped: &watch::Receiver<bool>,
    name: &str,
    contexts: &[BoundedContext],
    handler: Projector,
) {
    let topics = contexts.iter().map(|c| kafka.context_topic(*c)).collect();
    let mut options = ConsumerOptions::projector(name, topics);
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
        let session = cassandra::connect(&config.cassandra)
            .await
            .context("could not connect to Cassandra (WORKUP_CASSANDRA_NODES)")?;
        cassandra::ensure_schema(&session, &config.cassandra)
            .await
            .context("could not create the Cassandra schema")?;
        let db = mongo::connect(&config.mongo)
            .await
            .context("could not connect to MongoDB (WORKUP_MONGO_URL)")?;
        let cache = Cache::connect(&config.redis)
            .await
            .context("could not connect to Redis (WORKUP_REDIS_URL)")?;
        let profiles = UserProfiles::new(&db);
        contracts_read_model::ensure_schema(&session, &config.cassandra.keyspace)
            .await
            .context("could not create the contracts tables")?;
        let contracts = ContractsReadModel::new(session.clone(), &config.cassandra.keyspace).await?;
        payments_read_model::ensure_schema(&session, &config.cassandra.keyspace)
            .await
            .context("could not create the payments tables")?;
        let payments = Payments::new(session.clone(), &config.cassandra.keyspace, &config.redis)
            .await
            .context("could not open the payments read model")?;
        jobs_read_model::ensure_schema(&session, &config.cassandra.keyspace)
            .await
            .context("could not create the jobs tables")?;
        let jobs = JobStore::new(session, &config.cassandra.keyspace).await?;

        let control = ControlPlane::join(&config, "projectors")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        // One limit for all the consumers of this instance (`max_concurrency`).
        let limit = Limit::following(&control.settings());
        let (stop, stopped) = watch::channel(false);
        let mut consumers = JoinSet::new();
        let mut spawn = |name: &str, contexts: &[BoundedContext], handler| {
            spawn_projector(
                &mut consumers,
                (&config.kafka, &control, &limit),
                &stopped,
                name,
                contexts,
                handler,
            )
        };
        spawn(
            "users",
            &[BoundedContext::Users],
            Projector::from(UsersProjector {
                profiles: profiles.clone(),
                upcasters: Upcasters::current(),
            }),
        );
        spawn(
            "jobs",
            &[BoundedContext::Jobs],
            Projector::from(JobsProjector::new(jobs.clone(), cache, Upcasters::current())),
        );
        spawn(
            "contracts",
            &[BoundedContext::Contracts],
            Projector::from(ContractsProjector {
                contracts,
                upcasters: Upcasters::current(),
            }),
        );

        spawn(
            "payments",
            &[BoundedContext::Payments],
            Projector::from(PaymentsProjector {
                store: payments,
                upcasters: Upcasters::current(),
            }),
        );

        let checks = vec![
            health::ready_check("mongodb", profiles, |p| async move { p.ping().await }),
            health::ready_check("cassandra", jobs, |j| async move { j.ping().await }),
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
