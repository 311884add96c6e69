//! Row records: `{"m", "t", "h", "tags", "fields" | "f"}`.

use crate::name::{FieldKey, TagKey};
use crate::reading::Reading;

use super::RecordErrorKind;
use super::cursor::{Cursor, Header};
use super::value::{self, Fail, RecordKeys};

/// Decodes one row record whose keys were scanned into `keys`.
pub(super) fn decode(
    body: &[u8],
    keys: &RecordKeys,
    default_time_ns: i64,
) -> Result<Reading, Fail> {
    let measurement = value::measurement(body, keys)?;

    let time_ns = match keys.t {
        None => default_time_ns,
        Some(pos) => value::row_time(Cursor::at(body, pos).value()?)
            .map_err(|kind| Fail::new(pos, kind).key("t"))?
            .unwrap_or(default_time_ns),
    };
    let mut reading = Reading::new(measurement, time_ns);

    if let Some(pos) = keys.tags {
        value::read_tags(body, pos, &mut reading.tags)?;
    }
    if let Some(pos) = keys.h {
        let host = match Cursor::at(body, pos).value()? {
            Header::Nil => None,
            Header::Str(s) => Some(value::lossy(s)),
            Header::Int(n) => Some(format!("host_{n}")),
            Header::UInt(n) => Some(format!("host_{n}")),
            other => {
                return Err(Fail::new(
                    pos,
                    RecordErrorKind::WrongType {
                        expected: "a string",
                        found: other.type_name(),
                    },
                )
                .key("h"));
            }
        };
        if let Some(host) = host {
            let key = TagKey::new("host").map_err(|e| Fail::new(pos, e.into()).key("h"))?;
            reading.tags.insert(key, host);
        }
    }

    let fields_at = keys.fields.filter(|&pos| !is_nil(body, pos));
    match (fields_at, keys.f) {
        (Some(pos), _) => read_fields_map(body, pos, &mut reading)?,
        (None, Some(pos)) => read_fields_array(body, pos, &mut reading)?,
        (None, None) => {}
    }
    if reading.fields.is_empty() {
        let at = fields_at.or(keys.f).unwrap_or(keys.start);
        return Err(Fail::new(at, RecordErrorKind::NoFields));
    }
    Ok(reading)
}

fn is_nil(body: &[u8], pos: usize) -> bool {
    matches!(Cursor::at(body, pos).header(), Ok(Header::Nil))
}

fn read_fields_map(body: &[u8], pos: usize, reading: &mut Reading) -> Result<(), Fail> {
    let mut cur = Cursor::at(body, pos);
    let n = match cur.header()? {
        Header::Map(n) => n,
        other => {
            return Err(Fail::new(
                pos,
                RecordErrorKind::WrongType {
                    expected: "a map",
                    found: other.type_name(),
                },
            )
            .key("fields"));
        }
    };
    for _ in 0..n {
        let (key, at) = value::map_key(&mut cur)?;
        let key = FieldKey::new(key).map_err(|e| Fail::new(at, e.into()).key(key))?;
        let at = cur.pos();
        let value = value::field_value(cur.value()?)
            .map_err(|kind| Fail::new(at, kind).key(key.as_str()))?;
        if let Some(value) = value {
            reading.fields.insert(key, value);
        }
    }
    Ok(())
}

/// Arc's compact form: `"f": [v0, v1, ...]` becomes `field_0`, `field_1`, ...
fn read_fields_array(body: &[u8], pos: usize, reading: &mut Reading) -> Result<(), Fail> {
    let mut cur = Cursor::at(body, pos);
    let n = match cur.header()? {
        Header::Array(n) => n,
        other => {
            return Err(Fail::new(
                pos,
                RecordErrorKind::WrongType {
                    expected: "an array",
                    found: other.type_name(),
                },
            )
            .key("f"));
        }
    };
    for i in 0..n {
        let name = format!("field_{i}");
        let at = cur.pos();
        let value =
            value::field_value(cur.value()?).map_err(|kind| Fail::new(at, kind).key(&name))?;
        if let Some(value) = value {
            let key =
                FieldKey::new(name.as_str()).map_err(|e| Fail::new(at, e.into()).key(&name))?;
            reading.fields.insert(key, value);
        }
    }
    Ok(())
}
