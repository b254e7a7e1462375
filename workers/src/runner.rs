//! Starting the withdrawal worker: its intake (a consumer group on the payments topic), its
//! executor, the queue's gauges, and its HTTP endpoint (health, readiness, metrics).

use anyhow::Context as _;
use axum::Router;
use domain::BoundedContext;
use infra::{
    config::Config,
    control::{self, ControlPlane},
    http::{health, with_common_layers},
    kafka::{
        self,
        consumer::{self, ConsumerOptions},
    },
    ledger::{Ledger, Upcasters},
    payouts::PayoutClient,
    service::Workers,
    withdrawals::WithdrawalTasks,
};
use std::{sync::Arc, time::Duration};
use tokio::{
    net::TcpListener,
    sync::{Notify, watch},
    task::JoinSet,
};
use uuid::Uuid;

use crate::{executor::Executor, intake::Intake};

/// The intake's consumer group.
pub const GROUP: &str = "withdrawal-worker";
/// How often the queue's gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(2);
/// Attempts before the intake parks an event (it only writes one row: a long outage is rare).
const INTAKE_ATTEMPTS: u32 = 12;

/// The running worker.
pub struct WithdrawalWorker {
    workers: Workers,
}

impl WithdrawalWorker {
    /// Connect to the ledger (migrating it), start the intake, the executor and the gauges, bind.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let settings = &config.withdrawals;
        let ledger = Ledger::connect(&config.postgres)
            .await
            .context("could not connect to the ledger (WORKUP_PG_URL)")?;
        kafka::ensure_topics(&config.kafka, &kafka::context_topics(&config.kafka), false)
            .await
            .context("could not create the Kafka topics (WORKUP_KAFKA_BROKERS)")?;
        let provider = PayoutClient::new(&settings.provider_url)
            .context("could not build the payout provider's client (WORKUP_PAYOUT_PROVIDER_URL)")?;
        let tasks = WithdrawalTasks::new(ledger.clone());
        let wake = Arc::new(Notify::new());
        let control = ControlPlane::join(&config, "withdrawal-worker")
            .await
            .context("could not join the control plane (WORKUP_CONTROL_KEY, WORKUP_KAFKA_BROKERS)")?;
        control::follow_pool_limit(
            ledger.clone(),
            control.settings(),
            config.postgres.max_connections,
        );
        let (stop, stopped) = watch::channel(false);
        let mut jobs = JoinSet::new();

        let mut options =
            ConsumerOptions::new(GROUP, vec![config.kafka.context_topic(BoundedContext::Payments)]);
        options.max_attempts = INTAKE_ATTEMPTS;
        options.projector_lag = Some(GAUGES_EVERY);
        options.control = Some(control.settings());
        let intake = Arc::new(Intake {
            tasks: tasks.clone(),
            upcasters: Upcasters::current(),
            wake: wake.clone(),
        });
        let (kafka, intake_stopped) = (config.kafka.clone(), stopped.clone());
        jobs.spawn(async move { Ok(consumer::run(&kafka, options, intake, intake_stopped).await?) });

        let executor = Arc::new(Executor {
            ledger: ledger.clone(),
            tasks: tasks.clone(),
            provider,
            worker_id: format!(
                "withdrawal-worker-{}-{}",
                std::process::id(),
                Uuid::new_v4().simple()
            ),
            timeout: settings.timeout(),
            lease: settings.lease(),
            concurrency: settings.concurrency.max(1),
            control: control.settings(),
            poll: Duration::from_millis(settings.poll_ms.max(10)),
            wake,
        });
        jobs.spawn(executor.run(stopped.clone()));
        jobs.spawn(publish_gauges(tasks, stopped));

        let ledger_check = health::ready_check("ledger", ledger, |l| async move { l.ping().await });
        let router = with_common_layers(
            Router::new().merge(health::router("withdrawal-worker", vec![ledger_check])),
            &config.http,
        );
        let address = format!("{}:{}", config.http.host, settings.worker_port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("could not listen on {address} (WORKUP_WITHDRAWAL_WORKER_PORT)"))?;
        Ok(Self {
            workers: Workers::new(listener, router, jobs, stop).with_control(control),
        })
    }

    /// The port of the HTTP endpoint.
    pub fn port(&self) -> u16 {
        self.workers.port()
    }

    /// Run until `shutdown` resolves or a part fails; then stop the intake (committing its
    /// offsets), let tasks in flight finish briefly, and stop the server.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.workers
            .run_until_stopped("withdrawal-worker", shutdown)
            .await
    }
}

/// Tasks by state and the queue depth (due tasks no worker holds), every [`GAUGES_EVERY`].
async fn publish_gauges(tasks: WithdrawalTasks, mut stopped: watch::Receiver<bool>) -> anyhow::Result<()> {
    loop {
        match tasks.counts().await {
            Ok(counts) => {
                for (state, n) in [
                    ("scheduled", counts.scheduled),
                    ("queued", counts.queued),
                    ("running", counts.running),
                    ("succeeded", counts.succeeded),
                    ("failed", counts.failed),
                    ("cancelled", counts.cancelled),
                ] {
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("workup_withdrawal_tasks", "state" => state).set(n as f64);
                }
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("workup_withdrawal_queue_depth").set(counts.queued as f64);
            }
            Err(error) => tracing::warn!(%error, "could not count withdrawal tasks"),
        }
        tokio::select! {
            _ = stopped.changed() => return Ok(()),
            () = tokio::time::sleep(GAUGES_EVERY) => {}
        }
    }
}
