//! Decoding one payload with one route's format.

use ferry_protocols::json::{self, JsonContext};
use ferry_protocols::topic::TopicMatch;
use ferry_protocols::{FieldValue, Reading, Tags, compression, lp, msgpack};

use super::config::{PayloadFormat, RouteConfig};

/// Most errors of one payload quoted in a dead letter.
const MAX_QUOTED_ERRORS: usize = 5;

/// What one payload yielded.
#[derive(Debug, Default)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    /// Why parts of the payload were rejected (empty if all was good).
    pub failure: Option<DecodeFailure>,
}

/// Why (part of) a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    /// How many readings, lines or records were rejected (0 if the whole
    /// payload was unreadable).
    pub rejected: usize,
    pub message: String,
}

impl Decoded {
    fn whole(message: String) -> Self {
        Decoded {
            readings: Vec::new(),
            failure: Some(DecodeFailure {
                rejected: 0,
                message,
            }),
        }
    }

    fn partial(readings: Vec<Reading>, count: usize, first: Vec<String>) -> Self {
        let failure = (count > 0).then(|| {
            let mut message = first.join("; ");
            if count > first.len() {
                message.push_str(&format!("; and {} more", count - first.len()));
            }
            DecodeFailure {
                rejected: count,
                message,
            }
        });
        Decoded { readings, failure }
    }
}

/// Decodes `payload` for `route`, given what the topic captured.
pub(crate) fn decode(
    route: &RouteConfig,
    captured: &TopicMatch,
    payload: &[u8],
    now_ns: i64,
) -> Decoded {
    if payload.len() as u64 > route.max_payload.as_u64() {
        return Decoded::whole(format!(
            "payload is {} bytes; the route's max_payload is {}",
            payload.len(),
            route.max_payload
        ));
    }
    // The measurement and tags the topic and the route give.
    let measurement = captured
        .measurement
        .clone()
        .or_else(|| route.measurement.clone());
    let mut tags: Tags = route.tags.clone();
    tags.extend(captured.tags.iter().cloned());

    let mut decoded = match route.format {
        PayloadFormat::LineProtocol => {
            let out = lp::parse(payload, route.precision, now_ns);
            let first = out
                .errors
                .iter()
                .take(MAX_QUOTED_ERRORS)
                .map(|e| e.to_string());
            Decoded::partial(out.readings, out.error_count, first.collect())
        }
        PayloadFormat::Msgpack => {
            let body = match compression::decompress(payload, route.max_payload.as_u64() as usize) {
                Ok(body) => body,
                Err(e) => return Decoded::whole(e.to_string()),
            };
            match msgpack::decode(&body, now_ns) {
                Ok(out) => {
                    let first = out
                        .errors
                        .iter()
                        .take(MAX_QUOTED_ERRORS)
                        .map(|e| e.to_string());
                    Decoded::partial(out.readings, out.error_count, first.collect())
                }
                Err(e) => Decoded::whole(e.to_string()),
            }
        }
        PayloadFormat::Json => {
            // Config validation guarantees a JSON route has a measurement
            // (its own or the topic's); a row record may still name another.
            let Some(measurement) = measurement.clone() else {
                return Decoded::whole("the route names no measurement".into());
            };
            let mut ctx = JsonContext::new(measurement, now_ns);
            ctx.tags = tags.clone();
            match json::decode(payload, &ctx) {
                Ok(out) => {
                    let first = out
                        .errors
                        .iter()
                        .take(MAX_QUOTED_ERRORS)
                        .map(|e| e.to_string());
                    Decoded::partial(out.readings, out.error_count, first.collect())
                }
                Err(e) => Decoded::whole(e.to_string()),
            }
        }
        PayloadFormat::Value => {
            let Some(measurement) = measurement.clone() else {
                return Decoded::whole("the route names no measurement".into());
            };
            match parse_value(payload) {
                Ok(value) => {
                    let mut reading = Reading::new(measurement, now_ns);
                    reading.fields.insert(route.field.clone(), value);
                    Decoded {
                        readings: vec![reading],
                        failure: None,
                    }
                }
                Err(message) => Decoded::whole(message),
            }
        }
    };

    // Topic and route tags apply to every reading; the payload's own tags win.
    for reading in &mut decoded.readings {
        for (k, v) in &tags {
            reading.tags.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    decoded
}

/// `format = "value"`: one number or boolean as text.
fn parse_value(payload: &[u8]) -> Result<FieldValue, String> {
    let text = std::str::from_utf8(payload)
        .map_err(|e| format!("payload is not UTF-8: {e}"))?
        .trim();
    match text {
        "true" | "True" | "TRUE" => return Ok(FieldValue::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(FieldValue::Bool(false)),
        _ => {}
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(FieldValue::F64(v)),
        Ok(_) => Err(format!("value {text:?} is not finite")),
        Err(_) => {
            let shown: String = text.chars().take(64).collect();
            Err(format!("expected a number or a boolean, got {shown:?}"))
        }
    }
}
