//! MQTT topic templates.
//!
//! A template is an MQTT topic filter whose levels may also *capture* values:
//!
//! | level | meaning |
//! |---|---|
//! | `plant` | a literal level; must match exactly |
//! | `+` | any single level, not captured |
//! | `#` | any number of trailing levels (only as the last level) |
//! | `{measurement}` | one level, captured as the reading's measurement |
//! | `{name}` | one level, captured as the tag `name` |
//!
//! So `site/{site}/{device}/{measurement}` matches `site/north/pump-7/pressure`
//! with tags `site=north`, `device=pump-7` and measurement `pressure`, and
//! `plant/+/+/temperature` is a plain filter. A template is parsed once
//! ([`FromStr`]) into a [`TopicTemplate`]; [`TopicTemplate::filter`] gives the
//! subscription filter (captures become `+`).
//!
//! Matching follows MQTT: levels are separated by `/`, empty levels are
//! levels, and a topic whose first level starts with `$` (e.g. `$SYS/...`) is
//! not matched by a template whose first level is a wildcard or capture.
//! A captured value must be non-empty and valid for its role (a measurement
//! may not contain `..`, for instance); otherwise matching returns an error,
//! so that a hostile topic cannot create a hostile table name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::{Measurement, NameError, TagKey};

/// The name of the capture that sets the measurement.
pub const MEASUREMENT_CAPTURE: &str = "measurement";
/// Longest template or topic, in bytes (the MQTT limit).
pub const MAX_TOPIC_LEN: usize = 65_535;

#[derive(Clone, PartialEq, Eq)]
enum Level {
    Literal(Box<str>),
    Plus,
    Hash,
    Measurement,
    Tag(TagKey),
}

/// A parsed topic template. See the module docs for the syntax.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    source: Box<str>,
    levels: Vec<Level>,
}

/// Why a template was rejected. `level` is 1-based, `offset` is the byte
/// offset of the level in the template string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("topic template is empty")]
    Empty,
    #[error("topic template is {len} bytes long; the MQTT limit is {MAX_TOPIC_LEN}")]
    TooLong { len: usize },
    #[error("level {level} (byte {offset}): '#' must be the last level")]
    HashNotLast { level: usize, offset: usize },
    #[error(
        "level {level} (byte {offset}): {text:?} mixes a wildcard or brace with other characters; a wildcard or capture must be a whole level"
    )]
    PartialWildcard {
        level: usize,
        offset: usize,
        text: String,
    },
    #[error("level {level} (byte {offset}): capture {{{name}}} appears twice")]
    DuplicateCapture {
        level: usize,
        offset: usize,
        name: String,
    },
    #[error("level {level} (byte {offset}): bad capture name: {source}")]
    BadCaptureName {
        level: usize,
        offset: usize,
        source: NameError,
    },
    #[error("topic template contains a NUL character at byte {offset}")]
    Nul { offset: usize },
}

/// Why a topic that matched a template could not be turned into names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("topic level {level} captured as {role} is not valid: {source}")]
    Invalid {
        level: usize,
        role: String,
        source: NameError,
    },
    #[error("topic level {level} captured as {role} is empty")]
    Empty { level: usize, role: String },
}

/// What a topic yielded when it matched a template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicMatch {
    /// The measurement, if the template captures `{measurement}`.
    pub measurement: Option<Measurement>,
    /// Captured tags, in template order.
    pub tags: Vec<(TagKey, String)>,
}

