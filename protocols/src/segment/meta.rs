//! The `ferry.*` key-value metadata: encoding and strict parsing.

use std::collections::HashSet;
use std::str::FromStr;

use parquet::file::metadata::KeyValue;

use super::{FORMAT_VERSION, SegmentError, SegmentHeader, SegmentMeta, SegmentSeq};
use crate::name::{NameError, TagKey};

/// The metadata keys, as stored in the Parquet footer.
pub mod keys {
    pub const FORMAT_VERSION: &str = "ferry.format_version";
    pub const AGENT_ID: &str = "ferry.agent_id";
    pub const SEQUENCE: &str = "ferry.sequence";
    pub const FIRST_READING_ID: &str = "ferry.first_reading_id";
    pub const LAST_READING_ID: &str = "ferry.last_reading_id";
    pub const DATABASE: &str = "ferry.database";
    pub const MEASUREMENT: &str = "ferry.measurement";
    pub const MIN_TIME_NS: &str = "ferry.min_time_ns";
    pub const MAX_TIME_NS: &str = "ferry.max_time_ns";
    pub const ROW_COUNT: &str = "ferry.row_count";
    pub const CHECKSUM: &str = "ferry.checksum";
    pub const TAG_COLUMNS: &str = "ferry.tag_columns";

    /// Every key, in the order the writer emits them.
    pub const ALL: [&str; 12] = [
        FORMAT_VERSION,
        AGENT_ID,
        SEQUENCE,
        FIRST_READING_ID,
        LAST_READING_ID,
        DATABASE,
        MEASUREMENT,
        MIN_TIME_NS,
        MAX_TIME_NS,
        ROW_COUNT,
        CHECKSUM,
        TAG_COLUMNS,
    ];
}

/// The `ferry.tag_columns` value: a compact JSON array of the names.
pub(crate) fn encode_tag_columns<'a>(tags: impl IntoIterator<Item = &'a TagKey>) -> String {
    serde_json::Value::from_iter(tags.into_iter().map(|t| t.as_str())).to_string()
}

/// The footer entries for `meta` and the tag columns `tags` (in schema
/// order), in [`keys::ALL`] order.
pub(crate) fn to_key_values<'a>(
    meta: &SegmentMeta,
    tags: impl IntoIterator<Item = &'a TagKey>,
) -> Vec<KeyValue> {
    let h = &meta.header;
    let values = [
        meta.format_version.to_string(),
        h.agent_id.to_string(),
        h.sequence.to_string(),
        h.first_reading_id.to_string(),
        h.last_reading_id.to_string(),
        h.database.to_string(),
        h.measurement.to_string(),
        meta.min_time_ns.to_string(),
        meta.max_time_ns.to_string(),
        meta.row_count.to_string(),
        format!("{:08x}", meta.checksum),
        encode_tag_columns(tags),
    ];
    keys::ALL
        .iter()
        .zip(values)
        .map(|(k, v)| KeyValue::new((*k).to_owned(), v))
        .collect()
}

struct Entries<'a>(&'a [KeyValue]);

impl<'a> Entries<'a> {
    fn get(&self, key: &'static str) -> Result<&'a str, SegmentError> {
        let mut found = self.0.iter().filter(|kv| kv.key == key);
        let first = found.next().ok_or(SegmentError::MissingKey { key })?;
        if found.next().is_some() {
            return Err(SegmentError::DuplicateKey { key });
        }
        first
            .value
            .as_deref()
            .ok_or(SegmentError::MissingKey { key })
    }

    /// A canonical decimal integer: parses, and prints back the same.
    fn int<T: FromStr + ToString>(&self, key: &'static str) -> Result<T, SegmentError> {
        let value = self.get(key)?;
        match value.parse::<T>() {
            Ok(n) if n.to_string() == value => Ok(n),
            _ => Err(SegmentError::BadValue {
                key,
                value: value.to_owned(),
                expected: "a canonical decimal integer in range",
            }),
        }
    }

    fn name<T: FromStr<Err = NameError>>(&self, key: &'static str) -> Result<T, SegmentError> {
        self.get(key)?
            .parse()
            .map_err(|source| SegmentError::BadName { key, source })
    }
}

fn parse_checksum(value: &str) -> Option<u32> {
    let ok = value.len() == 8
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        u32::from_str_radix(value, 16).ok()
    } else {
        None
    }
}

