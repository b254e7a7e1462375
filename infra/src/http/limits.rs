//! Rate limits of the unauthenticated entry points (registration, login): per client address and
//! per email, so that one caller can neither guess passwords quickly nor keep the password
//! hasher busy for everyone. A refusal is a 429 problem with `Retry-After`.

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use std::{
    convert::Infallible,
    hash::Hash,
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
};

use super::problem::ApiError;
use crate::config::AuthConfig;

/// The limits of the sign-in endpoints, shared by every request of a process.
#[derive(Clone)]
pub struct SignInLimits {
    by_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    by_email: Arc<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for SignInLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInLimits").finish_non_exhaustive()
    }
}

impl SignInLimits {
    /// The limits configured per minute (a zero limit is taken as one).
    pub fn new(config: &AuthConfig) -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            by_address: Arc::new(RateLimiter::keyed(per_minute(config.rate_per_address))),
            by_email: Arc::new(RateLimiter::keyed(per_minute(config.rate_per_email))),
        }
    }

    /// Take one attempt for `address` and, when known, `email` (lower-cased); 429 when either is
    /// spent.
    pub fn check(&self, address: ClientAddress, email: Option<&str>) -> Result<(), ApiError> {
        if let Some(ip) = address.0 {
            take(&self.by_address, &ip, "too-many-requests-from-address")?;
        }
        if let Some(email) = email {
            take(
                &self.by_email,
                &email.trim().to_lowercase(),
                "too-many-attempts-for-email",
            )?;
        }
        Ok(())
    }
}

fn take<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    code: &'static str,
) -> Result<(), ApiError> {
    // Forget keys whose quota is whole again, so the maps stay small.
    if limiter.len() > 10_000 {
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| ApiError::RateLimited {
        code,
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    })
}

/// The caller's network address (the TCP peer), if the server records it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_per_key_and_answers_when_to_retry() {
        let config = AuthConfig {
            rate_per_address: 2,
            rate_per_email: 1,
            ..crate::config::Config::local().auth
        };
        let limits = SignInLimits::new(&config);
        let here = ClientAddress(Some(IpAddr::from([10, 0, 0, 1])));
        let there = ClientAddress(Some(IpAddr::from([10, 0, 0, 2])));
        assert!(limits.check(here, Some("a@example.com")).is_ok());
        let Err(ApiError::RateLimited { code, retry_after }) = limits.check(there, Some("A@example.com "))
        else {
            panic!("a second attempt for the same email passed");
        };
        assert_eq!(code, "too-many-attempts-for-email");
        assert!(retry_after.as_secs() <= 60);
        assert!(limits.check(here, Some("b@example.com")).is_ok());
        assert!(matches!(
            limits.check(here, Some("c@example.com")),
            Err(ApiError::RateLimited {
                code: "too-many-requests-from-address",
                ..
            })
        ));
    }
}
