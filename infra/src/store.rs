//! The error type of the read-model stores (Cassandra, MongoDB, Redis).

/// Why a read-model store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// MongoDB failed.
    #[error("mongodb error")]
    Mongo(#[from] mongodb::error::Error),
    /// Cassandra / ScyllaDB failed.
    #[error("cassandra error")]
    Cassandra(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Redis failed.
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    /// A stored document or row could not be (de)serialised.
    #[error("read-model codec error: {0}")]
    Codec(String),
}

macro_rules! cassandra_error {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Cassandra(Box::new(e))
            }
        }
    )*};
}

cassandra_error!(
    scylla::errors::NewSessionError,
    scylla::errors::ExecutionError,
    scylla::errors::PrepareError,
    scylla::errors::IntoRowsResultError,
    scylla::errors::MaybeFirstRowError,
    scylla::errors::UseKeyspaceError,
);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Codec(e.to_string())
    }
}
