//! Read-your-writes on demand (DESIGN §6). A write answers a consistency token naming the
//! streams it appended to and their new versions (`type:id:version,...`); a read that sends it
//! back in `X-Consistency-Position` waits, bounded, until the read model behind the endpoint has
//! applied those versions of the stream types it projects. Per-stream versions are exact; a
//! global position is never used for waiting.

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::request::Parts,
};
use std::{future::Future, str::FromStr, time::Duration};
use tokio::time::Instant;
use uuid::Uuid;

use crate::{http::ApiError, store::StoreError};

/// The request header carrying a token.
pub const HEADER: &str = "x-consistency-position";
/// Most streams a token may name.
const MAX_POSITIONS: usize = 64;

/// One stream of a token and the version to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Stream type, e.g. `job`.
    pub stream_type: String,
    /// The stream.
    pub stream_id: Uuid,
    /// The version the read model must have applied.
    pub version: i64,
}

/// A parsed consistency token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyToken(pub Vec<Position>);

impl FromStr for ConsistencyToken {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let positions = raw
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let mut parts = p.trim().splitn(3, ':');
                let (Some(kind), Some(id), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(format!("`{p}` is not type:id:version"));
                };
                Ok(Position {
                    stream_type: kind.to_owned(),
                    stream_id: id.parse().map_err(|_| format!("`{id}` is not a stream id"))?,
                    version: version
                        .parse()
                        .ok()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| format!("`{version}` is not a version"))?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if positions.len() > MAX_POSITIONS {
            return Err(format!("at most {MAX_POSITIONS} streams"));
        }
        Ok(Self(positions))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ConsistencyToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(None);
        };
        let invalid = |detail: String| ApiError::BadRequest {
            code: "invalid-consistency-token",
            detail,
        };
        let raw = value
            .to_str()
            .map_err(|_| invalid("X-Consistency-Position is not text".into()))?;
        raw.parse().map(Some).map_err(invalid)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ConsistencyToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(|token| token.unwrap_or(Self(Vec::new())))
    }
}

/// How long a read waits for its token, and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// The bound; past it the read answers 504.
    pub timeout: Duration,
}

impl Wait {
    /// Wait until `applied(stream)` (the version the read model `name` has applied, if any)
    /// reaches the token's version for every stream of one of `stream_types`; other streams of
    /// the token are not this read model's business. Past the bound: a 504 naming what is behind.
    pub async fn until_applied<F, Fut>(
        &self,
        token: Option<&ConsistencyToken>,
        name: &str,
        stream_types: &[&str],
        applied: F,
    ) -> Result<(), ApiError>
    where
        F: Fn(Uuid) -> Fut,
        Fut: Future<Output = Result<Option<i64>, StoreError>>,
    {
        let Some(token) = token else {
            return Ok(());
        };
        let deadline = Instant::now() + self.timeout;
        let mut delay = Duration::from_millis(5);
        for position in token
            .0
            .iter()
            .filter(|p| stream_types.contains(&p.stream_type.as_str()))
        {
            loop {
                let seen = applied(position.stream_id).await.map_err(ApiError::from)?;
                if seen.is_some_and(|v| v >= position.version) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(ApiError::ReadModelBehind(format!(
                        "{name} has applied {} {} up to version {} of {}; waited {} ms",
                        position.stream_type,
                        position.stream_id,
                        seen.unwrap_or(0),
                        position.version,
                        self.timeout.as_millis()
                    )));
                }
                tokio::time::sleep(delay.min(deadline - Instant::now())).await;
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn a_token_parses_and_refuses_garbage() {
        let id = Uuid::now_v7();
        let token: ConsistencyToken = format!("job:{id}:3,proposal:{id}:1").parse().expect("token");
        assert_eq!(token.0.len(), 2);
        assert_eq!(token.0[0].version, 3);
        for bad in ["job", "job:x:1", &format!("job:{id}:-1"), &format!("job:{id}:v")] {
            assert!(bad.parse::<ConsistencyToken>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_read_waits_for_its_streams_only_and_gives_up_at_the_bound() {
        let id = Uuid::now_v7();
        let token: ConsistencyToken = format!("job:{id}:2,wallet:{}:9", Uuid::now_v7())
            .parse()
            .expect("token");
        let applied = AtomicI64::new(1);
        let wait = Wait {
            timeout: Duration::from_millis(200),
        };
        let behind = wait
            .until_applied(Some(&token), "jobs", &["job"], |_| async {
                Ok(Some(applied.load(Ordering::SeqCst)))
            })
            .await;
        assert!(matches!(behind, Err(ApiError::ReadModelBehind(_))), "{behind:?}");
        applied.store(2, Ordering::SeqCst);
        wait.until_applied(Some(&token), "jobs", &["job"], |_| async {
            Ok(Some(applied.load(Ordering::SeqCst)))
        })
        .await
        .expect("the wallet stream is not the jobs model's business");
    }
}
