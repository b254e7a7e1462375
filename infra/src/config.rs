//! Configuration: one typed [`Config`] read from environment variables (or flags), with
//! defaults that match the local stack started by `scripts/` (DESIGN §11).

use secrecy::SecretString;
use std::time::Duration;

/// Every setting of every service; each binary parses it the same way.
#[derive(Debug, Clone, clap::Parser)]
#[command(about, long_about = None)]
pub struct Config {
    /// Ledger database.
    #[command(flatten)]
    pub postgres: PostgresConfig,
    /// Kafka-protocol broker.
    #[command(flatten)]
    pub kafka: KafkaConfig,
    /// Cassandra / ScyllaDB read models.
    #[command(flatten)]
    pub cassandra: CassandraConfig,
    /// MongoDB read models.
    #[command(flatten)]
    pub mongo: MongoConfig,
    /// Redis caches and counters.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// HTTP listener.
    #[command(flatten)]
    pub http: HttpConfig,
    /// Token signing.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// Process managers.
    #[command(flatten)]
    pub sagas: SagasConfig,
    /// Uploaded media files.
    #[command(flatten)]
    pub media: MediaConfig,

    #[command(flatten)]
    pub withdrawals: WithdrawalsConfig,

    #[command(flatten)]
    pub control: ControlConfig,
}

/// PostgreSQL ledger settings (DESIGN §4).
#[derive(Debug, Clone, clap::Args)]
pub struct PostgresConfig {
    /// Ledger database URL.
    #[arg(
        id = "pg-url",
        long = "pg-url",
        env = "WORKUP_PG_URL",
        default_value = "postgres://workup:workup@127.0.0.1:5432/workup"
    )]
    pub url: String,
    /// Largest connection pool per process.
    #[arg(
        id = "pg-max-connections",
        long = "pg-max-connections",
        env = "WORKUP_PG_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,
    /// Master keys wrapping each person's personal data key: `id:base64key[,id:base64key...]`
    /// (32-byte keys; the first wraps new keys, the others only unwrap keys wrapped before a
    /// rotation). Required unless `WORKUP_ENV=dev`, which uses a fixed development key.
    #[arg(
        id = "master-keys",
        long = "master-keys",
        env = "WORKUP_MASTER_KEYS",
        hide_env_values = true
    )]
    pub master_keys: Option<SecretString>,
}

impl PostgresConfig {
    /// The master keys: the configured ones, or the development key when none are set.
    pub fn keyring(&self) -> Result<crate::privacy::Keyring, crate::privacy::PrivacyError> {
        match &self.master_keys {
            Some(keys) => crate::privacy::Keyring::parse(keys),
            None => {
                tracing::warn!(
                    "WORKUP_MASTER_KEYS is unset: personal data is sealed and opened with the development master key"
                );
                Ok(crate::privacy::Keyring::development())
            }
        }
    }

    /// Refuse to run without configured master keys outside `dev` (a service that writes
    /// personal data checks this at start).
    pub fn require_master_keys(&self, environment: Environment) -> Result<(), ConfigError> {
        if self.master_keys.is_none() && environment != Environment::Dev {
            return Err(ConfigError::MissingMasterKeys);
        }
        Ok(())
    }
}

