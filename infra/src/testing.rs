//! Test fixtures on the real local stack (feature `test-support`): every [`TestEnv`] gets its
//! own PostgreSQL database (migrated), Kafka topic prefix (topics created), Cassandra
//! keyspace, MongoDB database and Redis key prefix, so tests run in parallel in isolation.
//! A service that is down fails the test at once, naming the command that starts it.

use anyhow::{Context, bail};
use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;
use uuid::Uuid;

use crate::{config::Config, kafka, ledger::Ledger};

const START_HINT: &str = "start the local stack with `bash scripts/infra.sh up`";

/// An isolated slice of the local stack for one test.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// Unique namespace `t_<hex>` all resources are named after.
    pub namespace: String,
    /// Configuration pointing at this test's resources, HTTP ports 0.
    pub config: Config,
}

impl TestEnv {
    /// Create the namespace's resources.
    pub async fn new() -> anyhow::Result<Self> {
        let namespace = format!("t_{}", &Uuid::new_v4().simple().to_string()[..16]);
        let mut config = Config::local();
        config.http.command_api_port = 0;
        config.http.query_api_port = 0;
        config.http.projectors_port = 0;
        config.sagas.port = 0;
        config.sagas.deadline_poll_ms = 200;
        config.postgres.max_connections = 8;
        config.kafka.fetch_wait_ms = 10;
        config.kafka.partitions = 2;
        // Production rules for the token secret; sign-in limits out of the way of tests that
        // register many users from one address (the limits have their own test).
        config.auth.jwt_secret = Some(format!("test-secret-{}", Uuid::new_v4().simple()).into());
        config.control.key = Some(format!("test-control-key-{}", Uuid::new_v4().simple()).into());
        let master = crate::privacy::Keyring::generate_key();
        config.postgres.master_keys = Some(format!("test:{master}").into());
        config.control.heartbeat_ms = 500;
        config.withdrawals.worker_port = 0;
        config.auth.rate_per_address = 100_000;
        config.auth.rate_per_email = 100_000;

        let base = config.postgres.url.clone();
        let mut admin = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&base))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r.map_err(anyhow::Error::from))
            .with_context(|| format!("PostgreSQL is not reachable at {base}: {START_HINT}"))?;
        admin
            .execute(format!("CREATE DATABASE {namespace}").as_str())
            .await?;
        admin.close().await?;
        let Some((prefix, _)) = base.rsplit_once('/') else {
            bail!("WORKUP_PG_URL has no database part: {base}");
        };
        config.postgres.url = format!("{prefix}/{namespace}");
        config.kafka.topic_prefix = format!("{namespace}.workup");
        config.cassandra.keyspace = namespace.clone();
        config.mongo.database = namespace.clone();
        config.redis.prefix = format!("{namespace}:");
        config.media.dir = std::env::temp_dir().join(format!("workup-media-{namespace}"));

        Ledger::connect(&config.postgres)
            .await
            .context("could not migrate the test ledger")?;
        tokio::time::timeout(
            Duration::from_secs(20),
            kafka::ensure_topics(&config.kafka, &kafka::context_topics(&config.kafka), false),
        )
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| {
            format!(
                "the Kafka broker is not reachable at {}: {START_HINT}",
                config.kafka.brokers
            )
        })?;
        Ok(Self { namespace, config })
    }

    /// A ledger on this test's database.
    pub async fn ledger(&self) -> anyhow::Result<Ledger> {
        Ok(Ledger::connect(&self.config.postgres).await?)
    }

    /// The environment variables that put a service binary (a child process) on this test's
    /// resources: databases, topics, keys. Ports and service-specific settings are the caller's.
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        process_env(&self.config)
    }
}

/// The environment variables that make a service binary run with `c`'s databases, topics and
/// keys (ports and service-specific settings are the caller's).
pub fn process_env(c: &Config) -> Vec<(&'static str, String)> {
    use secrecy::ExposeSecret;
    {
        let secret = |s: &Option<secrecy::SecretString>| s.as_ref().map(|s| s.expose_secret().to_owned());
        let mut vars = vec![
            ("WORKUP_PG_URL", c.postgres.url.clone()),
            ("WORKUP_KAFKA_BROKERS", c.kafka.brokers.clone()),
            ("WORKUP_KAFKA_TOPIC_PREFIX", c.kafka.topic_prefix.clone()),
            ("WORKUP_KAFKA_PARTITIONS", c.kafka.partitions.to_string()),
            ("WORKUP_KAFKA_FETCH_WAIT_MS", c.kafka.fetch_wait_ms.to_string()),
            ("WORKUP_RELAY_LINGER_MS", c.kafka.relay_linger_ms.to_string()),
            ("WORKUP_CASSANDRA_NODES", c.cassandra.nodes.join(",")),
            ("WORKUP_CASSANDRA_KEYSPACE", c.cassandra.keyspace.clone()),
            ("WORKUP_MONGO_URL", c.mongo.url.clone()),
            ("WORKUP_MONGO_DATABASE", c.mongo.database.clone()),
            ("WORKUP_REDIS_URL", c.redis.url.clone()),
            ("WORKUP_REDIS_PREFIX", c.redis.prefix.clone()),
            ("WORKUP_CONTROL_HEARTBEAT_MS", c.control.heartbeat_ms.to_string()),
        ];
        vars.extend(secret(&c.auth.jwt_secret).map(|s| ("WORKUP_JWT_SECRET", s)));
        vars.extend(secret(&c.control.key).map(|s| ("WORKUP_CONTROL_KEY", s)));
        vars.extend(secret(&c.postgres.master_keys).map(|s| ("WORKUP_MASTER_KEYS", s)));
        vars
    }
}
