//! Typed, validated names.
//!
//! Every name that reaches a file path, a table name or a column name passes
//! through one of these types once, at the edge (a parser, a config loader, an
//! HTTP handler). After that it cannot hold a hostile value.
//!
//! | type | length (bytes) | allowed |
//! |---|---|---|
//! | [`DatabaseName`] | 1..=64 | ASCII letters, digits, `_`, `-`; starts with a letter or digit |
//! | [`AgentId`] | 1..=64 | ASCII letters, digits, `_`, `-`, `.`; no `..`; starts with a letter or digit |
//! | [`Measurement`] | 1..=255 | any UTF-8 except control characters, `/`, `\`, `..`; no leading `.` |
//! | [`TagKey`], [`FieldKey`] | 1..=255 | any UTF-8 except control characters; not `time` |
//!
//! `time` is reserved for the timestamp column, so no tag or field may use it.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest database name or agent id, in bytes.
pub const MAX_SHORT_NAME_LEN: usize = 64;
/// Longest measurement, tag key or field key, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// The name of the timestamp column, reserved in every table.
pub const TIME_COLUMN: &str = "time";

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is {len} bytes long; the limit is {max}")]
    TooLong {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{kind} {name:?} contains the forbidden character {ch:?} at byte {at}")]
    ForbiddenChar {
        kind: &'static str,
        name: String,
        ch: char,
        at: usize,
    },
    #[error("{kind} {name:?} contains \"..\"")]
    DotDot { kind: &'static str, name: String },
    #[error("{kind} {name:?} must start with {rule}")]
    BadStart {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("{kind} may not be {TIME_COLUMN:?}: it is reserved for the timestamp column")]
    Reserved { kind: &'static str },
}

fn check_len(kind: &'static str, s: &str, max: usize) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if s.len() > max {
        return Err(NameError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_chars(
    kind: &'static str,
    s: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    match s.char_indices().find(|&(_, c)| !allowed(c)) {
        Some((at, ch)) => Err(NameError::ForbiddenChar {
            kind,
            name: s.to_owned(),
            ch,
            at,
        }),
        None => Ok(()),
    }
}

fn check_no_dotdot(kind: &'static str, s: &str) -> Result<(), NameError> {
    if s.contains("..") {
        return Err(NameError::DotDot {
            kind,
            name: s.to_owned(),
        });
    }
    Ok(())
}

fn validate_database(s: &str) -> Result<(), NameError> {
    const KIND: &str = "database name";
    check_len(KIND, s, MAX_SHORT_NAME_LEN)?;
    check_chars(KIND, s, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-'
    })?;
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadStart {
            kind: KIND,
            name: s.to_owned(),
            rule: "a letter or digit",
        });
    }
    Ok(())
}

fn validate_agent_id(s: &str) -> Result<(), NameError> {
    const KIND: &str = "agent id";
    check_len(KIND, s, MAX_SHORT_NAME_LEN)?;
    check_chars(KIND, s, |c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
    })?;
    check_no_dotdot(KIND, s)?;
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadStart {
            kind: KIND,
            name: s.to_owned(),
            rule: "a letter or digit",
        });
    }
    Ok(())
}

fn validate_measurement(s: &str) -> Result<(), NameError> {
    const KIND: &str = "measurement";
    check_len(KIND, s, MAX_NAME_LEN)?;
    check_chars(KIND, s, |c| !c.is_control() && c != '/' && c != '\\')?;
    check_no_dotdot(KIND, s)?;
    if s.starts_with('.') {
        return Err(NameError::BadStart {
            kind: KIND,
            name: s.to_owned(),
            rule: "a character other than '.'",
        });
    }
    Ok(())
}

fn validate_column(kind: &'static str, s: &str) -> Result<(), NameError> {
    check_len(kind, s, MAX_NAME_LEN)?;
    check_chars(kind, s, |c| !c.is_control())?;
    if s == TIME_COLUMN {
        return Err(NameError::Reserved { kind });
    }
    Ok(())
}

fn validate_tag_key(s: &str) -> Result<(), NameError> {
    validate_column("tag key", s)
}

fn validate_field_key(s: &str) -> Result<(), NameError> {
    validate_column("field key", s)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $validate:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: impl AsRef<str> + Into<String>) -> Result<Self, NameError> {
                $validate(s.as_ref())?;
                Ok(Self(s.into().into_boxed_str()))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A database: the first half of a `database.measurement` table name, and a
    /// directory under the hub's table root.
    DatabaseName,
    validate_database
);
name_type!(
    /// A gateway's identity: the Delta transaction app id of its segments.
    AgentId,
    validate_agent_id
);
name_type!(
    /// A measurement: the second half of a table name, and a directory.
    Measurement,
    validate_measurement
);
name_type!(
    /// A tag key: a dictionary-encoded string column.
    TagKey,
    validate_tag_key
);
name_type!(
    /// A field key: a typed value column.
    FieldKey,
    validate_field_key
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names() {
        assert!(DatabaseName::new("plant_1").is_ok());
        assert!(DatabaseName::new("a-b").is_ok());
        for bad in ["", "a/b", "..", "a.b", "_x", "-x", "a b", "a\\b", "é"] {
            assert!(DatabaseName::new(bad).is_err(), "{bad:?} accepted");
        }
        let long = "a".repeat(65);
        assert!(matches!(
            DatabaseName::new(long),
            Err(NameError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn agent_ids() {
        assert!(AgentId::new("gw-01.plant").is_ok());
        for bad in ["", "..", "a..b", ".a", "a/b", "a b"] {
            assert!(AgentId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn measurements() {
        for good in ["cpu", "cpu load", "temp,c", "température", "a.b", "x=y"] {
            assert!(Measurement::new(good).is_ok(), "{good:?} rejected");
        }
        for bad in ["", "a/b", "a\\b", "..", "a..b", ".hidden", "a\nb", "a\0b"] {
            assert!(Measurement::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Measurement::new("m".repeat(255)).is_ok());
        assert!(Measurement::new("m".repeat(256)).is_err());
    }

    #[test]
    fn column_names() {
        assert!(TagKey::new("host").is_ok());
        assert!(FieldKey::new("a/b").is_ok());
        assert!(matches!(
            TagKey::new("time"),
            Err(NameError::Reserved { .. })
        ));
        assert!(matches!(
            FieldKey::new("time"),
            Err(NameError::Reserved { .. })
        ));
        let err = FieldKey::new("a\tb").unwrap_err();
        assert_eq!(
            err.to_string(),
            "field key \"a\\tb\" contains the forbidden character '\\t' at byte 1"
        );
    }

    #[test]
    fn serde_validates() {
        let ok: DatabaseName = serde_json::from_str("\"db1\"").unwrap();
        assert_eq!(ok.as_str(), "db1");
        assert!(serde_json::from_str::<DatabaseName>("\"../etc\"").is_err());
    }
}