/// Kafka settings (DESIGN §5).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Bootstrap servers.
    #[arg(
        id = "kafka-brokers",
        long = "kafka-brokers",
        env = "WORKUP_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Topic name prefix: topics are `<prefix>.users`, `<prefix>.jobs`, ...
    #[arg(
        id = "kafka-topic-prefix",
        long = "kafka-topic-prefix",
        env = "WORKUP_KAFKA_TOPIC_PREFIX",
        default_value = "workup"
    )]
    pub topic_prefix: String,
    /// Partitions of each context topic, when the service creates it.
    #[arg(
        id = "kafka-partitions",
        long = "kafka-partitions",
        env = "WORKUP_KAFKA_PARTITIONS",
        default_value_t = 3
    )]
    pub partitions: i32,
    /// Replication factor of created topics (1 on the local single broker).
    #[arg(
        id = "kafka-replication",
        long = "kafka-replication",
        env = "WORKUP_KAFKA_REPLICATION",
        default_value_t = 1
    )]
    pub replication: i32,
    /// Consumer `fetch.wait.max.ms`: lower means less latency and more idle CPU.
    #[arg(
        id = "kafka-fetch-wait-ms",
        long = "kafka-fetch-wait-ms",
        env = "WORKUP_KAFKA_FETCH_WAIT_MS",
        default_value_t = 50
    )]
    pub fetch_wait_ms: u32,
    /// How long the outbox relay's producer gathers messages into one produce request
    /// (`linger.ms`): more means fewer, larger requests (the local broker spends most of its CPU
    /// per request: README, "Benchmarks") for at most this much more latency.
    #[arg(
        id = "relay-linger-ms",
        long = "relay-linger-ms",
        env = "WORKUP_RELAY_LINGER_MS",
        default_value_t = 10
    )]
    pub relay_linger_ms: u32,
    /// Idempotent producers (`enable.idempotence`, up to 5 requests in flight). Off by default:
    /// the local broker (tansu 0.6.0) breaks on idempotent produce requests (README, "The outbox
    /// relay"); turn it on against real Kafka.
    #[arg(
        id = "kafka-idempotence",
        long = "kafka-idempotence",
        env = "WORKUP_KAFKA_IDEMPOTENCE",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub idempotence: bool,
}

impl KafkaConfig {
    /// The topic of a bounded context, e.g. `workup.users`.
    pub fn context_topic(&self, context: domain::BoundedContext) -> String {
        format!("{}.{}", self.topic_prefix, context.name())
    }

    /// The dead-letter topic of a consumer, e.g. `workup.dlq.user-profiles`.
    pub fn dlq_topic(&self, consumer: &str) -> String {
        format!("{}.dlq.{consumer}", self.topic_prefix)
    }

    /// The compacted topic of desired settings (DESIGN §10), e.g. `workup.control`.
    pub fn control_topic(&self) -> String {
        format!("{}.control", self.topic_prefix)
    }

    /// The compacted topic where every instance reports what it applied, e.g.
    /// `workup.control.status`.
    pub fn control_status_topic(&self) -> String {
        format!("{}.control.status", self.topic_prefix)
    }
}

/// Cassandra / ScyllaDB settings.
#[derive(Debug, Clone, clap::Args)]
pub struct CassandraConfig {
    /// Contact points, comma separated.
    #[arg(
        id = "cassandra-nodes",
        long = "cassandra-nodes",
        env = "WORKUP_CASSANDRA_NODES",
        default_value = "127.0.0.1:9042",
        value_delimiter = ','
    )]
    pub nodes: Vec<String>,
    /// Keyspace of the read models.
    #[arg(
        id = "cassandra-keyspace",
        long = "cassandra-keyspace",
        env = "WORKUP_CASSANDRA_KEYSPACE",
        default_value = "workup"
    )]
    pub keyspace: String,
    /// Replication factor when the keyspace is created.
    #[arg(
        id = "cassandra-replication",
        long = "cassandra-replication",
        env = "WORKUP_CASSANDRA_REPLICATION",
        default_value_t = 1
    )]
    pub replication: u32,
    /// Wait for schema agreement after DDL: keep on for real clusters; the local emulator
    /// has no `system.peers`, so the local stack turns it off.
    #[arg(id = "cassandra-schema-agreement", long = "cassandra-schema-agreement", env = "WORKUP_CASSANDRA_SCHEMA_AGREEMENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub schema_agreement: bool,
}

