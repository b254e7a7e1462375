//! Redis: the read-through cache in front of read models (and, later, wallets and counters).

use redis::{
    AsyncCommands, Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager},
};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

use crate::{config::RedisConfig, store::StoreError};

/// How long a versioned cache operation may take: while Redis is down the connection manager
/// keeps reconnecting with backoff, and a read or a projector must not wait for it.
pub const VERSIONED_OP_TIMEOUT: Duration = Duration::from_millis(300);

/// A Redis connection that a server restart costs no failed command. The `redis` crate's
/// [`ConnectionManager`] answers the first command sent on a dropped connection with that
/// connection's error and reconnects in the background (its documented behaviour): after every
/// Redis restart, one read per process answered 503. This sends such a command once more, on the
/// new connection. Safe because every command the platform sends to Redis is a read or a write
/// that may be applied twice (values keyed by stream version, `SET`, `DEL`).
#[derive(Clone)]
pub struct RedisConnection(ConnectionManager);

impl RedisConnection {
    /// Connect to `url` (the manager reconnects by itself after a failure).
    pub async fn open(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        Ok(Self(ConnectionManager::new(client).await?))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            match self.0.req_packed_command(cmd).await {
                Err(error) if error.is_unrecoverable_error() => {
                    tracing::warn!(%error, "redis connection lost: sending the command again on a new one");
                    self.0.req_packed_command(cmd).await
                }
                outcome => outcome,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            match self.0.req_packed_commands(pipeline, offset, count).await {
                Err(error) if error.is_unrecoverable_error() => {
                    tracing::warn!(%error, "redis connection lost: sending the pipeline again on a new one");
                    self.0.req_packed_commands(pipeline, offset, count).await
                }
                outcome => outcome,
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// A cached value and the stream version it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The version of the stream the value reflects.
    pub version: i64,
    /// The value.
    pub value: T,
}

/// Fill `KEYS[1]` (a hash: `v` version, `d` JSON) with `ARGV[2]` at version `ARGV[1]`, for
/// `ARGV[3]` seconds, unless it holds a newer version, or a value at the same version. A
/// tombstone (a version without a value) at the same or an older version is replaced.
const PUT_VERSIONED: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local cur = tonumber(redis.call('HGET', KEYS[1], 'v'))
local v = tonumber(ARGV[1])
if cur and (cur > v or (cur == v and redis.call('HEXISTS', KEYS[1], 'd') == 1)) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Replace `KEYS[1]` by a tombstone at version `ARGV[1]` (for `ARGV[2]` seconds) unless it holds
/// that version or a newer one: readers miss, and no fill of an older version gets in.
const INVALIDATE_VERSIONED: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
local cur = tonumber(redis.call('HGET', KEYS[1], 'v'))
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Run a versioned operation within [`VERSIONED_OP_TIMEOUT`].
async fn bounded<T>(op: impl Future<Output = redis::RedisResult<T>>) -> Result<T, StoreError> {
    match tokio::time::timeout(VERSIONED_OP_TIMEOUT, op).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(StoreError::Redis(
            std::io::Error::new(std::io::ErrorKind::TimedOut, "redis did not answer in time").into(),
        )),
    }
}

/// A JSON cache under the deployment's key prefix.
#[derive(Clone)]
pub struct Cache {
    connection: RedisConnection,
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
        let connection = RedisConnection::open(&config.url).await?;
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

    /// The value cached under `key` with its version, if any (a tombstone or an unreadable entry
    /// counts as a miss). Entries written by [`Cache::put_versioned`] and
    /// [`Cache::invalidate_versioned`] only.
    pub async fn get_versioned<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let mut connection = self.connection.clone();
        let (version, raw): (Option<i64>, Option<String>) = bounded(
            redis::cmd("HMGET")
                .arg(self.key(key))
                .arg("v")
                .arg("d")
                .query_async(&mut connection),
        )
        .await?;
        Ok(match (version, raw) {
            (Some(version), Some(raw)) => serde_json::from_str(&raw)
                .ok()
                .map(|value| Versioned { version, value }),
            _ => None,
        })
    }

    /// Cache `value` at `version` unless the entry holds a newer version (or a value of the same
    /// one), atomically (Lua); for the configured time to live. Whether it was written.
    pub async fn put_versioned<T: Serialize>(
        &self,
        key: &str,
        version: i64,
        value: &T,
    ) -> Result<bool, StoreError> {
        let raw = serde_json::to_string(value)?;
        let mut connection = self.connection.clone();
        let script = redis::Script::new(PUT_VERSIONED);
        let mut invocation = script.key(self.key(key));
        invocation.arg(version).arg(raw).arg(self.ttl.as_secs().max(1));
        let written: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(written == 1)
    }

    /// Mark `key` changed at `version` (a projector applied it): until a fill of at least that
    /// version, readers miss; older entries and older fills are refused. Atomic (Lua).
    pub async fn invalidate_versioned(&self, key: &str, version: i64) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let script = redis::Script::new(INVALIDATE_VERSIONED);
        let mut invocation = script.key(self.key(key));
        invocation.arg(version).arg(self.ttl.as_secs().max(1));
        let written: i64 = bounded(invocation.invoke_async(&mut connection)).await?;
        Ok(written == 1)
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
