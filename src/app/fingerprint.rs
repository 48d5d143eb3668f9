//! What an idempotent request means, field by field, so a reused `request_id` can be told
//! apart from a retry and the differing fields named.
//!
//! A fingerprint is computed from the request's meaning: the parsed domain values, as
//! canonical JSON, with every field at its default left out. So a field added to a request
//! in a later release (absent, hence at its default, in an old client's retry) does not
//! change the fingerprint of an identical retry, whatever the transport. Version 2; the
//! first release's fingerprints (version 1: the `Debug` text of the proto request's
//! top-level fields) are still compared, by the transport's own text of the request
//! ([`Fingerprint::legacy`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// The key marking the format version in a stored fingerprint.
const VERSION_KEY: &str = "~v";
const VERSION: &str = "2";

/// A request's top-level fields (except `request_id`) as stable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<String, String>);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint::new()
    }
}

impl Fingerprint {
    /// An empty version-2 fingerprint.
    pub fn new() -> Self {
        Fingerprint(BTreeMap::from([(
            VERSION_KEY.to_string(),
            VERSION.to_string(),
        )]))
    }

    /// Adds a field from its domain value; a field at its default is left out.
    pub fn with(mut self, field: &str, value: &impl Serialize) -> Self {
        let json = serde_json::to_value(value)
            .map(without_defaults)
            .unwrap_or(Value::Null);
        if !json.is_null() {
            self.0.insert(field.to_string(), json.to_string());
        }
        self
    }

    /// A first-release fingerprint of a request: its top-level fields' text as the
    /// transport printed them then. Only compared with fingerprints stored then.
    pub fn legacy(fields: impl IntoIterator<Item = (String, String)>) -> Self {
        Fingerprint(fields.into_iter().collect())
    }

    fn is_current(&self) -> bool {
        self.0.get(VERSION_KEY).map(String::as_str) == Some(VERSION)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// A stored fingerprint; unreadable text compares as different from everything.
    pub fn from_json(s: &str) -> Self {
        Fingerprint(serde_json::from_str(s).unwrap_or_default())
    }

    /// The fields whose values differ.
    pub fn differences(&self, other: &Fingerprint) -> Vec<String> {
        let keys: BTreeSet<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter()
            .filter(|k| k.as_str() != VERSION_KEY && self.0.get(*k) != other.0.get(*k))
            .cloned()
            .collect()
    }

    /// The fields in which a request differs from the one stored under its key: compared
    /// in the stored fingerprint's version (`legacy` is this request's first-release
    /// fingerprint, when the transport has one).
    pub fn differences_from_stored(
        &self,
        stored: &Fingerprint,
        legacy: Option<&Fingerprint>,
    ) -> Vec<String> {
        if stored.is_current() {
            return self.differences(stored);
        }
        match legacy {
            Some(l) => l.differences(stored),
            // No first-release form of this request: it cannot have been sent then.
            None => vec!["the request".to_string()],
        }
    }
}

/// The value with every field at its default (null, false, 0, empty) left out, all the
/// way down; what remains is the meaning. Items of a list keep their place.
fn without_defaults(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, without_defaults(v)))
                .filter(|(_, v)| !v.is_null())
                .collect();
            if kept.is_empty() {
                Value::Null
            } else {
                Value::Object(kept)
            }
        }
        Value::Array(items) if items.is_empty() => Value::Null,
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| match without_defaults(i) {
                    // An item keeps its place even when it is all defaults.
                    Value::Null => Value::Object(serde_json::Map::new()),
                    kept => kept,
                })
                .collect(),
        ),
        Value::Bool(false) => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        Value::Number(n) if n.as_f64() == Some(0.0) => Value::Null,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Ticket {
        external_id: String,
        priority: Option<String>,
    }

    /// The same ticket as a later release would have it: one more optional field.
    #[derive(Serialize)]
    struct TicketWithMore {
        external_id: String,
        priority: Option<String>,
        language: Option<String>,
        tags: Vec<String>,
    }

    #[test]
    fn differences_name_the_fields() {
        let a = Fingerprint::new()
            .with("calendar_id", &"office")
            .with("calendar", &Some(1));
        let b = Fingerprint::new()
            .with("calendar_id", &"office")
            .with("calendar", &Some(2));
        assert_eq!(a.differences(&a.clone()), Vec::<String>::new());
        assert_eq!(a.differences(&b), vec!["calendar".to_string()]);
        assert_eq!(Fingerprint::from_json(&a.to_json()), a);
    }

    #[test]
    fn a_field_added_later_at_its_default_changes_nothing() {
        let old = Fingerprint::new().with(
            "ticket",
            &Ticket {
                external_id: "1001".into(),
                priority: None,
            },
        );
        let new = Fingerprint::new().with(
            "ticket",
            &TicketWithMore {
                external_id: "1001".into(),
                priority: None,
                language: None,
                tags: vec![],
            },
        );
        assert_eq!(old, new);
        let set = Fingerprint::new().with(
            "ticket",
            &TicketWithMore {
                external_id: "1001".into(),
                priority: None,
                language: Some("fr".into()),
                tags: vec![],
            },
        );
        assert_eq!(old.differences(&set), vec!["ticket".to_string()]);
    }

    #[test]
    fn first_release_fingerprints_compare_by_their_own_text() {
        let stored = Fingerprint::legacy([("ticket".to_string(), "Some(T { a: 1 })".to_string())]);
        let now = Fingerprint::new().with("ticket", &1);
        let same = Fingerprint::legacy([("ticket".to_string(), "Some(T { a: 1 })".to_string())]);
        let other = Fingerprint::legacy([("ticket".to_string(), "Some(T { a: 2 })".to_string())]);
        assert!(now.differences_from_stored(&stored, Some(&same)).is_empty());
        assert_eq!(
            now.differences_from_stored(&stored, Some(&other)),
            vec!["ticket".to_string()]
        );
        assert!(!now.differences_from_stored(&stored, None).is_empty());
    }
}