/// MongoDB settings.
#[derive(Debug, Clone, clap::Args)]
pub struct MongoConfig {
    /// Connection string.
    #[arg(
        id = "mongo-url",
        long = "mongo-url",
        env = "WORKUP_MONGO_URL",
        default_value = "mongodb://127.0.0.1:27017/?directConnection=true"
    )]
    pub url: String,
    /// Database of the read models.
    #[arg(
        id = "mongo-database",
        long = "mongo-database",
        env = "WORKUP_MONGO_DATABASE",
        default_value = "workup"
    )]
    pub database: String,
}

/// Redis settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Connection URL.
    #[arg(
        id = "redis-url",
        long = "redis-url",
        env = "WORKUP_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub url: String,
    /// Prefix of every key this deployment writes.
    #[arg(
        id = "redis-prefix",
        long = "redis-prefix",
        env = "WORKUP_REDIS_PREFIX",
        default_value = "workup:"
    )]
    pub prefix: String,
    /// Time to live of read-through cache entries, in seconds.
    #[arg(
        id = "redis-cache-ttl-secs",
        long = "redis-cache-ttl-secs",
        env = "WORKUP_REDIS_CACHE_TTL_SECS",
        default_value_t = 300
    )]
    pub cache_ttl_secs: u64,
}

impl RedisConfig {
    /// Cache entry lifetime.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

/// HTTP listener settings of every service.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Listen address of every service.
    #[arg(
        id = "http-host",
        long = "http-host",
        env = "WORKUP_HTTP_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    /// command-api port (0 picks a free one, as tests do).
    #[arg(
        id = "command-api-port",
        long = "command-api-port",
        env = "WORKUP_COMMAND_API_PORT",
        default_value_t = 8080
    )]
    pub command_api_port: u16,
    /// query-api port.
    #[arg(
        id = "query-api-port",
        long = "query-api-port",
        env = "WORKUP_QUERY_API_PORT",
        default_value_t = 8081
    )]
    pub query_api_port: u16,
    /// Port of the projectors' health and metrics endpoints.
    #[arg(
        id = "projectors-port",
        long = "projectors-port",
        env = "WORKUP_PROJECTORS_PORT",
        default_value_t = 8082
    )]
    pub projectors_port: u16,
    /// Largest accepted request body, in bytes.
    #[arg(id = "http-body-limit", long = "http-body-limit", env = "WORKUP_HTTP_BODY_LIMIT", default_value_t = 256 * 1024)]
    pub body_limit: usize,
    /// Longest a request may take, in seconds.
    #[arg(
        id = "http-timeout-secs",
        long = "http-timeout-secs",
        env = "WORKUP_HTTP_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub timeout_secs: u64,
    /// Longest a read waits for the write named by its `X-Consistency-Position`, in ms.
    #[arg(
        id = "consistency-wait-ms",
        long = "consistency-wait-ms",
        env = "WORKUP_CONSISTENCY_WAIT_MS",
        default_value_t = 2000
    )]
    pub consistency_wait_ms: u64,
}

impl HttpConfig {
    /// The bound of a read's wait for its consistency token.
    pub fn consistency_wait(&self) -> crate::read_models::consistency::Wait {
        crate::read_models::consistency::Wait {
            timeout: Duration::from_millis(self.consistency_wait_ms),
        }
    }
}

/// Where a process runs: `dev` relaxes the checks meant for exposed deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    /// A developer machine or CI (the local scripts set it): a missing token secret gets a
    /// fixed development secret.
    Dev,
    /// Anything exposed: the token secret must be set and at least 32 bytes long.
    Production,
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The token signing secret is missing or too short outside `WORKUP_ENV=dev`.
    #[error(
        "WORKUP_JWT_SECRET must be set to at least {MIN_JWT_SECRET_BYTES} bytes (it is {0}); \
         only WORKUP_ENV=dev runs without one"
    )]
    WeakJwtSecret(&'static str),
    /// The control key is missing or too short outside `WORKUP_ENV=dev`.
    #[error(
        "WORKUP_CONTROL_KEY must be set to at least {MIN_JWT_SECRET_BYTES} bytes; only WORKUP_ENV=dev runs without one"
    )]
    WeakControlKey,
    /// No master keys outside `WORKUP_ENV=dev`.
    #[error("WORKUP_MASTER_KEYS must be set (id:base64key); only WORKUP_ENV=dev runs without one")]
    MissingMasterKeys,
}

