//! The opaque page token of a list: the driver's paging state, hex-encoded.

/// Longest page token accepted.
const MAX_PAGE_TOKEN: usize = 1_024;

/// The opaque page token of a paging state.
pub(super) fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// The paging state of a page token, or `None` if it cannot be one.
pub(super) fn decode(token: &str) -> Option<Vec<u8>> {
    if token.is_empty() || token.len() > MAX_PAGE_TOKEN || !token.len().is_multiple_of(2) || !token.is_ascii()
    {
        return None;
    }
    (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_round_trips_and_refuses_garbage() {
        let bytes = [0u8, 1, 0xab, 0xff, 0x10];
        assert_eq!(decode(&encode(&bytes)).as_deref(), Some(&bytes[..]));
        for bad in ["", "abc", "zz", "é1", &"00".repeat(MAX_PAGE_TOKEN)] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
