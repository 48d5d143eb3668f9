//! Names and identifiers, parsed once at the edge.
//!
//! Each newtype can only hold a valid value, so nothing past the API checks them again.

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("{0:?} has characters outside {1}")]
    BadCharacters(String, &'static str),
}

/// Checks a name: not empty, at most `max` characters, each `allowed` at its position.
pub(crate) fn check(
    s: &str,
    max: usize,
    allowed: fn(usize, char) -> bool,
    what: &'static str,
) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    let len = s.chars().count();
    if len > max {
        return Err(NameError::TooLong { len, max });
    }
    if !s.chars().enumerate().all(|(i, c)| allowed(i, c)) {
        return Err(NameError::BadCharacters(s.to_string(), what));
    }
    Ok(())
}

/// A string newtype that only holds names `check` accepts (serde included).
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $allowed:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(s: &str) -> Result<Self, $crate::domain::names::NameError> {
                $crate::domain::names::check(s, $max, $allowed, $what)?;
                Ok($name(s.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::names::NameError;
            fn try_from(s: String) -> Result<Self, $crate::domain::names::NameError> {
                $crate::domain::names::check(&s, $max, $allowed, $what)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use name_type;

fn id_char(i: usize, c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && c == '-')
}

/// snake_case: a-z first, then a-z, 0-9 and `_`.
pub(crate) fn snake_char(i: usize, c: char) -> bool {
    c.is_ascii_lowercase() || (i > 0 && (c.is_ascii_digit() || c == '_'))
}

fn label_char(_: usize, c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn text_char(_: usize, c: char) -> bool {
    !c.is_control()
}

name_type!(
    /// A resource id chosen by the client (AIP-122): lowercase letters, digits and `-`,
    /// starting with a letter or digit, at most 63 characters.
    ResourceId, 63, id_char, "a-z, 0-9 and '-' (not first)"
);
name_type!(
    /// A clock metric, in the contract's words: `receipt_confirmation`, `first_response`.
    MetricName, 64, snake_char, "a-z, 0-9 and '_' (starting with a letter)"
);
name_type!(
    /// A calendar slot an organisation fills: `office`, `support`, `24x7`.
    SlotName, 64, label_char, "letters, digits, '-', '_' and '.'"
);
name_type!(
    /// A priority label a policy declares: `P2`, `sev-1`.
    PriorityLabel, 64, label_char, "letters, digits, '-', '_' and '.'"
);
name_type!(
    /// A request type: `task`, `meeting`, `training`, `incident`.
    RequestType, 64, snake_char, "a-z, 0-9 and '_' (starting with a letter)"
);
name_type!(
    /// A plan name such as `tier-3`.
    PlanName, 64, label_char, "letters, digits, '-', '_' and '.'"
);
name_type!(
    /// A contact role such as `main_stakeholder`.
    RoleName, 64, snake_char, "a-z, 0-9 and '_' (starting with a letter)"
);
name_type!(
    /// The name of a custom event a policy can trigger on: `engineering_engaged`.
    CustomEventName, 64, snake_char, "a-z, 0-9 and '_' (starting with a letter)"
);
name_type!(
    /// An id given by another system (a CRM's ticket number, a contact id): any printable
    /// text up to 256 characters.
    ExternalId, 256, text_char, "printable characters"
);
name_type!(
    /// A short human-readable text: a display name, a reason.
    ShortText, 1024, text_char, "printable characters"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once() {
        assert!(ResourceId::parse("acme-corp").is_ok());
        assert_eq!(ResourceId::parse(""), Err(NameError::Empty));
        assert!(ResourceId::parse("-acme").is_err());
        assert!(ResourceId::parse("Acme").is_err());
        assert!(matches!(
            ResourceId::parse(&"a".repeat(64)),
            Err(NameError::TooLong { len: 64, max: 63 })
        ));
        assert!(MetricName::parse("receipt_confirmation").is_ok());
        assert!(MetricName::parse("1st_response").is_err());
        assert!(PriorityLabel::parse("sev-1").is_ok());
        assert!(PriorityLabel::parse("P 1").is_err());
        assert!(ExternalId::parse("ZD#1234 / a").is_ok());
        assert!(ExternalId::parse("bad\nline").is_err());
    }

    #[test]
    fn serde_refuses_invalid_names() {
        let ok: Result<MetricName, _> = serde_json::from_str("\"first_response\"");
        assert!(ok.is_ok());
        let bad: Result<MetricName, _> = serde_json::from_str("\"First Response\"");
        assert!(bad.is_err());
    }
}