/// Shortest accepted token signing secret (HS256 wants at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;
const DEV_JWT_SECRET: &str = "workup-local-development-secret-not-for-production";

/// The control key of `WORKUP_ENV=dev` when none is set.
const DEV_CONTROL_KEY: &str = "workup-local-development-control-key-not-for-production";

/// Control plane settings (DESIGN §10).
#[derive(Debug, Clone, clap::Args)]
pub struct ControlConfig {
    /// Shared key of the HMAC-SHA256 signatures of control messages (at least 32 bytes; the
    /// services and the `control` CLI must have the same). Required unless `WORKUP_ENV=dev`.
    #[arg(
        id = "control-key",
        long = "control-key",
        env = "WORKUP_CONTROL_KEY",
        hide_env_values = true
    )]
    pub key: Option<SecretString>,
    /// How often every instance reports what it applied on the status topic, in milliseconds.
    #[arg(
        id = "control-heartbeat-ms",
        long = "control-heartbeat-ms",
        env = "WORKUP_CONTROL_HEARTBEAT_MS",
        default_value_t = 1000
    )]
    pub heartbeat_ms: u64,
}

impl ControlConfig {
    /// The signing key: the configured one (at least 32 bytes), or in `dev` a fixed local key.
    pub fn signing_key(&self, environment: Environment) -> Result<crate::control::ControlKey, ConfigError> {
        use secrecy::ExposeSecret;
        match &self.key {
            Some(key) if key.expose_secret().len() >= MIN_JWT_SECRET_BYTES => {
                Ok(crate::control::ControlKey::new(key.clone()))
            }
            _ if environment != Environment::Dev => Err(ConfigError::WeakControlKey),
            _ => Ok(crate::control::ControlKey::new(SecretString::from(
                DEV_CONTROL_KEY,
            ))),
        }
    }
}

/// Token and sign-in settings.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// `dev` or `production`; outside `dev` a missing or short token secret stops the service.
    #[arg(
        id = "env",
        long = "env",
        env = "WORKUP_ENV",
        value_enum,
        default_value = "production"
    )]
    pub environment: Environment,
    /// HMAC key that signs and checks access tokens (HS256), at least 32 bytes. Required
    /// unless `WORKUP_ENV=dev`.
    #[arg(
        id = "jwt-secret",
        long = "jwt-secret",
        env = "WORKUP_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token, in seconds.
    #[arg(
        id = "jwt-ttl-secs",
        long = "jwt-ttl-secs",
        env = "WORKUP_JWT_TTL_SECS",
        default_value_t = 3600
    )]
    pub jwt_ttl_secs: u64,
    /// Registrations and logins accepted per client address per minute.
    #[arg(
        id = "auth-rate-per-address",
        long = "auth-rate-per-address",
        env = "WORKUP_AUTH_RATE_PER_ADDRESS",
        default_value_t = 30
    )]
    pub rate_per_address: u32,
    /// Registrations and logins accepted per email address per minute.
    #[arg(
        id = "auth-rate-per-email",
        long = "auth-rate-per-email",
        env = "WORKUP_AUTH_RATE_PER_EMAIL",
        default_value_t = 10
    )]
    pub rate_per_email: u32,
    /// Password hashes computed at once (argon2id is CPU- and memory-heavy); 0 = one per core.
    #[arg(
        id = "auth-hash-concurrency",
        long = "auth-hash-concurrency",
        env = "WORKUP_AUTH_HASH_CONCURRENCY",
        default_value_t = 0
    )]
    pub hash_concurrency: usize,
}

