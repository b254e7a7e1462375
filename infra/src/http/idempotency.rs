//! `Idempotency-Key` on writes (DESIGN §3): the same caller, key and request within 24 h gets the
//! first answer again (same status, resource id and consistency token) and appends nothing, even
//! if the state changed since; the same key with another request is a 422. The key is checked
//! before the handler loads or decides anything.
//!
//! Two layers make this hold: this middleware stores the first answer in PostgreSQL (claimed
//! before the handler runs, so concurrent retries wait for it instead of running twice), and the
//! handler's command id is derived from the caller and key ([`IdempotentCommand`]), so even an
//! answer lost in a crash cannot turn into a second append: the ledger's own idempotency record
//! answers the retry.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use std::time::{Duration, Instant};
use uuid::Uuid;

use super::{auth::TokenKeys, problem::ApiError};
use crate::ledger::Ledger;
use sqlx::PgPool;

/// The request header naming a write's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer that repeats a stored first answer.
pub const REPLAYED: &str = "idempotent-replayed";
/// Longest accepted key.
pub const MAX_KEY_CHARS: usize = 255;
/// How long a key is remembered.
const KEY_LIFETIME_SECS: f64 = 24.0 * 3600.0;
/// After this long without an answer, a claim is taken to be dead and may be taken over.
const CLAIM_LEASE_SECS: f64 = 60.0;
/// How long a retry waits for a concurrent first attempt to answer.
const WAIT_FOR_FIRST: Duration = Duration::from_secs(15);
/// Largest body fingerprinted (media uploads included).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Headers of the first answer that are part of it.
const KEPT_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::LOCATION,
    HeaderName::from_static("x-consistency-position"),
];

/// Namespace of the command ids derived from idempotency keys.
const COMMAND_NAMESPACE: Uuid = Uuid::from_u128(0x6c1e_2f0a_8d4b_4e55_9b1c_7a3e_5d20_c0de);

/// The command id of a write sent with an `Idempotency-Key`, derived from the caller, the key and
/// when the key was first used; the handler uses it (and ids derived from it) so a retry names
/// the same command and the same new resources. Absent without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotentCommand(pub Uuid);

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for IdempotentCommand {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().copied())
    }
}

/// Where the first answers are kept, and the keys to tell who the caller is.
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    ledger: Ledger,
    keys: TokenKeys,
}

impl IdempotencyStore {
    /// A store on the ledger database (its table comes with the ledger's migrations).
    pub fn new(ledger: Ledger, keys: TokenKeys) -> Self {
        Self { ledger, keys }
    }
}

/// What a key's row says when this attempt could not claim it.
enum Seen {
    /// The first attempt answered this.
    Answered(Response),
    /// The first attempt is still running.
    InFlight,
    /// Another request used this key.
    OtherRequest,
}

/// The middleware (`axum::middleware::from_fn_with_state`): on writes that carry the header.
pub async fn idempotency(State(store): State<IdempotencyStore>, request: Request, next: Next) -> Response {
    let is_write = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    if !is_write {
        return next.run(request).await;
    }
    let key = match key.to_str() {
        Ok(k) if (1..=MAX_KEY_CHARS).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
            k.to_owned()
        }
        _ => {
            return ApiError::BadRequest {
                code: "invalid-idempotency-key",
                detail: format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters"),
            }
            .into_response();
        }
    };
    // The key is per caller; a request whose token is invalid is answered 401 by the handler.
    let caller = match bearer(request.headers()) {
        None => Uuid::nil(),
        Some(token) => match store.keys.verify(token) {
            Ok(actor) => actor.id.as_uuid(),
            Err(_) => return next.run(request).await,
        },
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::PayloadTooLarge(format!("bodies are limited to {MAX_BODY_BYTES} bytes"))
            .into_response();
    };
    let fingerprint = fingerprint(&parts.method, &parts.uri, &parts.headers, &body);
    match run_once(&store, caller, &key, &fingerprint, parts, body, next).await {
        Ok(response) => response,
        Err(error) => ApiError::from(crate::ledger::LedgerError::from(error)).into_response(),
    }
}

