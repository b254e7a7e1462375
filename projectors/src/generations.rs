//! A live projector follows the control plane's `read_model:<context>` setting (DESIGN §8,
//! blue/green): it writes the active generation of its read model and, while one is named,
//! the shadow generation too (the one being rebuilt, or the one readers are leaving).
//!
//! The setting is looked at before each event, and a newly named generation is opened before
//! that event is applied: once an instance reports the setting applied, every event it handles
//! from then on reaches the new generation. Whatever it handled before was committed before,
//! so a rebuild that starts reading the ledger after every instance reported is complete.

use domain::BoundedContext;
use infra::{
    control::{ReadModelGenerations, Settings},
    kafka::consumer::{EventHandler, HandlerError},
    ledger::RecordedEvent,
    read_models::generation::Target,
};
use std::sync::Arc;
use tokio::sync::{Mutex, watch};

use crate::catalog::{Catalog, Projector};

/// The generations written now.
struct Open {
    wanted: ReadModelGenerations,
    writers: Vec<(u32, Arc<Projector>)>,
}

/// The projector of one read model across its generations.
pub struct Generations {
    context: BoundedContext,
    catalog: Catalog,
    settings: watch::Receiver<Settings>,
    open: Mutex<Open>,
}

impl Generations {
    /// Open the generations `settings` name for `context` now.
    pub async fn open(
        catalog: Catalog,
        context: BoundedContext,
        settings: watch::Receiver<Settings>,
    ) -> anyhow::Result<Self> {
        let wanted = settings.borrow().read_model(context.name());
        let writers = open_writers(&catalog, context, wanted, &[]).await?;
        Ok(Self {
            context,
            catalog,
            settings,
            open: Mutex::new(Open { wanted, writers }),
        })
    }

    /// The projectors to write now, opening generations newly named.
    async fn writers(&self) -> Result<Vec<(u32, Arc<Projector>)>, HandlerError> {
        let wanted = self.settings.borrow().read_model(self.context.name());
        let mut open = self.open.lock().await;
        if open.wanted != wanted {
            open.writers = open_writers(&self.catalog, self.context, wanted, &open.writers)
                .await
                .map_err(|error| HandlerError::from(format!("{error:#}")))?;
            open.wanted = wanted;
            tracing::info!(
                context = self.context.name(),
                active = wanted.active,
                shadow = ?wanted.shadow,
                "read model generations followed"
            );
        }
        Ok(open.writers.clone())
    }
}

/// The projectors of `wanted`'s generations: those of `already` kept, the others opened.
async fn open_writers(
    catalog: &Catalog,
    context: BoundedContext,
    wanted: ReadModelGenerations,
    already: &[(u32, Arc<Projector>)],
) -> anyhow::Result<Vec<(u32, Arc<Projector>)>> {
    let mut writers = Vec::new();
    for generation in std::iter::once(wanted.active).chain(wanted.shadow) {
        let projector = match already.iter().find(|(g, _)| *g == generation) {
            Some((_, projector)) => projector.clone(),
            None => Arc::new(catalog.open(Target::generation(context, generation)).await?),
        };
        writers.push((generation, projector));
    }
    Ok(writers)
}

impl EventHandler for Generations {
    async fn handle(&self, event: &RecordedEvent) -> Result<(), HandlerError> {
        for (_, projector) in self.writers().await? {
            projector.handle(event).await?;
        }
        Ok(())
    }
}
