//! Connections: a helpdesk (or any signed source) pushing its tickets' state to an
//! organisation over webhooks. Pure rules: what a connection says ([`ConnectionSpec`]),
//! how each provider signs a delivery ([`signatures`]), how a delivery is split and read
//! ([`payloads`]), and how a snapshot of a ticket at the source becomes the ticket's legal
//! events ([`snapshot`]).

pub mod payloads;
pub mod signatures;
pub mod snapshot;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::{ExternalId, PriorityLabel, RequestType, ResourceId};
use super::status::Status;

/// Who pushes, which fixes how deliveries are signed, identified and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Zendesk,
    Hubspot,
    Jira,
    Freshdesk,
    /// Any source signing with the Standard Webhooks scheme, in servicelevel's own body.
    Generic,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Zendesk,
        Provider::Hubspot,
        Provider::Jira,
        Provider::Freshdesk,
        Provider::Generic,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Zendesk => "zendesk",
            Provider::Hubspot => "hubspot",
            Provider::Jira => "jira",
            Provider::Freshdesk => "freshdesk",
            Provider::Generic => "generic",
        }
    }

    /// Whether a delivery's signature covers the URL it was sent to (then the URL as the
    /// sender saw it, before any ingress rewrote it, is the connection's public one).
    pub fn signs_url(self) -> bool {
        matches!(self, Provider::Hubspot)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("unknown provider {s:?}: zendesk, hubspot, jira, freshdesk or generic")
            })
    }
}

/// How the source's values read in the organisation's terms. Source values are matched
/// without regard to case or surrounding spaces ("Open", "open ").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    #[serde(default)]
    pub statuses: BTreeMap<String, Status>,
    #[serde(default)]
    pub priorities: BTreeMap<String, PriorityLabel>,
    #[serde(default)]
    pub request_types: BTreeMap<String, RequestType>,
    /// The request type of a ticket whose source sends none (or one not mapped, when
    /// set): tickets need one to be created.
    #[serde(default)]
    pub default_request_type: Option<RequestType>,
}

/// The key a source value is looked up by.
pub fn mapping_key(source_value: &str) -> String {
    source_value.trim().to_lowercase()
}

impl Mapping {
    /// The mapping with every key in its lookup form; two keys that differ only in case
    /// are one key (the error names them).
    pub fn normalised(self) -> Result<Mapping, String> {
        fn keys<V>(field: &str, m: BTreeMap<String, V>) -> Result<BTreeMap<String, V>, String> {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let key = mapping_key(&k);
                if key.is_empty() {
                    return Err(format!("{field}: a source value must not be empty"));
                }
                if out.insert(key.clone(), v).is_some() {
                    return Err(format!("{field}: {key:?} is mapped twice"));
                }
            }
            Ok(out)
        }
        Ok(Mapping {
            statuses: keys("statuses", self.statuses)?,
            priorities: keys("priorities", self.priorities)?,
            request_types: keys("request_types", self.request_types)?,
            default_request_type: self.default_request_type,
        })
    }

    pub fn status(&self, v: &str) -> Option<Status> {
        self.statuses.get(&mapping_key(v)).copied()
    }

    pub fn priority(&self, v: &str) -> Option<&PriorityLabel> {
        self.priorities.get(&mapping_key(v))
    }

    pub fn request_type(&self, v: &str) -> Option<&RequestType> {
        self.request_types.get(&mapping_key(v))
    }
}

/// A connection as stored: whose tickets, from which provider, and how to read them.
/// Its secrets are kept apart (they are never shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSpec {
    pub organization: ResourceId,
    pub provider: Provider,
    /// The tickets' `source_system`: the provider's name unless set.
    pub source_system: ExternalId,
    /// Where the sender posts, as it sees it (`https://sl.example.com`), when the signature
    /// covers the URL and an ingress rewrites it on the way in.
    #[serde(default)]
    pub public_base_url: Option<String>,
    #[serde(default)]
    pub mapping: Mapping,
}

/// A public base URL: `http(s)://host[:port][/prefix]`, no query, no fragment; kept
/// without a trailing slash.
pub fn public_base_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("must name a host".into());
    }
    if s.contains(['?', '#', ' ']) {
        return Err("must not hold a query, a fragment or spaces".into());
    }
    if s.len() > 512 {
        return Err("must be at most 512 characters".into());
    }
    Ok(s.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_keys_ignore_case_and_spaces() {
        let m = Mapping {
            statuses: BTreeMap::from([(" Open".to_string(), Status::Processing)]),
            ..Mapping::default()
        }
        .normalised()
        .expect("one key");
        assert_eq!(m.status("OPEN "), Some(Status::Processing));
        assert_eq!(m.status("pending"), None);
        let twice = Mapping {
            statuses: BTreeMap::from([
                ("Open".to_string(), Status::Processing),
                ("open".to_string(), Status::Confirmed),
            ]),
            ..Mapping::default()
        };
        assert_eq!(
            twice.normalised(),
            Err("statuses: \"open\" is mapped twice".to_string())
        );
    }

    #[test]
    fn providers_round_trip() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
        }
        assert!("salesforce".parse::<Provider>().is_err());
    }

    #[test]
    fn public_base_urls_are_checked() {
        assert_eq!(
            public_base_url("https://sl.example.com/in/"),
            Ok("https://sl.example.com/in".to_string())
        );
        assert!(public_base_url("sl.example.com").is_err());
        assert!(public_base_url("https:///x").is_err());
        assert!(public_base_url("https://a/?x=1").is_err());
    }
}
