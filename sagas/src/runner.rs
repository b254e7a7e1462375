//! Starting the sagas service: one consumer group per process manager (scale by running more
//! instances), the deadline poller, and the HTTP endpoint (health, readiness, metrics, history).

use anyhow::Context as _;
use axum::Router;
use domain::BoundedContext;
use infra::{
    config::{Config, KafkaConfig},
    control::{self, ControlPlane, limit::Limit},
    http::{auth::TokenKeys, health, openapi, with_common_layers},
    kafka::{
        self,
        consumer::{self, ConsumerOptions, EventHandler, HandlerError},
    },
    ledger::{Ledger, RecordedEvent, Upcasters},
    sagas::SagaStore,
    service::Workers,
};
use std::{future::Future, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use utoipa::OpenApi;

use crate::{
    completion::Completion,
    contract_initiation::ContractInitiation,
    deadlines::Deadlines,
    payments::PaymentRequests,
    routes::{self, SagasState},
    saga::Saga,
};

/// How often each consumer group's lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(2);
/// Attempts before a saga parks an event: a saga step must not give up on a short outage.
const SAGA_ATTEMPTS: u32 = 12;

/// Every process manager, as one handler type.
pub enum ProcessManager {
    /// ProposalAccepted → contract.
    ContractInitiation(ContractInitiation),
    /// MilestoneAccepted → payment request; TerminationAccepted → cancellations.
    PaymentRequests(PaymentRequests),
    /// PaymentRequestPaid → milestone paid.
    Completion(Completion),
}

impl EventHandler for ProcessManager {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        match self {
            Self::ContractInitiation(s) => s.handle(event).await,
            Self::PaymentRequests(s) => s.handle(event).await,
            Self::Completion(s) => s.handle(event).await,
        }
    }

    /// The ledger (commands and the sagas' own state) answers.
    async fn ready(&self) -> Result<(), HandlerError> {
        let saga = match self {
            Self::ContractInitiation(s) => &s.saga,
            Self::PaymentRequests(s) => &s.saga,
            Self::Completion(s) => &s.saga,
        };
        Ok(saga.ledger.ping().await?)
    }
}

/// The running sagas service.
pub struct Sagas {
    workers: Workers,
}

impl Sagas {
    /// Connect to the ledger (migrating it), start every consumer group and the poller, bind.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let keys = TokenKeys::new(&config.auth)?;
        let ledger = Ledger::connect(&config.postgres)
            .await
            .context("could not connect to the ledger (WORKUP_PG_URL)")?;
        kafka::ensure_topics(&config.kafka, &kafka::context_topics(&config.kafka), false)
            .await
            .context("could not create the Kafka topics (WORKUP_KAFKA_BROKERS)")?;
        let store = SagaStore::new(ledger.clone());
        let saga = |name| Saga {
            name,
            ledger: ledger.clone(),
            store: store.clone(),
        };
        let control = ControlPlane::join(&config, "sagas")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        control::follow_pool_limit(
            ledger.clone(),
            control.settings(),
            config.postgres.max_connections,
        );
        // One limit for all the process managers of this instance (`max_concurrency`).
        let limit = Limit::following(&control.settings());
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut spawn = |name: &'static str, context, manager| {
            spawn_consumer(
                &mut tasks,
                (&config.kafka, &control, &limit),
                &stopped,
                name,
                context,
                manager,
            )
        };
        spawn(
            "contract-initiation",
            BoundedContext::Jobs,
            ProcessManager::ContractInitiation(ContractInitiation {
                saga: saga("contract-initiation"),
                upcasters: Upcasters::current(),
            }),
        );
        let period = chrono::Duration::seconds(i64::try_from(config.sagas.payment_request_period_secs)?);
        spawn(
            "payment-requests",
            BoundedContext::Contracts,
            ProcessManager::PaymentRequests(PaymentRequests {
                saga: saga("payment-requests"),
                period,
                upcasters: Upcasters::current(),
            }),
        );
        spawn(
            "completion",
            BoundedContext::Payments,
            ProcessManager::Completion(Completion {
                saga: saga("completion"),
                upcasters: Upcasters::current(),
            }),
        );
        let deadlines = Deadlines {
            saga: saga("deadlines"),
            every: Duration::from_millis(config.sagas.deadline_poll_ms),
            control: control.settings(),
        };
        tasks.spawn(deadlines.run(stopped.clone()));

        let ledger_check = health::ready_check("ledger", ledger.clone(), |l| async move { l.ping().await });
        let api = routes::router().with_state(SagasState { keys, store });
        let router = with_common_layers(
            Router::new()
                .nest("/api/v1", api)
                .merge(health::router("sagas", vec![ledger_check]))
                .merge(openapi::router(routes::ApiDoc::openapi())),
            &config.http,
        );
        let address = format!("{}:{}", config.http.host, config.sagas.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("could not listen on {address} (WORKUP_SAGAS_PORT)"))?;
        Ok(Self {
            workers: Workers::new(listener, router, tasks, stop).with_control(control),
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
        self.workers.run_until_stopped("sagas", shutdown).await
    }
}

/// Start consumer group `name` on the topic of `context`, feeding `manager`.
fn spawn_consumer(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    (kafka, control, limit): (&KafkaConfig, &ControlPlane, &Limit),
    stopped: &watch::Receiver<bool>,
    name: &'static str,
    context: BoundedContext,
    manager: ProcessManager,
) {
    let mut options = ConsumerOptions::new(name, vec![kafka.context_topic(context)]);
    options.control = Some(control.settings());
    options.limit = Some(limit.clone());
    options.max_attempts = SAGA_ATTEMPTS;
    // Lag (events and seconds behind) and DLQ size in `/metrics`, as for projectors.
    options.projector_lag = Some(LAG_EVERY);
    let (kafka, stopped, manager) = (kafka.clone(), stopped.clone(), Arc::new(manager));
    tasks.spawn(async move { Ok(consumer::run(&kafka, options, manager, stopped).await?) });
}
