//! Opening the projector of a read model into one storage target (a generation of its
//! keyspace, database and key prefix: [`infra::read_models::generation`]). The live projectors
//! open the generations the control plane names; `control replay` opens a fresh one.

use anyhow::Context as _;
use domain::BoundedContext;
use infra::{
    cassandra::{self, Session},
    config::Config,
    kafka::consumer::{EventHandler, HandlerError},
    ledger::{Ledger, RecordedEvent, Upcasters},
    read_models::generation::{ReadModelStore, Target},
};
use std::sync::Arc;
use uuid::Uuid;

use crate::{
    contracts::ContractsProjector, jobs::JobsProjector, payments::PaymentsProjector, users::UsersProjector,
};

/// The projector of one read model, as one handler type.
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

impl Projector {
    /// Whether the stores it writes answer and its tables are there (a read of the versions
    /// applied): a Cassandra node that came back empty fails this until the read model is
    /// rebuilt into a new generation (`control replay rebuild`).
    pub async fn ping(&self) -> Result<(), HandlerError> {
        let none = Uuid::nil();
        match self {
            Self::Users(p) => {
                p.profiles.ping().await?;
                p.profiles.applied(none).await?;
            }
            Self::Jobs(p) => p.ping().await?,
            Self::Contracts(p) => {
                p.contracts.ping().await?;
                p.contracts.applied(none).await?;
            }
            Self::Payments(p) => {
                p.store.ping().await?;
                p.store.applied_payment_request(none).await?;
            }
        }
        Ok(())
    }
}

/// The contexts whose events a read model is built from: its own, and for the jobs model the
/// users' too (an erased person's proposals are redacted on their `UserDeleted`).
pub fn sources(context: BoundedContext) -> &'static [BoundedContext] {
    match context {
        BoundedContext::Jobs => &[BoundedContext::Jobs, BoundedContext::Users],
        BoundedContext::Users => &[BoundedContext::Users],
        BoundedContext::Contracts => &[BoundedContext::Contracts],
        BoundedContext::Payments => &[BoundedContext::Payments],
    }
}

/// What every target is opened with: the configuration, the Cassandra session and the ledger
/// (whose key table opens personal fields).
#[derive(Clone)]
pub struct Catalog {
    config: Config,
    session: Arc<Session>,
    ledger: Ledger,
}

impl Catalog {
    /// Connect to Cassandra (the other stores are connected per target).
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let session = cassandra::connect(&config.cassandra)
            .await
            .context("could not connect to Cassandra (WORKUP_CASSANDRA_NODES)")?;
        let ledger = Ledger::connect(&config.postgres)
            .await
            .context("could not connect to the ledger (WORKUP_PG_URL)")?;
        Ok(Self {
            config,
            session,
            ledger,
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The configuration (the deployment's own storage: generation 0).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Cassandra session.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The projector of `target`'s read model writing into `target`, its schema created first.
    pub async fn open(&self, target: Target) -> anyhow::Result<Projector> {
        let store = target
            .open(&self.session, &self.config)
            .await
            .with_context(|| format!("could not open the read model {target}"))?;
        let upcasters = Upcasters::current();
        let projector = match store {
            ReadModelStore::Users(profiles) => Projector::Users(UsersProjector {
                profiles,
                upcasters,
                ledger: self.ledger.clone(),
            }),
            ReadModelStore::Jobs(store, cache) => {
                Projector::Jobs(JobsProjector::new(store, cache, upcasters, self.ledger.clone()))
            }
            ReadModelStore::Contracts(contracts) => {
                Projector::Contracts(ContractsProjector { contracts, upcasters })
            }
            ReadModelStore::Payments(store) => Projector::Payments(PaymentsProjector { store, upcasters }),
        };
        tracing::info!(%target, "read model opened");
        Ok(projector)
    }
}
