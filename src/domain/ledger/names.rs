//! The ledger's own names: buckets, activity kinds and currencies, parsed once at the edge
//! like the names in `domain::names`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::names::{NameError, check, name_type, snake_char};

fn upper_char(_: usize, c: char) -> bool {
    c.is_ascii_uppercase()
}

name_type!(
    /// An hour account's bucket, in the contract's words: `meetings`, `training`,
    /// `customer_success`, or any name a plan defines.
    BucketName, 64, snake_char, "a-z, 0-9 and '_' (starting with a letter)"
);
name_type!(
    /// A kind of activity recorded against a bucket: `weekly_review`, `quarterly_review`.
    ActivityKind, 64, snake_char, "a-z, 0-9 and '_' (starting with a letter)"
);

/// An ISO 4217 currency code: exactly three capital letters (`GBP`, `USD`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        check(s, 3, upper_char, "A-Z")?;
        let len = s.chars().count();
        if len != 3 {
            // A code shorter than three letters is as wrong as a longer one.
            return Err(NameError::BadCharacters(
                s.to_string(),
                "exactly three letters A-Z",
            ));
        }
        Ok(Currency(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_names_are_checked_once() {
        assert!(BucketName::parse("customer_success").is_ok());
        assert!(BucketName::parse("Meetings").is_err());
        assert!(ActivityKind::parse("weekly_review").is_ok());
        assert!(ActivityKind::parse("_review").is_err());
        assert!(Currency::parse("GBP").is_ok());
        assert!(Currency::parse("gbp").is_err());
        assert!(Currency::parse("GB").is_err());
        assert!(Currency::parse("GBPX").is_err());
        let bad: Result<Currency, _> = serde_json::from_str("\"EU\"");
        assert!(bad.is_err());
    }
}
