//! API tokens: made from random bytes, kept only as a SHA-256 hash, compared in constant
//! time.
//!
//! A token servicelevel makes reads `sl_<client id>_<secret>`: the prefix makes leaked
//! tokens easy to find by scanners, the client id says whose it is, and the secret is 32
//! random bytes in hex. Any other string works as a token too (the bootstrap admin's token
//! is whatever its operator made): a token is looked up by its hash alone.

use sha2::{Digest, Sha256};

/// How tokens servicelevel makes begin.
pub const PREFIX: &str = "sl_";

/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// The SHA-256 of a token, in lowercase hex: what `printf %s "$token" | sha256sum` prints.
pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// `a == b`, in a time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// A new client id: 32 lowercase hex digits.
pub fn new_client_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A new token for a client: `sl_<client id>_<64 hex digits>`.
pub fn new_token(client_id: &str) -> Result<String, String> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| format!("no random bytes from the system: {e}"))?;
    Ok(format!("{PREFIX}{client_id}_{}", hex(&secret)))
}

/// The client id a token servicelevel made names (`None` for other tokens). For messages
/// only: a token is valid when its hash is stored, whatever it says.
pub fn client_id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 32 && secret.len() == SECRET_BYTES * 2).then_some(id)
}

/// A token hash as an operator supplies it: 64 hex digits, in any case, possibly followed
/// by `sha256sum`'s `  -`. Returns it in lowercase.
pub fn parse_hash(s: &str) -> Result<String, String> {
    let first = s.split_whitespace().next().unwrap_or("");
    if first.len() == 64 && first.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(first.to_ascii_lowercase())
    } else {
        // The value is not echoed: it may be the token itself, given by mistake.
        Err(format!(
            "a token hash is the 64 hex digits of the token's SHA-256 \
             (printf %s \"$token\" | sha256sum); this value has {} characters",
            s.trim().chars().count()
        ))
    }
}

/// The token of an `authorization` header value (`Bearer <token>`).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 1024)
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        // printf %s abc | sha256sum
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash("").len(), 64);
    }

    #[test]
    fn tokens_are_random_and_name_their_client() {
        let id = new_client_id();
        let a = new_token(&id).unwrap();
        let b = new_token(&id).unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("sl_"));
        assert_eq!(a.len(), 3 + 32 + 1 + 64);
        assert_eq!(client_id_of(&a), Some(id.as_str()));
        assert_eq!(client_id_of("sl_short_x"), None);
        assert_eq!(client_id_of("0123abcd"), None);
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn operator_hashes_are_checked() {
        let h = hash("token");
        assert_eq!(parse_hash(&h), Ok(h.clone()));
        assert_eq!(parse_hash(&format!("{}  -\n", h.to_uppercase())), Ok(h));
        assert!(parse_hash("abc").is_err());
        assert!(parse_hash("").is_err());
        assert!(parse_hash(&"g".repeat(64)).is_err());
    }

    #[test]
    fn bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }
}
