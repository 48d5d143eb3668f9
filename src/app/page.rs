//! Page tokens (AIP-158): opaque to clients, bound to the query they came from.

use serde::{Serialize, de::DeserializeOwned};

use super::error::{AppError, AppResult};

#[derive(serde::Serialize, serde::Deserialize)]
struct Token<T> {
    /// A digest of the query's filters: a token only continues the query it came from.
    q: u64,
    at: T,
}

/// FNV-1a: stable across processes and releases, unlike std's hasher.
fn digest(query: &str) -> u64 {
    query.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn encode<T: Serialize>(query: &str, at: &T) -> String {
    let json = serde_json::to_vec(&Token {
        q: digest(query),
        at,
    })
    .unwrap_or_default();
    json.iter().map(|b| format!("{b:02x}")).collect()
}

/// The position a token continues from; an empty token is the first page.
pub fn decode<T: DeserializeOwned>(query: &str, token: &str) -> AppResult<Option<T>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || AppError::invalid("page_token", "is not a token this query returned");
    if !token.len().is_multiple_of(2) || token.len() > 4096 {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid())?;
    let t: Token<T> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if t.q != digest(query) {
        return Err(AppError::invalid(
            "page_token",
            "belongs to a query with other filters; start again without it",
        ));
    }
    Ok(Some(t.at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_with_their_query() {
        let token = encode("org=acme", &("2026-03-09", 17));
        assert_eq!(
            decode::<(String, i32)>("org=acme", &token).ok().flatten(),
            Some(("2026-03-09".into(), 17))
        );
        assert!(decode::<(String, i32)>("org=other", &token).is_err());
        assert!(decode::<(String, i32)>("org=acme", "zz").is_err());
        assert!(matches!(decode::<(String, i32)>("org=acme", ""), Ok(None)));
    }
}
