//! Webhook signatures: HMAC-SHA256 as helpdesks sign what they push, and the Standard
//! Webhooks scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`) servicelevel
//! signs its own deliveries with and accepts from a `generic` source.
//!
//! Comparisons of a computed signature with a presented one take the same time whatever
//! they hold, so a sender cannot learn a valid signature byte by byte.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether two byte strings are equal, in time that depends only on their lengths.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Why a delivery's signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the delivery's timestamp is more than {0} s old")]
    Stale(i64),
    #[error("the delivery's timestamp is more than {0} s ahead of this server's clock")]
    Future(i64),
    #[error("no signature matches")]
    Mismatch,
}

/// A Standard Webhooks signing secret: `whsec_` and the key in base64.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    /// The shortest key accepted: 24 bytes (Standard Webhooks asks for 24 to 64).
    pub const MIN_BYTES: usize = 24;
    pub const MAX_BYTES: usize = 64;

    pub fn parse(s: &str) -> Result<Self, String> {
        let key = s.strip_prefix("whsec_").ok_or("must start with whsec_")?;
        let bytes = BASE64
            .decode(key)
            .map_err(|_| "must be whsec_ followed by base64".to_string())?;
        Self::from_key(bytes)
    }

    /// A secret of these key bytes (a random one is the caller's to draw).
    pub fn from_key(key: Vec<u8>) -> Result<Self, String> {
        if (Self::MIN_BYTES..=Self::MAX_BYTES).contains(&key.len()) {
            Ok(SigningSecret(key))
        } else {
            Err(format!(
                "the key must be {} to {} bytes",
                Self::MIN_BYTES,
                Self::MAX_BYTES
            ))
        }
    }

    /// The secret as a receiver configures it.
    pub fn reveal(&self) -> String {
        format!("whsec_{}", BASE64.encode(&self.0))
    }

    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

/// The Standard Webhooks scheme.
pub mod standard {
    use super::*;

    /// The `webhook-signature` value of a delivery: `v1,` and the base64 HMAC of
    /// `id.timestamp.body`.
    pub fn sign(secret: &SigningSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = hmac_sha256(
            secret.key(),
            &[
                id.as_bytes(),
                b".",
                timestamp.to_string().as_bytes(),
                b".",
                body,
            ],
        );
        format!("v1,{}", BASE64.encode(mac))
    }

    /// Checks a delivery's headers against any of `secrets` (two during a rotation):
    /// the timestamp within `tolerance` of `now` either way, and one of the
    /// space-separated `v1` signatures matching.
    pub fn verify(
        secrets: &[SigningSecret],
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
        tolerance: TimeDelta,
    ) -> Result<(), SignatureError> {
        let id = id.ok_or(SignatureError::Missing("webhook-id"))?;
        let ts_text = timestamp.ok_or(SignatureError::Missing("webhook-timestamp"))?;
        let signatures = signatures.ok_or(SignatureError::Missing("webhook-signature"))?;
        let ts: i64 = ts_text
            .parse()
            .map_err(|_| SignatureError::Malformed("webhook-timestamp"))?;
        within(ts, now, tolerance)?;
        let presented: Vec<Vec<u8>> = signatures
            .split(' ')
            .filter_map(|s| s.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, sig)| BASE64.decode(sig).ok())
            .collect();
        let matches = secrets.iter().any(|secret| {
            let mac = hmac_sha256(
                secret.key(),
                &[id.as_bytes(), b".", ts_text.as_bytes(), b".", body],
            );
            presented.iter().any(|p| same(p, &mac))
        });
        if matches {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// A sender's timestamp (seconds since the epoch) within `tolerance` of `now`.
pub fn within(ts: i64, now: DateTime<Utc>, tolerance: TimeDelta) -> Result<(), SignatureError> {
    let now_s = now.timestamp();
    let tol = tolerance.num_seconds();
    if now_s - ts > tol {
        Err(SignatureError::Stale(tol))
    } else if ts - now_s > tol {
        Err(SignatureError::Future(tol))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    // The Standard Webhooks repository's published vector (libraries, test_sign).
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1_649_367_553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).single().expect("valid")
    }

    #[test]
    fn signs_the_published_vector() {
        let secret = SigningSecret::parse(SECRET).expect("parses");
        assert_eq!(standard::sign(&secret, ID, TS, BODY), SIGNATURE);
        assert_eq!(secret.reveal(), SECRET);
    }

    #[test]
    fn verifies_any_matching_signature_of_any_secret() {
        let secret = SigningSecret::parse(SECRET).expect("parses");
        let other = SigningSecret::from_key(vec![7; 32]).expect("32 bytes");
        let five = TimeDelta::minutes(5);
        let ts = TS.to_string();
        let check = |secrets: &[SigningSecret], sigs: &str, now: i64, body: &[u8]| {
            standard::verify(
                secrets,
                Some(ID),
                Some(&ts),
                Some(sigs),
                body,
                at(now),
                five,
            )
        };
        assert_eq!(
            check(std::slice::from_ref(&secret), SIGNATURE, TS, BODY),
            Ok(())
        );
        let several = format!("v1,AAAA v2,xyz {SIGNATURE}");
        assert_eq!(
            check(&[other.clone(), secret.clone()], &several, TS + 300, BODY),
            Ok(())
        );
        assert_eq!(
            check(std::slice::from_ref(&other), SIGNATURE, TS, BODY),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(std::slice::from_ref(&secret), SIGNATURE, TS, b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(std::slice::from_ref(&secret), SIGNATURE, TS + 301, BODY),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            check(std::slice::from_ref(&secret), SIGNATURE, TS - 301, BODY),
            Err(SignatureError::Future(300))
        );
        assert_eq!(
            standard::verify(
                &[secret],
                None,
                Some(&ts),
                Some(SIGNATURE),
                BODY,
                at(TS),
                five
            ),
            Err(SignatureError::Missing("webhook-id"))
        );
    }

    #[test]
    fn secrets_are_checked() {
        assert!(SigningSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").is_err());
        assert!(SigningSecret::parse("whsec_!!").is_err());
        assert!(SigningSecret::parse("whsec_AAAA").is_err(), "too short");
        assert_eq!(
            format!("{:?}", SigningSecret::parse(SECRET).expect("parses")),
            "SigningSecret(..)"
        );
    }

    #[test]
    fn comparison_needs_equal_lengths() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
