//! The opaque `page_token`s of the payments lists: hex of a list kind, a body and a short
//! SHA-256 check, so a mangled token, or one of another list (or role), is refused as a 400
//! instead of reaching the store.
//!
//! - [`TransactionCursor`]: a wallet's transactions (Redis), below a wallet version.
//! - [`RequestCursor`]: a user's payment requests (Cassandra), a side and the driver's paging
//!   state within it.

use scylla::response::PagingState;
use sha2::{Digest, Sha256};

use super::PartyRole;

/// A `page_token` that this read model did not issue (or that belongs to another list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("page_token is not a token this list issued")]
pub struct BadPageToken;

/// Longest token accepted, in characters.
const MAX_TOKEN_CHARS: usize = 4096;

/// Encode `body` as an opaque token of `kind`: hex of kind, body and a short check, so a
/// mangled or foreign token is refused as a 400 instead of reaching the store.
fn encode_token(kind: u8, body: &[u8]) -> String {
    let mut raw = Vec::with_capacity(body.len() + 5);
    raw.push(kind);
    raw.extend_from_slice(body);
    let check = token_check(&raw);
    raw.extend_from_slice(&check);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(kind: u8, token: &str) -> Result<Vec<u8>, BadPageToken> {
    if token.len() > MAX_TOKEN_CHARS || !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(BadPageToken);
    }
    let raw = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).map_err(|_| BadPageToken))
        .collect::<Result<Vec<u8>, _>>()?;
    if raw.len() < 5 || raw[0] != kind {
        return Err(BadPageToken);
    }
    let (signed, check) = raw.split_at(raw.len() - 4);
    if token_check(signed) != check {
        return Err(BadPageToken);
    }
    Ok(signed[1..].to_vec())
}

fn token_check(raw: &[u8]) -> [u8; 4] {
    let digest = Sha256::new_with_prefix(b"workup.payments.page")
        .chain_update(raw)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

const TRANSACTIONS_TOKEN: u8 = b't';
const REQUESTS_TOKEN: u8 = b'r';

/// Where a transaction page starts: below this wallet version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionCursor(pub(super) i64);

impl TransactionCursor {
    /// Read a `page_token` of the transactions list.
    pub fn parse(token: &str) -> Result<Self, BadPageToken> {
        let body: [u8; 8] = decode_token(TRANSACTIONS_TOKEN, token)?
            .try_into()
            .map_err(|_| BadPageToken)?;
        Ok(Self(i64::from_be_bytes(body)))
    }

    /// The `page_token` of the transaction page below wallet version `below`.
    pub(super) fn token(below: i64) -> String {
        encode_token(TRANSACTIONS_TOKEN, &below.to_be_bytes())
    }
}

/// Where a payment request page starts: a side (client rows, then freelancer rows) and the
/// Cassandra paging state within it.
#[derive(Debug, Clone)]
pub struct RequestCursor {
    pub(super) side: PartyRole,
    pub(super) state: PagingState,
}

impl RequestCursor {
    /// Read a `page_token` of the requests list asked with `role` (a token of another role's
    /// list is refused).
    pub fn parse(token: &str, role: Option<PartyRole>) -> Result<Self, BadPageToken> {
        let body = decode_token(REQUESTS_TOKEN, token)?;
        let (&[scope, side], state) = body.split_first_chunk::<2>().ok_or(BadPageToken)?;
        if scope != role_byte(role) {
            return Err(BadPageToken);
        }
        let side = match side {
            b'c' => PartyRole::Client,
            b'f' => PartyRole::Freelancer,
            _ => return Err(BadPageToken),
        };
        if role.is_some_and(|r| r != side) {
            return Err(BadPageToken);
        }
        let state = if state.is_empty() {
            PagingState::start()
        } else {
            PagingState::new_from_raw_bytes(state)
        };
        Ok(Self { side, state })
    }

    /// The `page_token` of the requests list asked with `role`, going on at `side`, `state`.
    pub(super) fn token(role: Option<PartyRole>, side: PartyRole, state: &PagingState) -> String {
        let mut body = vec![
            role_byte(role),
            match side {
                PartyRole::Client => b'c',
                PartyRole::Freelancer => b'f',
            },
        ];
        if let Some(bytes) = state.as_bytes_slice() {
            body.extend_from_slice(bytes);
        }
        encode_token(REQUESTS_TOKEN, &body)
    }
}

fn role_byte(role: Option<PartyRole>) -> u8 {
    match role {
        None => b'*',
        Some(PartyRole::Client) => b'c',
        Some(PartyRole::Freelancer) => b'f',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_what_they_did_not_issue() {
        let token = TransactionCursor::token(42);
        assert_eq!(TransactionCursor::parse(&token), Ok(TransactionCursor(42)));
        let mut mangled = token.clone();
        mangled.replace_range(4..6, if &token[4..6] == "00" { "01" } else { "00" });
        for bad in [mangled.as_str(), "", "zz", "00", &token[..token.len() - 2]] {
            assert_eq!(TransactionCursor::parse(bad), Err(BadPageToken), "{bad:?}");
        }
        let requests = RequestCursor::token(None, PartyRole::Freelancer, &PagingState::start());
        assert_eq!(
            TransactionCursor::parse(&requests),
            Err(BadPageToken),
            "another list's token"
        );
        let cursor = RequestCursor::parse(&requests, None).expect("own token");
        assert_eq!(cursor.side, PartyRole::Freelancer);
        assert!(
            RequestCursor::parse(&requests, Some(PartyRole::Freelancer)).is_err(),
            "another role's token"
        );
        assert!(RequestCursor::parse(&requests, Some(PartyRole::Client)).is_err());
    }
}
