//! `[[routes]]`: which topics become readings, and how.

use std::collections::BTreeMap;

use ferry_protocols::topic::TopicTemplate;
use ferry_protocols::{DatabaseName, FieldKey, Measurement, Precision, TagKey};
use serde::{Deserialize, Serialize};

/// How a route decodes payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadFormat {
    /// JSON: a bare value, `{"value": x}`, a flat object of fields, or the
    /// row shape `{"m", "t", "tags", "fields"}`.
    Json,
    /// InfluxDB line protocol, one or more lines.
    LineProtocol,
    /// Arc MessagePack, columnar or row, optionally gzip/zstd.
    Msgpack,
    /// The payload is one number or boolean as text (`21.5`, `true`).
    Value,
}

/// One `[[routes]]` block.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A topic filter or template, e.g. `site/{site}/{device}/{measurement}`.
    pub topic: TopicTemplate,
    /// The database readings go to.
    pub database: DatabaseName,
    /// The measurement, unless the template captures `{measurement}` or the
    /// payload names it (line protocol, MessagePack, JSON row shape).
    #[serde(default)]
    pub measurement: Option<Measurement>,
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    /// Static tags added to every reading of this route.
    #[serde(default)]
    pub tags: BTreeMap<TagKey, String>,
    /// For `format = "value"`: the field name.
    #[serde(default = "default_field")]
    pub field: FieldKey,
    /// For `format = "line-protocol"`: the timestamp precision.
    #[serde(default)]
    pub precision: Precision,
    /// Largest payload this route decodes; bigger ones are dead letters.
    #[serde(default = "default_max_payload")]
    pub max_payload: bytesize::ByteSize,
}

fn default_format() -> PayloadFormat {
    PayloadFormat::Json
}

fn default_field() -> FieldKey {
    FieldKey::new("value").expect("\"value\" is a valid field key")
}

fn default_max_payload() -> bytesize::ByteSize {
    bytesize::ByteSize::mib(1)
}

impl RouteConfig {
    /// Reports every problem with its key path (`routes[2].measurement`).
    pub fn validate(&self, index: usize, errors: &mut Vec<String>) {
        let path = format!("routes[{index}]");
        let payload_names_it = matches!(
            self.format,
            PayloadFormat::LineProtocol | PayloadFormat::Msgpack
        );
        if self.measurement.is_none() && !self.topic.captures_measurement() && !payload_names_it {
            errors.push(format!(
                "{path}.measurement: required, because topic {:?} does not capture {{measurement}} and format {:?} does not name one",
                self.topic.as_str(),
                self.format
            ));
        }
        for key in self.topic.tag_keys() {
            if self.tags.contains_key(key) {
                errors.push(format!(
                    "{path}.tags.{key}: also captured from the topic; keep one"
                ));
            }
        }
        if self.max_payload.as_u64() == 0 {
            errors.push(format!("{path}.max_payload: must be greater than 0"));
        }
    }
}