impl TopicTemplate {
    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The MQTT subscription filter: captures become `+`.
    pub fn filter(&self) -> String {
        let mut out = String::with_capacity(self.source.len());
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match level {
                Level::Literal(s) => out.push_str(s),
                Level::Plus | Level::Measurement | Level::Tag(_) => out.push('+'),
                Level::Hash => out.push('#'),
            }
        }
        out
    }

    /// True if the template captures the measurement.
    pub fn captures_measurement(&self) -> bool {
        self.levels.contains(&Level::Measurement)
    }

    /// The tag keys the template captures, in order.
    pub fn tag_keys(&self) -> impl Iterator<Item = &TagKey> {
        self.levels.iter().filter_map(|l| match l {
            Level::Tag(k) => Some(k),
            _ => None,
        })
    }

    /// Matches `topic` against the template. `Ok(None)` means no match;
    /// `Err` means it matched but a captured level is not a valid name.
    pub fn matches(&self, topic: &str) -> Result<Option<TopicMatch>, CaptureError> {
        if topic.starts_with('$')
            && matches!(
                self.levels.first(),
                Some(Level::Plus | Level::Hash | Level::Measurement | Level::Tag(_))
            )
        {
            return Ok(None);
        }
        let mut out = TopicMatch::default();
        let mut parts = topic.split('/');
        for (i, level) in self.levels.iter().enumerate() {
            if *level == Level::Hash {
                return Ok(Some(out));
            }
            let Some(part) = parts.next() else {
                return Ok(None);
            };
            let level_no = i + 1;
            match level {
                Level::Literal(s) if **s == *part => {}
                Level::Literal(_) => return Ok(None),
                Level::Plus | Level::Hash => {}
                Level::Measurement => {
                    let m = capture(level_no, MEASUREMENT_CAPTURE, part, |s: &str| {
                        Measurement::new(s)
                    })?;
                    out.measurement = Some(m);
                }
                Level::Tag(key) => {
                    let value = capture(level_no, key.as_str(), part, |s: &str| {
                        // Tag values become column values, not names, but a
                        // control character in one is never intended.
                        match s.char_indices().find(|(_, c)| c.is_control()) {
                            Some((at, ch)) => Err(NameError::ForbiddenChar {
                                kind: "tag value",
                                name: s.to_owned(),
                                ch,
                                at,
                            }),
                            None => Ok(s.to_owned()),
                        }
                    })?;
                    out.tags.push((key.clone(), value));
                }
            }
        }
        if parts.next().is_some() {
            return Ok(None);
        }
        Ok(Some(out))
    }
}

fn capture<T>(
    level: usize,
    role: &str,
    part: &str,
    make: impl FnOnce(&str) -> Result<T, NameError>,
) -> Result<T, CaptureError> {
    if part.is_empty() {
        return Err(CaptureError::Empty {
            level,
            role: role.to_owned(),
        });
    }
    make(part).map_err(|source| CaptureError::Invalid {
        level,
        role: role.to_owned(),
        source,
    })
}

impl FromStr for TopicTemplate {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, TemplateError> {
        if s.is_empty() {
            return Err(TemplateError::Empty);
        }
        if s.len() > MAX_TOPIC_LEN {
            return Err(TemplateError::TooLong { len: s.len() });
        }
        if let Some(offset) = s.find('\0') {
            return Err(TemplateError::Nul { offset });
        }
        let count = s.split('/').count();
        let mut levels = Vec::with_capacity(count);
        let mut offset = 0;
        for (i, text) in s.split('/').enumerate() {
            let level = i + 1;
            let parsed = match text {
                "+" => Level::Plus,
                "#" if level == count => Level::Hash,
                "#" => return Err(TemplateError::HashNotLast { level, offset }),
                _ if text.len() >= 2 && text.starts_with('{') && text.ends_with('}') => {
                    let name = &text[1..text.len() - 1];
                    if name.contains(['{', '}', '+', '#']) {
                        return Err(TemplateError::PartialWildcard {
                            level,
                            offset,
                            text: text.to_owned(),
                        });
                    }
                    let parsed = if name == MEASUREMENT_CAPTURE {
                        Level::Measurement
                    } else {
                        TagKey::new(name).map(Level::Tag).map_err(|source| {
                            TemplateError::BadCaptureName {
                                level,
                                offset,
                                source,
                            }
                        })?
                    };
                    if levels.contains(&parsed) {
                        return Err(TemplateError::DuplicateCapture {
                            level,
                            offset,
                            name: name.to_owned(),
                        });
                    }
                    parsed
                }
                _ if text.contains(['+', '#', '{', '}']) => {
                    return Err(TemplateError::PartialWildcard {
                        level,
                        offset,
                        text: text.to_owned(),
                    });
                }
                _ => Level::Literal(text.into()),
            };
            levels.push(parsed);
            offset += text.len() + 1;
        }
        Ok(TopicTemplate {
            source: s.into(),
            levels,
        })
    }
}