impl AuthConfig {
    /// The token signing secret, checked: refuses a missing, empty or short secret unless
    /// [`Environment::Dev`], which falls back to a fixed development secret.
    pub fn signing_secret(&self) -> Result<SecretString, ConfigError> {
        use secrecy::ExposeSecret;
        let dev = self.environment == Environment::Dev;
        match &self.jwt_secret {
            Some(secret) if secret.expose_secret().len() >= MIN_JWT_SECRET_BYTES => Ok(secret.clone()),
            Some(secret) if !dev && secret.expose_secret().is_empty() => {
                Err(ConfigError::WeakJwtSecret("empty"))
            }
            Some(_) if !dev => Err(ConfigError::WeakJwtSecret("shorter")),
            None if !dev => Err(ConfigError::WeakJwtSecret("unset")),
            Some(secret) if !secret.expose_secret().is_empty() => Ok(secret.clone()),
            _ => Ok(SecretString::from(DEV_JWT_SECRET)),
        }
    }
}

/// Process manager settings (DESIGN §7).
#[derive(Debug, Clone, clap::Args)]
pub struct SagasConfig {
    /// Port of the sagas service (health, metrics, saga history).
    #[arg(
        id = "sagas-port",
        long = "sagas-port",
        env = "WORKUP_SAGAS_PORT",
        default_value_t = 8084
    )]
    pub port: u16,
    /// How long a payment request may stay unpaid before it expires, in seconds (14 days).
    #[arg(
        id = "payment-request-period-secs",
        long = "payment-request-period-secs",
        env = "WORKUP_PAYMENT_REQUEST_PERIOD_SECS",
        default_value_t = 14 * 24 * 3600
    )]
    pub payment_request_period_secs: u64,
    /// How often due deadlines are looked for, in milliseconds.
    #[arg(
        id = "deadline-poll-ms",
        long = "deadline-poll-ms",
        env = "WORKUP_DEADLINE_POLL_MS",
        default_value_t = 1000
    )]
    pub deadline_poll_ms: u64,
}

/// Media settings: where uploaded photos and resumes live and how large they may be
/// (DESIGN §3).
#[derive(Debug, Clone, clap::Args)]
pub struct MediaConfig {
    /// Directory of the content-addressed media files (one subdirectory per group).
    #[arg(
        id = "media-dir",
        long = "media-dir",
        env = "WORKUP_MEDIA_DIR",
        default_value = ".state/media"
    )]
    pub dir: std::path::PathBuf,
    /// Largest accepted photo, in bytes.
    #[arg(id = "media-max-photo-bytes", long = "media-max-photo-bytes", env = "WORKUP_MEDIA_MAX_PHOTO_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_photo_bytes: usize,
    /// Largest accepted resume, in bytes.
    #[arg(id = "media-max-resume-bytes", long = "media-max-resume-bytes", env = "WORKUP_MEDIA_MAX_RESUME_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_resume_bytes: usize,
}

/// What a withdrawal requested inside its wallet's cooldown window gets (DESIGN §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CooldownPolicyConfig {
    /// 429 with `Retry-After`.
    Reject,
    /// Accepted and scheduled for the window's end.
    Defer,
}

