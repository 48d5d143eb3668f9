//! How each provider signs a delivery, checked exactly as the vendor documents it, in
//! constant time, with its replay window where the scheme has a timestamp:
//!
//! | provider | header | signed | encoding | window |
//! | --- | --- | --- | --- | --- |
//! | zendesk | `x-zendesk-webhook-signature`, `-timestamp` (RFC 3339) | timestamp + body (the docs' older example: body + timestamp, also accepted) | base64 | 5 min |
//! | hubspot | `x-hubspot-signature-v3`, `x-hubspot-request-timestamp` (ms) | method + URI + body + timestamp | base64 | 5 min |
//! | jira | `x-hub-signature: sha256=…` | body | hex | none (deduplicated by its webhook identifier) |
//! | freshdesk | `x-servicelevel-webhook-secret` | nothing: the header is the secret | | none (deduplicated by the body's hash) |
//! | generic | Standard Webhooks `webhook-*` | id.timestamp.body | base64 | 5 min |
//!
//! Secrets are used as the vendor uses them: the text's bytes, except a generic source's
//! `whsec_` secret, whose key is base64. Two secrets may be active at once (a rotation):
//! either signing is enough.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, TimeDelta, Utc};

use super::Provider;
use crate::domain::signing::{SignatureError, SigningSecret, hmac_sha256, same, standard, within};

/// How old (or how far ahead) a signed timestamp may be.
pub const REPLAY_WINDOW: TimeDelta = TimeDelta::minutes(5);

/// The header a Freshdesk automation sends the connection's secret in.
pub const FRESHDESK_SECRET_HEADER: &str = "x-servicelevel-webhook-secret";

/// The shortest secret accepted for the providers whose secret is text.
pub const MIN_SECRET_CHARS: usize = 16;
pub const MAX_SECRET_CHARS: usize = 256;

/// A delivery as it arrived: what a signature may cover.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The URL the sender posted to, as the sender saw it: scheme, host, path, query.
    pub url: &'a str,
    /// Headers with lower-case names.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Signed<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A connection's secret as its provider uses it: the key bytes.
pub fn secret_key(provider: Provider, text: &str) -> Result<Vec<u8>, String> {
    match provider {
        Provider::Generic => SigningSecret::parse(text).map(|s| s.key().to_vec()),
        _ => {
            let n = text.chars().count();
            if !(MIN_SECRET_CHARS..=MAX_SECRET_CHARS).contains(&n) {
                return Err(format!(
                    "must be {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters"
                ));
            }
            if text.chars().any(|c| c.is_control() || c == ' ') {
                return Err("must not hold spaces or control characters".into());
            }
            Ok(text.as_bytes().to_vec())
        }
    }
}

/// Checks a delivery's signature against the connection's secrets.
pub fn verify(
    provider: Provider,
    secrets: &[Vec<u8>],
    d: &Signed<'_>,
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    match provider {
        Provider::Zendesk => zendesk(secrets, d, now),
        Provider::Hubspot => hubspot(secrets, d, now),
        Provider::Jira => jira(secrets, d),
        Provider::Freshdesk => freshdesk(secrets, d),
        Provider::Generic => {
            let keys: Vec<SigningSecret> = secrets
                .iter()
                .filter_map(|k| SigningSecret::from_key(k.clone()).ok())
                .collect();
            standard::verify(
                &keys,
                d.header("webhook-id"),
                d.header("webhook-timestamp"),
                d.header("webhook-signature"),
                d.body,
                now,
                REPLAY_WINDOW,
            )
        }
    }
}

