//! Topic names and topic filters, checked as MQTT 3.1.1 §4.7 and MQTT 5
//! §4.7–4.8 require (validation from `mqtt5-protocol`, the crate whose
//! packets the engine speaks).

use std::sync::Arc;

use mqtt5_protocol::validation::{is_valid_topic_filter, is_valid_topic_name};

/// Most levels a topic name or filter may have. Each level is a node of
/// the engine's topic trees, so without a bound one 64 KiB topic of `/`s
/// would cost tens of megabytes and a recursion as deep; Mosquitto refuses
/// more than 200 levels for the same reason (its CVE-2019-11779).
pub const MAX_LEVELS: usize = 200;

fn too_deep(s: &str) -> bool {
    s.bytes().filter(|&b| b == b'/').count() >= MAX_LEVELS
}

/// Why a topic name or filter is refused (MQTT 5 reason code 0x90 "topic
/// name invalid" for a PUBLISH, 0x8F "topic filter invalid" for a
/// SUBSCRIBE; MQTT 3.1.1 closes the connection or answers 0x80 in the
/// SUBACK).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic name {0:?} is empty, too long, has a NUL or a wildcard")]
    Name(String),
    #[error("topic has more than {MAX_LEVELS} levels")]
    TooDeep,
    #[error(
        "topic filter {0:?} is empty, too long, has a NUL, or a wildcard that is not a whole level (# only last)"
    )]
    Filter(String),
    #[error(
        "shared subscription {0:?} needs $share/<group>/<filter> with a group without wildcards"
    )]
    Share(String),
}

/// A checked topic filter: the filter proper and, for a shared
/// subscription (`$share/<group>/<filter>`, MQTT 5 §4.8.2), its group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The filter that topics are matched against (without `$share/<group>/`).
    pub filter: Arc<str>,
    /// The share group, for a shared subscription.
    pub group: Option<Arc<str>>,
}

impl Filter {
    /// Parses what a SUBSCRIBE or UNSUBSCRIBE carries.
    pub fn parse(raw: &str) -> Result<Filter, TopicError> {
        if too_deep(raw) {
            return Err(TopicError::TooDeep);
        }
        if let Some(rest) = raw.strip_prefix("$share/") {
            let (group, filter) = rest
                .split_once('/')
                .ok_or_else(|| TopicError::Share(raw.to_owned()))?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(TopicError::Share(raw.to_owned()));
            }
            if !is_valid_topic_filter(filter) {
                return Err(TopicError::Share(raw.to_owned()));
            }
            return Ok(Filter {
                filter: filter.into(),
                group: Some(group.into()),
            });
        }
        if raw == "$share" {
            return Err(TopicError::Share(raw.to_owned()));
        }
        if !is_valid_topic_filter(raw) {
            return Err(TopicError::Filter(raw.to_owned()));
        }
        Ok(Filter {
            filter: raw.into(),
            group: None,
        })
    }

    /// The filter's levels.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.filter.split('/')
    }
}

/// Checks a PUBLISH's topic name (after any MQTT 5 topic alias is
/// resolved).
pub fn check_name(topic: &str) -> Result<(), TopicError> {
    if too_deep(topic) {
        Err(TopicError::TooDeep)
    } else if is_valid_topic_name(topic) {
        Ok(())
    } else {
        Err(TopicError::Name(topic.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_the_specification() {
        for ok in [
            "#", "+", "a", "a/b", "/", "a/+/c", "a/#", "+/+", "/+", "$SYS/#", "a//b",
        ] {
            let f = Filter::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(&*f.filter, ok);
            assert_eq!(f.group, None);
        }
        for bad in ["", "a#", "a/#/b", "a/b+", "#/a", "a\0b", "+a"] {
            assert_eq!(
                Filter::parse(bad),
                Err(TopicError::Filter(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn shared_subscriptions_name_a_group_and_a_filter() {
        let f = Filter::parse("$share/g1/sensors/+/temp").expect("valid");
        assert_eq!(&*f.filter, "sensors/+/temp");
        assert_eq!(f.group.as_deref(), Some("g1"));
        for bad in [
            "$share",
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/a#",
        ] {
            assert_eq!(
                Filter::parse(bad),
                Err(TopicError::Share(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_have_no_wildcards() {
        for ok in ["a", "/", "a/b", "$SYS/x", "a//b", "ü/€"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/+", "a/#", "a\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn more_than_200_levels_are_refused() {
        let deepest = vec!["a"; MAX_LEVELS].join("/");
        assert_eq!(check_name(&deepest), Ok(()));
        assert!(Filter::parse(&deepest).is_ok());
        let deeper = format!("{deepest}/a");
        assert_eq!(check_name(&deeper), Err(TopicError::TooDeep));
        assert_eq!(Filter::parse(&deeper), Err(TopicError::TooDeep));
        let slashes = "/".repeat(65_000);
        assert_eq!(check_name(&slashes), Err(TopicError::TooDeep));
        assert_eq!(
            Filter::parse(&format!("$share/g/{slashes}")),
            Err(TopicError::TooDeep)
        );
    }
}