/// Parses and checks the `ferry.*` entries. The version is checked first, so
/// a file from a newer writer fails with [`SegmentError::UnsupportedVersion`]
/// rather than a missing key.
pub(crate) fn from_key_values(kvs: &[KeyValue]) -> Result<SegmentMeta, SegmentError> {
    let e = Entries(kvs);
    let format_version: u32 = e.int(keys::FORMAT_VERSION)?;
    if format_version != FORMAT_VERSION {
        return Err(SegmentError::UnsupportedVersion {
            found: format_version,
            supported: FORMAT_VERSION,
        });
    }
    let header = SegmentHeader {
        agent_id: e.name(keys::AGENT_ID)?,
        sequence: SegmentSeq(e.int(keys::SEQUENCE)?),
        first_reading_id: e.int(keys::FIRST_READING_ID)?,
        last_reading_id: e.int(keys::LAST_READING_ID)?,
        database: e.name(keys::DATABASE)?,
        measurement: e.name(keys::MEASUREMENT)?,
    };
    if header.first_reading_id > header.last_reading_id {
        return Err(SegmentError::BadReadingRange {
            first: header.first_reading_id,
            last: header.last_reading_id,
        });
    }
    let min_time_ns: i64 = e.int(keys::MIN_TIME_NS)?;
    let max_time_ns: i64 = e.int(keys::MAX_TIME_NS)?;
    if min_time_ns > max_time_ns {
        return Err(SegmentError::BadValue {
            key: keys::MAX_TIME_NS,
            value: max_time_ns.to_string(),
            expected: "a time not before ferry.min_time_ns",
        });
    }
    let row_count: u64 = e.int(keys::ROW_COUNT)?;
    if row_count == 0 {
        return Err(SegmentError::Empty);
    }
    if row_count > super::MAX_ROWS {
        return Err(SegmentError::BadValue {
            key: keys::ROW_COUNT,
            value: row_count.to_string(),
            expected: "at most 1000000 rows (segment::MAX_ROWS)",
        });
    }
    let raw = e.get(keys::CHECKSUM)?;
    let checksum = parse_checksum(raw).ok_or_else(|| SegmentError::BadValue {
        key: keys::CHECKSUM,
        value: raw.to_owned(),
        expected: "8 lowercase hex digits",
    })?;
    Ok(SegmentMeta {
        header,
        format_version,
        min_time_ns,
        max_time_ns,
        row_count,
        checksum,
    })
}

/// Parses `ferry.tag_columns`: the tag column names in schema order, as a
/// compact JSON array of strings exactly as the writer emits it (no
/// whitespace, no optional escapes), each a valid [`TagKey`], none twice. Whether the columns
/// exist is checked against the Parquet schema later.
pub(crate) fn tag_columns(kvs: &[KeyValue]) -> Result<Vec<TagKey>, SegmentError> {
    let key = keys::TAG_COLUMNS;
    let value = Entries(kvs).get(key)?;
    let bad = |expected| SegmentError::BadValue {
        key,
        value: value.to_owned(),
        expected,
    };
    let names: Vec<String> =
        serde_json::from_str(value).map_err(|_| bad("a JSON array of tag column names"))?;
    let mut seen = HashSet::with_capacity(names.len());
    let mut tags = Vec::with_capacity(names.len());
    for name in names {
        if !seen.insert(name.clone()) {
            return Err(SegmentError::DuplicateTag { column: name });
        }
        tags.push(TagKey::new(name).map_err(|source| SegmentError::BadName { key, source })?);
    }
    if encode_tag_columns(&tags) != value {
        return Err(bad(
            "compact JSON with no whitespace and no optional escapes",
        ));
    }
    Ok(tags)
}