/// Withdrawals: the cooldown policy command-api applies, and the payout workers' settings
/// (DESIGN §9).
#[derive(Debug, Clone, clap::Args)]
pub struct WithdrawalsConfig {
    /// One withdrawal per wallet per this many seconds.
    #[arg(
        id = "withdrawal-cooldown-secs",
        long = "withdrawal-cooldown-secs",
        env = "WORKUP_WITHDRAWAL_COOLDOWN_SECS",
        default_value_t = 300
    )]
    pub cooldown_secs: u64,
    /// `reject` (429) or `defer` (scheduled for the window's end) a request inside the window.
    #[arg(
        id = "withdrawal-cooldown-policy",
        long = "withdrawal-cooldown-policy",
        env = "WORKUP_WITHDRAWAL_COOLDOWN_POLICY",
        value_enum,
        default_value = "reject"
    )]
    pub cooldown_policy: CooldownPolicyConfig,
    /// A task still running this many seconds after it started is cancelled.
    #[arg(
        id = "withdrawal-timeout-secs",
        long = "withdrawal-timeout-secs",
        env = "WORKUP_WITHDRAWAL_TIMEOUT_SECS",
        default_value_t = 46
    )]
    pub timeout_secs: u64,
    /// A worker holds a task for this many seconds and renews it while it works; a dead worker's
    /// task is redelivered after at most this long.
    #[arg(
        id = "withdrawal-lease-secs",
        long = "withdrawal-lease-secs",
        env = "WORKUP_WITHDRAWAL_LEASE_SECS",
        default_value_t = 10
    )]
    pub lease_secs: u64,
    /// Tasks one worker runs at once.
    #[arg(
        id = "withdrawal-concurrency",
        long = "withdrawal-concurrency",
        env = "WORKUP_WITHDRAWAL_CONCURRENCY",
        default_value_t = 32
    )]
    pub concurrency: usize,
    /// How often a worker looks for due tasks (it also looks at once when its intake adds one).
    #[arg(
        id = "withdrawal-poll-ms",
        long = "withdrawal-poll-ms",
        env = "WORKUP_WITHDRAWAL_POLL_MS",
        default_value_t = 500
    )]
    pub poll_ms: u64,
    /// Port of the withdrawal worker's endpoint (health, metrics).
    #[arg(
        id = "withdrawal-worker-port",
        long = "withdrawal-worker-port",
        env = "WORKUP_WITHDRAWAL_WORKER_PORT",
        default_value_t = 8085
    )]
    pub worker_port: u16,
    /// Base URL of the payout provider (the simulator `payout-provider` locally).
    #[arg(
        id = "payout-provider-url",
        long = "payout-provider-url",
        env = "WORKUP_PAYOUT_PROVIDER_URL",
        default_value = "http://127.0.0.1:8086"
    )]
    pub provider_url: String,
}

impl WithdrawalsConfig {
    /// The cooldown rule command-api decides with.
    pub fn cooldown(&self) -> domain::payments::withdrawal::Cooldown {
        domain::payments::withdrawal::Cooldown {
            window: chrono::TimeDelta::seconds(i64::try_from(self.cooldown_secs).unwrap_or(i64::MAX)),
            policy: match self.cooldown_policy {
                CooldownPolicyConfig::Reject => domain::payments::withdrawal::CooldownPolicy::Reject,
                CooldownPolicyConfig::Defer => domain::payments::withdrawal::CooldownPolicy::Defer,
            },
        }
    }

    /// The task timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The task lease.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }
}

impl Config {
    /// The defaults, as for the local stack (ignores the process's arguments, reads the environment).
    pub fn local() -> Self {
        <Self as clap::Parser>::parse_from(["workup"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_setting_has_a_distinct_flag_and_a_default() {
        Config::command().debug_assert();
        let config = Config::local();
        assert_eq!(
            config.kafka.context_topic(domain::BoundedContext::Users),
            "workup.users"
        );
        assert_eq!(config.kafka.dlq_topic("jobs"), "workup.dlq.jobs");
    }

    fn auth(environment: Environment, secret: Option<&str>) -> AuthConfig {
        AuthConfig {
            environment,
            jwt_secret: secret.map(SecretString::from),
            ..Config::local().auth
        }
    }

    #[test]
    fn outside_dev_the_token_secret_must_be_set_and_long() {
        for secret in [None, Some(""), Some("short-secret")] {
            assert!(
                auth(Environment::Production, secret).signing_secret().is_err(),
                "{secret:?} accepted"
            );
        }
        let long = "x".repeat(MIN_JWT_SECRET_BYTES);
        assert!(
            auth(Environment::Production, Some(&long))
                .signing_secret()
                .is_ok()
        );
    }

    #[test]
    fn dev_runs_without_a_secret() {
        for secret in [None, Some(""), Some("short-secret")] {
            assert!(auth(Environment::Dev, secret).signing_secret().is_ok());
        }
    }
}
