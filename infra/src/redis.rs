//! Redis: the read-through cache in front of read models (and, later, wallets and counters).

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

use crate::{config::RedisConfig, store::StoreError};

/// A JSON cache under the deployment's key prefix.
#[derive(Clone)]
pub struct Cache {
    connection: ConnectionManager,
    prefix: String,
    ttl: Duration,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Connect (the manager reconnects by itself after a failure).
    pub async fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        let client = redis::Client::open(config.url.as_str())?;
        let connection = ConnectionManager::new(client).await?;
        Ok(Self {
            connection,
            prefix: config.prefix.clone(),
            ttl: config.cache_ttl(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}cache:{key}", self.prefix)
    }

    /// The cached value of `key`, if any (an unreadable entry counts as a miss).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let raw: Option<String> = self.connection.clone().get(self.key(key)).await?;
        Ok(raw.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Cache `value` under `key` for the configured time to live.
    pub async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let raw = serde_json::to_string(value)?;
        let () = self
            .connection
            .clone()
            .set_ex(self.key(key), raw, self.ttl.as_secs().max(1))
            .await?;
        Ok(())
    }

    /// Cache `value` under `key` only if nothing is cached there (fills after a miss, so a
    /// slow reader never overwrites what a projector wrote meanwhile).
    pub async fn put_if_absent<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let raw = serde_json::to_string(value)?;
        let _: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(raw)
            .arg("NX")
            .arg("EX")
            .arg(self.ttl.as_secs().max(1))
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    /// Drop `key` (after its read model changed).
    pub async fn invalidate(&self, key: &str) -> Result<(), StoreError> {
        let () = self.connection.clone().del(self.key(key)).await?;
        Ok(())
    }

    /// Check the server answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let () = redis::cmd("PING")
            .query_async(&mut self.connection.clone())
            .await
            .map(|_: String| ())?;
        Ok(())
    }
}
