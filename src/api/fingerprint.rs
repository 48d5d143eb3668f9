//! What an idempotent request was, field by field, so a reused `request_id` can be told
//! apart from a retry and the differing fields named.

use std::collections::BTreeMap;
use std::fmt::Debug;

/// The request's top-level fields (except `request_id`) as stable text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<String, String>);

impl Fingerprint {
    pub fn new() -> Self {
        Fingerprint::default()
    }

    /// Adds a field; prost messages print deterministically with `Debug`.
    pub fn with(mut self, field: &str, value: &impl Debug) -> Self {
        self.0.insert(field.to_string(), format!("{value:?}"));
        self
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
        let keys: std::collections::BTreeSet<&String> =
            self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter()
            .filter(|k| self.0.get(*k) != other.0.get(*k))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