impl fmt::Display for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl fmt::Debug for TopicTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicTemplate({:?})", &*self.source)
    }
}

impl Serialize for TopicTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for TopicTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TopicTemplate {
        s.parse().unwrap()
    }

    #[test]
    fn captures_measurement_and_tags() {
        let tpl = t("site/{site}/{device}/{measurement}");
        assert_eq!(tpl.filter(), "site/+/+/+");
        let m = tpl.matches("site/north/pump-7/pressure").unwrap().unwrap();
        assert_eq!(m.measurement.unwrap().as_str(), "pressure");
        let tags: Vec<_> = m
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(tags, [("site", "north"), ("device", "pump-7")]);
    }

    #[test]
    fn plain_filters() {
        let tpl = t("plant/+/+/temperature");
        assert_eq!(tpl.filter(), "plant/+/+/temperature");
        assert!(tpl.matches("plant/a/b/temperature").unwrap().is_some());
        assert!(tpl.matches("plant/a/b/humidity").unwrap().is_none());
        assert!(tpl.matches("plant/a/temperature").unwrap().is_none());
        assert!(tpl.matches("plant/a/b/temperature/x").unwrap().is_none());
    }

    #[test]
    fn hash_matches_parent_and_children() {
        let tpl = t("sensors/{device}/#");
        assert!(tpl.matches("sensors/d1").unwrap().is_some());
        assert!(tpl.matches("sensors/d1/a/b/c").unwrap().is_some());
        assert!(tpl.matches("other/d1").unwrap().is_none());
        assert!(t("#").matches("a/b").unwrap().is_some());
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards() {
        assert!(t("#").matches("$SYS/broker/load").unwrap().is_none());
        assert!(
            t("+/broker/load")
                .matches("$SYS/broker/load")
                .unwrap()
                .is_none()
        );
        assert!(t("$SYS/#").matches("$SYS/broker/load").unwrap().is_some());
    }

    #[test]
    fn hostile_captures_are_errors() {
        let tpl = t("m/{measurement}");
        assert!(matches!(
            tpl.matches("m/.."),
            Err(CaptureError::Invalid { level: 2, .. })
        ));
        assert!(matches!(
            tpl.matches("m/"),
            Err(CaptureError::Empty { level: 2, .. })
        ));
        let tpl = t("d/{device}");
        assert!(tpl.matches("d/a\u{1}b").is_err());
    }

    #[test]
    fn empty_levels_are_levels() {
        let tpl = t("a/+/c");
        assert!(tpl.matches("a//c").unwrap().is_some());
        assert!(t("/x").matches("/x").unwrap().is_some());
    }

    #[test]
    fn bad_templates() {
        assert_eq!("".parse::<TopicTemplate>(), Err(TemplateError::Empty));
        assert!(matches!(
            "a/#/b".parse::<TopicTemplate>(),
            Err(TemplateError::HashNotLast {
                level: 2,
                offset: 2
            })
        ));
        assert!(matches!(
            "a/b+/c".parse::<TopicTemplate>(),
            Err(TemplateError::PartialWildcard { level: 2, .. })
        ));
        assert!(matches!(
            "a/x{b}".parse::<TopicTemplate>(),
            Err(TemplateError::PartialWildcard { .. })
        ));
        assert!(matches!(
            "a/{b}/{b}".parse::<TopicTemplate>(),
            Err(TemplateError::DuplicateCapture { level: 3, .. })
        ));
        assert!(matches!(
            "a/{time}".parse::<TopicTemplate>(),
            Err(TemplateError::BadCaptureName { level: 2, .. })
        ));
        assert!(matches!(
            "a/{}".parse::<TopicTemplate>(),
            Err(TemplateError::PartialWildcard { .. }) | Err(TemplateError::BadCaptureName { .. })
        ));
        let err = "a/#/b".parse::<TopicTemplate>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "level 2 (byte 2): '#' must be the last level"
        );
    }

    #[test]
    fn serde_round_trip() {
        let tpl: TopicTemplate = serde_json::from_str("\"a/{b}/#\"").unwrap();
        assert_eq!(serde_json::to_string(&tpl).unwrap(), "\"a/{b}/#\"");
        assert!(serde_json::from_str::<TopicTemplate>("\"a/#/b\"").is_err());
    }
}