fn any_secret(secrets: &[Vec<u8>], ok: impl Fn(&[u8]) -> bool) -> Result<(), SignatureError> {
    // Every secret is tried (no early exit), so the time taken does not say which matched.
    let matched = secrets.iter().fold(false, |found, key| ok(key) | found);
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn base64_signature(header: &'static str, v: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    let v = v.ok_or(SignatureError::Missing(header))?;
    BASE64
        .decode(v.trim())
        .map_err(|_| SignatureError::Malformed(header))
}

fn zendesk(secrets: &[Vec<u8>], d: &Signed<'_>, now: DateTime<Utc>) -> Result<(), SignatureError> {
    const SIG: &str = "x-zendesk-webhook-signature";
    const TS: &str = "x-zendesk-webhook-signature-timestamp";
    let presented = base64_signature(SIG, d.header(SIG))?;
    let ts = d.header(TS).ok_or(SignatureError::Missing(TS))?;
    let at = DateTime::parse_from_rfc3339(ts.trim()).map_err(|_| SignatureError::Malformed(TS))?;
    within(at.timestamp(), now, REPLAY_WINDOW)?;
    any_secret(secrets, |key| {
        let current = hmac_sha256(key, &[ts.as_bytes(), d.body]);
        let older = hmac_sha256(key, &[d.body, ts.as_bytes()]);
        same(&presented, &current) | same(&presented, &older)
    })
}

/// The URI HubSpot signs: the URL with these escapes decoded and every other left as
/// sent (HubSpot's documented list).
pub fn hubspot_uri(url: &str) -> String {
    const DECODED: [(&str, char); 12] = [
        ("%3A", ':'),
        ("%2F", '/'),
        ("%3F", '?'),
        ("%40", '@'),
        ("%21", '!'),
        ("%24", '$'),
        ("%27", '\''),
        ("%28", '('),
        ("%29", ')'),
        ("%2A", '*'),
        ("%2C", ','),
        ("%3B", ';'),
    ];
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        match DECODED.iter().find(|(e, _)| e.eq_ignore_ascii_case(escape)) {
            Some((_, c)) => {
                out.push(*c);
                rest = &rest[at + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn hubspot(secrets: &[Vec<u8>], d: &Signed<'_>, now: DateTime<Utc>) -> Result<(), SignatureError> {
    const SIG: &str = "x-hubspot-signature-v3";
    const TS: &str = "x-hubspot-request-timestamp";
    let presented = base64_signature(SIG, d.header(SIG))?;
    let ts = d.header(TS).ok_or(SignatureError::Missing(TS))?.trim();
    let ms: i64 = ts.parse().map_err(|_| SignatureError::Malformed(TS))?;
    within(ms.div_euclid(1000), now, REPLAY_WINDOW)?;
    let uri = hubspot_uri(d.url);
    any_secret(secrets, |key| {
        let mac = hmac_sha256(
            key,
            &[d.method.as_bytes(), uri.as_bytes(), d.body, ts.as_bytes()],
        );
        same(&presented, &mac)
    })
}

fn jira(secrets: &[Vec<u8>], d: &Signed<'_>) -> Result<(), SignatureError> {
    const SIG: &str = "x-hub-signature";
    let v = d.header(SIG).ok_or(SignatureError::Missing(SIG))?;
    let hex = v
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed(SIG))?;
    let presented = decode_hex(hex).ok_or(SignatureError::Malformed(SIG))?;
    any_secret(secrets, |key| {
        same(&presented, &hmac_sha256(key, &[d.body]))
    })
}

fn freshdesk(secrets: &[Vec<u8>], d: &Signed<'_>) -> Result<(), SignatureError> {
    let v = d
        .header(FRESHDESK_SECRET_HEADER)
        .ok_or(SignatureError::Missing(FRESHDESK_SECRET_HEADER))?;
    any_secret(secrets, |key| same(v.trim().as_bytes(), key))
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Hex of bytes, lower case.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn signed<'a>(url: &'a str, h: &'a [(String, String)], body: &'a [u8]) -> Signed<'a> {
        Signed {
            method: "POST",
            url,
            headers: h,
            body,
        }
    }

    // Zendesk's published example (developer.zendesk.com, "Verifying webhook
    // authenticity", NodeJS example): it signs body + timestamp, the order of the docs'
    // older formula.
    #[test]
    fn zendesk_published_example() {
        let key = secret_key(
            Provider::Zendesk,
            "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=",
        )
        .expect("a text secret");
        let h = headers(&[
            (
                "x-zendesk-webhook-signature",
                "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw=",
            ),
            (
                "x-zendesk-webhook-signature-timestamp",
                "2021-07-25T10:00:00Z",
            ),
        ]);
        let body = br#"{"say": "hello"}"#;
        let at = Utc
            .with_ymd_and_hms(2021, 7, 25, 10, 2, 0)
            .single()
            .expect("valid");
        let d = signed("https://x/webhooks/v1/z", &h, body);
        assert_eq!(
            verify(Provider::Zendesk, std::slice::from_ref(&key), &d, at),
            Ok(())
        );
        let late = at + TimeDelta::minutes(4);
        assert_eq!(
            verify(Provider::Zendesk, std::slice::from_ref(&key), &d, late),
            Err(SignatureError::Stale(300))
        );
        // The current formula, timestamp + body, is what Zendesk sends today.
        let current = BASE64.encode(hmac_sha256(&key, &[b"2021-07-25T10:00:00Z", body]));
        let h2 = headers(&[
            ("x-zendesk-webhook-signature", &current),
            (
                "x-zendesk-webhook-signature-timestamp",
                "2021-07-25T10:00:00Z",
            ),
        ]);
        let d2 = signed("https://x/webhooks/v1/z", &h2, body);
        assert_eq!(verify(Provider::Zendesk, &[key], &d2, at), Ok(()));
        let other = b"another-secret-of-16".to_vec();
        assert_eq!(
            verify(Provider::Zendesk, &[other], &d2, at),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn hubspot_signs_method_uri_body_and_milliseconds() {
        let key = b"hubspot-client-secret".to_vec();
        let body = br#"[{"eventId":1}]"#;
        let sent = "https://sl.example.com/webhooks/v1/hs?a=b%3Ac%2Bd";
        let ts = "1764950400000";
        let sig = BASE64.encode(hmac_sha256(
            &key,
            &[
                b"POST",
                b"https://sl.example.com/webhooks/v1/hs?a=b:c%2Bd",
                body,
                ts.as_bytes(),
            ],
        ));
        let h = headers(&[
            ("x-hubspot-signature-v3", &sig),
            ("x-hubspot-request-timestamp", ts),
        ]);
        let now = Utc.timestamp_opt(1_764_950_460, 0).single().expect("valid");
        let d = signed(sent, &h, body);
        assert_eq!(
            verify(Provider::Hubspot, std::slice::from_ref(&key), &d, now),
            Ok(())
        );
        let moved = signed("https://internal:8080/webhooks/v1/hs?a=b%3Ac%2Bd", &h, body);
        assert_eq!(
            verify(Provider::Hubspot, std::slice::from_ref(&key), &moved, now),
            Err(SignatureError::Mismatch),
            "the URL is signed: an ingress rewriting it needs the public base URL"
        );
        let stale = now + TimeDelta::minutes(6);
        assert_eq!(
            verify(Provider::Hubspot, &[key], &d, stale),
            Err(SignatureError::Stale(300))
        );
    }

    #[test]
    fn hubspot_uri_decodes_only_its_list() {
        assert_eq!(
            hubspot_uri("https://h/p%3Fq?x=%3a%2B%20%2f%25%"),
            "https://h/p?q?x=:%2B%20/%25%"
        );
    }

    #[test]
    fn jira_signs_the_body_in_hex() {
        let key = b"jira-webhook-secret".to_vec();
        let body = br#"{"webhookEvent":"jira:issue_updated"}"#;
        let sig = format!("sha256={}", hex(&hmac_sha256(&key, &[body])));
        let h = headers(&[("x-hub-signature", &sig)]);
        let now = Utc::now();
        let d = signed("https://x", &h, body);
        assert_eq!(
            verify(Provider::Jira, std::slice::from_ref(&key), &d, now),
            Ok(())
        );
        let h = headers(&[("x-hub-signature", "sha256=zz")]);
        assert_eq!(
            verify(Provider::Jira, &[key], &signed("https://x", &h, body), now),
            Err(SignatureError::Malformed("x-hub-signature"))
        );
    }

    #[test]
    fn freshdesk_sends_the_secret_and_rotation_takes_either() {
        let old = b"freshdesk-secret-one".to_vec();
        let new = b"freshdesk-secret-two".to_vec();
        let h = headers(&[(FRESHDESK_SECRET_HEADER, "freshdesk-secret-two")]);
        let d = signed("https://x", &h, b"{}");
        let now = Utc::now();
        assert_eq!(
            verify(Provider::Freshdesk, &[old.clone(), new], &d, now),
            Ok(())
        );
        assert_eq!(
            verify(Provider::Freshdesk, &[old], &d, now),
            Err(SignatureError::Mismatch)
        );
        let none = headers(&[]);
        assert_eq!(
            verify(
                Provider::Freshdesk,
                &[],
                &signed("https://x", &none, b"{}"),
                now
            ),
            Err(SignatureError::Missing(FRESHDESK_SECRET_HEADER))
        );
    }

    #[test]
    fn text_secrets_have_bounds() {
        assert!(secret_key(Provider::Jira, "short").is_err());
        assert!(
            secret_key(Provider::Jira, "sixteen chars ok").is_err(),
            "a space"
        );
        assert!(secret_key(Provider::Jira, "sixteen-chars-ok").is_ok());
        assert!(secret_key(Provider::Generic, "sixteen-chars-ok").is_err());
    }
}
