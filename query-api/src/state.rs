//! The read-model handles every handler shares, and their switch to another storage generation
//! when the control plane says so (DESIGN §8, blue/green).

use arc_swap::ArcSwap;
use axum::extract::FromRef;
use domain::BoundedContext;
use infra::{
    cassandra::Session,
    config::Config,
    control::Settings,
    http::auth::TokenKeys,
    read_models::{
        generation::{ReadModelStore, Target},
        jobs::JobStore,
        users::UserProfiles,
    },
    redis::Cache,
};
use std::{collections::BTreeMap, sync::Arc};
use tokio::sync::watch;

/// Shared state of query-api.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Token checking.
    pub keys: TokenKeys,
    /// MongoDB user profiles (the users read model).
    pub profiles: UserProfiles,
    /// The jobs read model (Cassandra jobs, keyword index and proposals).
    pub jobs: JobStore,
    /// The contracts read model (Cassandra).
    pub contracts: infra::read_models::contracts::ContractsReadModel,
    /// The payments read model (Redis wallets and withdrawals, Cassandra payment requests).
    pub payments: infra::read_models::payments::Payments,
    /// Redis read-through cache of the jobs read model's generation.
    pub cache: Cache,
    /// How long a read waits for its consistency token (DESIGN §6).
    pub wait: infra::read_models::consistency::Wait,
    /// Uploaded photos and resumes, served as they are (DESIGN §3).
    pub media: infra::media::MediaStore,
}

impl AppState {
    /// This state with `store` as its context's read model.
    fn with(mut self, store: ReadModelStore) -> Self {
        match store {
            ReadModelStore::Users(profiles) => self.profiles = profiles,
            ReadModelStore::Jobs(jobs, cache) => (self.jobs, self.cache) = (jobs, cache),
            ReadModelStore::Contracts(contracts) => self.contracts = contracts,
            ReadModelStore::Payments(payments) => self.payments = payments,
        }
        self
    }
}

/// The state requests are served with: each request takes the [`AppState`] in force when it
/// starts; a switch of generation replaces it for the requests after.
#[derive(Debug, Clone)]
pub struct LiveState(Arc<ArcSwap<AppState>>);

impl LiveState {
    /// The state in force now.
    pub fn current(&self) -> AppState {
        AppState::clone(&self.0.load())
    }

    /// Serve `state`, whose read models are at the generations `serving` makes active, and
    /// follow `settings` from there; `config` and `session` open the generations named later.
    pub fn follow(
        state: AppState,
        serving: &Settings,
        config: Config,
        session: Arc<Session>,
        mut settings: watch::Receiver<Settings>,
    ) -> Self {
        let mut serving: BTreeMap<&str, u32> = BoundedContext::ALL
            .iter()
            .map(|c| (c.name(), serving.read_model(c.name()).active))
            .collect();
        let live = Self(Arc::new(ArcSwap::from_pointee(state)));
        let follower = live.clone();
        tokio::spawn(async move {
            while settings.changed().await.is_ok() {
                let wanted = settings.borrow_and_update().clone();
                for context in BoundedContext::ALL {
                    let active = wanted.read_model(context.name()).active;
                    if serving.get(context.name()) == Some(&active) {
                        continue;
                    }
                    let target = Target::generation(context, active);
                    match target.open(&session, &config).await {
                        Ok(store) => {
                            follower.0.store(Arc::new(follower.current().with(store)));
                            serving.insert(context.name(), active);
                            tracing::info!(%target, "reading the read model from a new generation");
                        }
                        Err(error) => {
                            tracing::error!(%target, %error, "could not open a read model generation; still reading the old one");
                        }
                    }
                }
            }
        });
        live
    }
}

impl FromRef<LiveState> for AppState {
    fn from_ref(live: &LiveState) -> Self {
        live.current()
    }
}

impl FromRef<LiveState> for TokenKeys {
    fn from_ref(live: &LiveState) -> Self {
        live.0.load().keys.clone()
    }
}
