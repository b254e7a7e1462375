//! A live projector follows the control plane's `read_model:<context>` setting (DESIGN §8,
//! blue/green): it writes the active generation of its read model, opening a newly named one
//! before its next event, and holds its events while a rebuild hands over (`paused_until`).
//!
//! One writer per generation at a time: a rebuild replays the ledger into a fresh generation
//! that no projector writes; at the handover the projector holds its next event, the rebuild
//! reads what was committed meanwhile, names the new generation active, and the projector goes
//! on from its offset into it. Two writers racing on a fresh generation could apply a newer
//! version of a stream before the older ones and (version guard) lose those for good.

use chrono::Utc;
use domain::BoundedContext;
use infra::{
    control::Settings,
    kafka::consumer::{EventHandler, HandlerError},
    ledger::RecordedEvent,
    read_models::generation::Target,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::{Mutex, watch};

use crate::catalog::{Catalog, Projector};

/// The generation written now.
struct Open {
    generation: u32,
    projector: Arc<Projector>,
}

/// The projector of one read model, following its generations.
pub struct Generations {
    context: BoundedContext,
    catalog: Catalog,
    settings: watch::Receiver<Settings>,
    stopped: watch::Receiver<bool>,
    open: Mutex<Open>,
}

impl Generations {
    /// Open the generation `settings` make active for `context` now; `stopped` ends a pause.
    pub async fn open(
        catalog: Catalog,
        context: BoundedContext,
        settings: watch::Receiver<Settings>,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let generation = settings.borrow().read_model(context.name()).active;
        let projector = Arc::new(catalog.open(Target::generation(context, generation)).await?);
        Ok(Self {
            context,
            catalog,
            settings,
            stopped,
            open: Mutex::new(Open {
                generation,
                projector,
            }),
        })
    }

    /// Hold while the read model is paused; an error if the process stops meanwhile (the event
    /// is not acknowledged and comes again).
    async fn unpaused(&self) -> Result<(), HandlerError> {
        let (mut settings, mut stopped) = (self.settings.clone(), self.stopped.clone());
        loop {
            let until = settings
                .borrow_and_update()
                .read_model(self.context.name())
                .paused_until;
            let left = match until {
                Some(until) if until > Utc::now() => (until - Utc::now()).to_std().unwrap_or_default(),
                _ => return Ok(()),
            };
            tracing::info!(
                context = self.context.name(),
                ?until,
                "read model paused for a handover"
            );
            tokio::select! {
                () = tokio::time::sleep(left.min(Duration::from_secs(1))) => {}
                _ = settings.changed() => {}
                _ = stopped.changed() => return Err("stopping while the read model is paused".into()),
            }
        }
    }

    /// The projector of the active generation, opened if newly named.
    async fn projector(&self) -> Result<Arc<Projector>, HandlerError> {
        let active = self.settings.borrow().read_model(self.context.name()).active;
        let mut open = self.open.lock().await;
        if open.generation != active {
            let target = Target::generation(self.context, active);
            open.projector = Arc::new(
                self.catalog
                    .open(target)
                    .await
                    .map_err(|error| HandlerError::from(format!("{error:#}")))?,
            );
            open.generation = active;
            tracing::info!(%target, "projecting into a new generation");
        }
        Ok(open.projector.clone())
    }
}

impl EventHandler for Generations {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        self.unpaused().await?;
        self.projector().await?.handle(event).await
    }

    /// The stores of the active generation answer and hold its tables. A store that lost them
    /// (a Cassandra node back empty) holds the events until the read model is rebuilt into a
    /// new generation, rather than writing a partial model into recreated tables.
    async fn ready(&self) -> Result<(), HandlerError> {
        self.projector().await?.ping().await.map_err(|error| {
            format!(
                "{error}: if the store lost the read model, rebuild it: control replay rebuild {}",
                self.context.name()
            )
            .into()
        })
    }
}