async fn run_once(
    store: &IdempotencyStore,
    caller: Uuid,
    key: &str,
    fingerprint: &[u8],
    mut parts: axum::http::request::Parts,
    body: Bytes,
    next: Next,
) -> Result<Response, sqlx::Error> {
    let started = Instant::now();
    loop {
        if let Some(first_used) = claim(&store.ledger.pool(), caller, key, fingerprint).await? {
            parts
                .extensions
                .insert(IdempotentCommand(command_id(caller, key, first_used)));
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            return record(&store.ledger.pool(), caller, key, response).await;
        }
        match seen(&store.ledger.pool(), caller, key, fingerprint).await? {
            Seen::Answered(response) => return Ok(response),
            Seen::OtherRequest => return Ok(ApiError::IdempotencyKeyReused.into_response()),
            Seen::InFlight if started.elapsed() < WAIT_FOR_FIRST => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Seen::InFlight => {
                return Ok(ApiError::RateLimited {
                    code: "idempotent-request-in-progress",
                    retry_after: Duration::from_secs(1),
                }
                .into_response());
            }
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// What makes two requests "the same": method, path and query, content type and body.
fn fingerprint(method: &Method, uri: &axum::http::Uri, headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(method.as_str());
    hash.update([0]);
    hash.update(uri.path_and_query().map_or("", |p| p.as_str()));
    hash.update([0]);
    hash.update(
        headers
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], |v| v.as_bytes()),
    );
    hash.update([0]);
    hash.update(body);
    hash.finalize().to_vec()
}

/// The command id of the request `caller` first sent with `key` at `first_used` (the key's
/// `created_at`): what its events and command record carry.
pub fn command_id(caller: Uuid, key: &str, first_used: DateTime<Utc>) -> Uuid {
    let mut name = Vec::with_capacity(16 + key.len() + 8);
    name.extend_from_slice(caller.as_bytes());
    name.extend_from_slice(key.as_bytes());
    name.extend_from_slice(&first_used.timestamp_micros().to_be_bytes());
    Uuid::new_v5(&COMMAND_NAMESPACE, &name)
}

/// Claim the key for this attempt: a new key, an expired one, or one whose first attempt died
/// with the same request. The key's first use time, when claimed.
async fn claim(
    pool: &PgPool,
    caller: Uuid,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO idempotency_keys (caller, key, fingerprint) VALUES ($1, $2, $3)
         ON CONFLICT (caller, key) DO UPDATE SET
             fingerprint = EXCLUDED.fingerprint, status = NULL, headers = NULL, body = NULL,
             created_at = CASE WHEN idempotency_keys.created_at < clock_timestamp() - make_interval(secs => $4)
                               THEN clock_timestamp() ELSE idempotency_keys.created_at END,
             claimed_at = clock_timestamp()
         WHERE idempotency_keys.created_at < clock_timestamp() - make_interval(secs => $4)
            OR (idempotency_keys.status IS NULL
                AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
                AND idempotency_keys.claimed_at < clock_timestamp() - make_interval(secs => $5))
         RETURNING created_at",
    )
    .bind(caller)
    .bind(key)
    .bind(fingerprint)
    .bind(KEY_LIFETIME_SECS)
    .bind(CLAIM_LEASE_SECS)
    .fetch_optional(pool)
    .await
}

/// A stored key: fingerprint, and the first answer's status, headers and body once answered.
type KeyRow = (Vec<u8>, Option<i16>, Option<serde_json::Value>, Option<Vec<u8>>);

async fn seen(pool: &PgPool, caller: Uuid, key: &str, fingerprint: &[u8]) -> Result<Seen, sqlx::Error> {
    let row: Option<KeyRow> = sqlx::query_as(
        "SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE caller = $1 AND key = $2",
    )
    .bind(caller)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        // Deleted since (the first attempt failed and gave the key back): claim again.
        None => Seen::InFlight,
        Some((stored, _, _, _)) if stored != fingerprint => Seen::OtherRequest,
        Some((_, Some(status), headers, body)) => Seen::Answered(replay(status, headers, body)),
        Some(_) => Seen::InFlight,
    })
}

fn replay(status: i16, headers: Option<serde_json::Value>, body: Option<Vec<u8>>) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let mut response = (status, body.unwrap_or_default()).into_response();
    if let Some(serde_json::Value::Object(stored)) = headers {
        for (name, value) in stored {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Keep the first answer; a transient failure (5xx, 429) gives the key back for a retry.
async fn record(pool: &PgPool, caller: Uuid, key: &str, response: Response) -> Result<Response, sqlx::Error> {
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        sqlx::query("DELETE FROM idempotency_keys WHERE caller = $1 AND key = $2 AND status IS NULL")
            .bind(caller)
            .bind(key)
            .execute(pool)
            .await?;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return Ok(ApiError::Unexpected(anyhow::anyhow!("answer too large to keep")).into_response());
    };
    let headers: serde_json::Map<String, serde_json::Value> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = parts.headers.get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.into()))
        })
        .collect();
    sqlx::query(
        "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 WHERE caller = $1 AND key = $2",
    )
    .bind(caller)
    .bind(key)
    .bind(status.as_u16() as i16)
    .bind(serde_json::Value::Object(headers))
    .bind(body.as_ref())
    .execute(pool)
    .await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_id_depends_on_caller_key_and_first_use() {
        let at = Utc::now();
        let a = command_id(Uuid::nil(), "k1", at);
        assert_eq!(a, command_id(Uuid::nil(), "k1", at));
        assert_ne!(a, command_id(Uuid::max(), "k1", at));
        assert_ne!(a, command_id(Uuid::nil(), "k2", at));
        assert_ne!(a, command_id(Uuid::nil(), "k1", at + chrono::Duration::days(1)));
    }

    #[test]
    fn the_fingerprint_covers_method_path_content_type_and_body() {
        let uri: axum::http::Uri = "/api/v1/jobs".parse().expect("uri");
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let base = fingerprint(&Method::POST, &uri, &json, b"{}");
        assert_eq!(base, fingerprint(&Method::POST, &uri, &json, b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, &uri, &json, b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, &uri, &HeaderMap::new(), b"{}"));
        assert_ne!(base, fingerprint(&Method::POST, &uri, &json, b"{ }"));
    }
}
