//! Storage generations of the read models (DESIGN §8, blue/green rebuilds).
//!
//! A read model (one per bounded context) lives in one storage *generation* at a time: its
//! Cassandra tables, MongoDB collections and Redis keys. Generation 0 is the deployment's own
//! keyspace, database and key prefix; a rebuild writes generation n+1 into a keyspace, database
//! and prefix of its own, and the control plane's `read_model:<context>` setting says which one
//! readers use ([`crate::control::ReadModelGenerations`]). A scratch target, used by
//! `replay verify`, is never read by anyone.

use domain::BoundedContext;
use std::{fmt, sync::Arc};

use crate::{
    cassandra::{self, Session},
    config::Config,
    mongo,
    read_models::{contracts, jobs, payments, users},
    redis::Cache,
    store::StoreError,
};

/// A storage generation of a read model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Generation(pub u32);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// Where a read model's storage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// A generation readers may use.
    Generation(Generation),
    /// The scratch copy `replay verify` builds and drops.
    Scratch,
}

/// The storage of one read model in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    /// The read model (named after its context).
    pub context: BoundedContext,
    /// Which of its storages.
    pub slot: Slot,
}

impl Target {
    /// Generation `n` of `context`'s read model.
    pub fn generation(context: BoundedContext, n: u32) -> Self {
        Self {
            context,
            slot: Slot::Generation(Generation(n)),
        }
    }

    /// The scratch copy of `context`'s read model.
    pub fn scratch(context: BoundedContext) -> Self {
        Self {
            context,
            slot: Slot::Scratch,
        }
    }

    /// Whether this is the deployment's own storage (generation 0), shared by every read model:
    /// dropping it drops only this read model's tables, collections and keys.
    pub fn is_shared(&self) -> bool {
        self.slot == Slot::Generation(Generation(0))
    }

    /// The name part of this slot, e.g. `jobs_g2` or `jobs_verify` (`None` for generation 0).
    fn suffix(&self) -> Option<String> {
        let context = self.context.name();
        match self.slot {
            Slot::Generation(Generation(0)) => None,
            Slot::Generation(g) => Some(format!("{context}_{g}")),
            Slot::Scratch => Some(format!("{context}_verify")),
        }
    }

    /// `config` with its Cassandra keyspace, MongoDB database and Redis prefix pointing at this
    /// target; every store opened with it reads and writes there.
    pub fn config(&self, config: &Config) -> Config {
        let mut target = config.clone();
        if let Some(suffix) = self.suffix() {
            target.cassandra.keyspace = format!("{}_{suffix}", config.cassandra.keyspace);
            target.mongo.database = format!("{}_{suffix}", config.mongo.database);
            target.redis.prefix = format!("{}{suffix}:", config.redis.prefix);
        }
        target
    }
}

/// The store of one read model in one target, open.
#[derive(Debug, Clone)]
pub enum ReadModelStore {
    /// MongoDB profiles.
    Users(users::UserProfiles),
    /// Cassandra jobs and proposals, and the job cache under the target's prefix.
    Jobs(jobs::JobStore, Cache),
    /// Cassandra contracts.
    Contracts(contracts::ContractsReadModel),
    /// Redis wallets and withdrawals, Cassandra payment requests.
    Payments(payments::Payments),
}

impl Target {
    /// Open this target's store (its keyspace and tables created if missing) with `config`'s
    /// connections settings and `session`.
    pub async fn open(&self, session: &Arc<Session>, config: &Config) -> Result<ReadModelStore, StoreError> {
        let config = self.config(config);
        let keyspace = config.cassandra.keyspace.as_str();
        if self.context != BoundedContext::Users {
            cassandra::ensure_schema(session, &config.cassandra).await?;
        }
        let session = session.clone();
        Ok(match self.context {
            BoundedContext::Users => {
                ReadModelStore::Users(users::UserProfiles::new(&mongo::connect(&config.mongo).await?))
            }
            BoundedContext::Jobs => {
                jobs::ensure_schema(&session, keyspace).await?;
                ReadModelStore::Jobs(
                    jobs::JobStore::new(session, keyspace).await?,
                    Cache::connect(&config.redis).await?,
                )
            }
            BoundedContext::Contracts => {
                contracts::ensure_schema(&session, keyspace).await?;
                ReadModelStore::Contracts(contracts::ContractsReadModel::new(session, keyspace).await?)
            }
            BoundedContext::Payments => {
                payments::ensure_schema(&session, keyspace).await?;
                ReadModelStore::Payments(payments::Payments::new(session, keyspace, &config.redis).await?)
            }
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot {
            Slot::Generation(g) => write!(f, "{} {g}", self.context.name()),
            Slot::Scratch => write!(f, "{} scratch", self.context.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_zero_is_the_deployments_storage_and_others_have_their_own() {
        let config = Config::local();
        let zero = Target::generation(BoundedContext::Jobs, 0).config(&config);
        assert_eq!(zero.cassandra.keyspace, config.cassandra.keyspace);
        assert_eq!(zero.redis.prefix, config.redis.prefix);
        let two = Target::generation(BoundedContext::Jobs, 2).config(&config);
        assert_eq!(
            two.cassandra.keyspace,
            format!("{}_jobs_g2", config.cassandra.keyspace)
        );
        assert_eq!(two.mongo.database, format!("{}_jobs_g2", config.mongo.database));
        assert_eq!(two.redis.prefix, format!("{}jobs_g2:", config.redis.prefix));
        let scratch = Target::scratch(BoundedContext::Users).config(&config);
        assert_eq!(
            scratch.mongo.database,
            format!("{}_users_verify", config.mongo.database)
        );
        assert!(Target::generation(BoundedContext::Users, 0).is_shared());
        assert!(!Target::scratch(BoundedContext::Users).is_shared());
    }
}
