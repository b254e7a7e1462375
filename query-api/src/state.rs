//! The read-model handles every handler shares.

use axum::extract::FromRef;
use infra::{
    http::auth::TokenKeys, read_models::jobs::JobStore, read_models::users::UserProfiles, redis::Cache,
};

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
    /// Redis read-through cache.
    pub cache: Cache,
    /// How long a read waits for its consistency token (DESIGN §6).
    pub wait: infra::read_models::consistency::Wait,
    /// Uploaded photos and resumes, served as they are (DESIGN §3).
    pub media: infra::media::MediaStore,
}

impl FromRef<AppState> for TokenKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}
