//! Turning one text line from a device into readings.
//!
//! Four formats: InfluxDB line protocol (the line names its measurement, tags
//! and time), a flat JSON object, CSV with named columns, and a regular
//! expression with named captures. For the last three, each named value
//! becomes a field (typed by `types`, `f64` unless stated), a tag (if listed
//! in `tag_columns`), or the timestamp (`time_column`); the measurement and
//! static tags come from the spec. Without a device timestamp the caller's
//! clock is used.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::time::{Precision, infer_float_to_nanos};
use crate::{FieldKey, FieldValue, Measurement, Reading, TagKey, Tags, lp};

/// The line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineFormat {
    LineProtocol,
    Json,
    Csv,
    Regex,
}

/// The type a named value is parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    #[default]
    F64,
    I64,
    U64,
    Bool,
    #[serde(alias = "string")]
    Str,
}

impl ValueKind {
    /// The name used in config and errors.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::F64 => "f64",
            ValueKind::I64 => "i64",
            ValueKind::U64 => "u64",
            ValueKind::Bool => "bool",
            ValueKind::Str => "str",
        }
    }
}

/// How a device timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    /// A number whose unit is inferred from its magnitude (s, ms, us or ns),
    /// or an RFC 3339 string.
    #[default]
    Auto,
    S,
    Ms,
    Us,
    Ns,
    Rfc3339,
}

/// How a port's lines are decoded (the `[serial.ports.lines]` block).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineSpec {
    pub format: LineFormat,
    /// Required for json, csv and regex; line protocol names its own.
    #[serde(default)]
    pub measurement: Option<Measurement>,
    /// Static tags added to every reading (the line's own tags win).
    #[serde(default)]
    pub tags: Tags,
    /// csv: the column names, in order. `_` skips a column.
    #[serde(default)]
    pub columns: Vec<String>,
    /// csv: the separator.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// regex: a pattern with named captures, e.g. `^T=(?P<temp>[-0-9.]+)$`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Named values that become tags instead of fields.
    #[serde(default)]
    pub tag_columns: Vec<String>,
    /// Types of named values; unlisted ones are f64 (JSON strings and
    /// booleans keep their type).
    #[serde(default)]
    pub types: BTreeMap<String, ValueKind>,
    /// The named value holding the device's timestamp; without it the agent's
    /// clock stamps each line when it arrives.
    #[serde(default)]
    pub time_column: Option<String>,
    #[serde(default)]
    pub time_format: TimeFormat,
    /// line-protocol: the unit of the line's timestamp.
    #[serde(default)]
    pub precision: Precision,
}

fn default_delimiter() -> char {
    ','
}

/// Why a line yielded nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line is not valid UTF-8")]
    Encoding,
    #[error("{0}")]
    Decode(String),
}

/// Where a named value goes.
#[derive(Debug, Clone)]
enum Target {
    Field(FieldKey, Option<ValueKind>),
    Tag(TagKey),
    Time,
    Skip,
}

#[derive(Debug, Clone)]
enum Parser {
    LineProtocol,
    Json,
    Csv(Vec<Target>),
    Regex(regex_lite::Regex, Vec<(String, Target)>),
}

/// A compiled [`LineSpec`].
#[derive(Debug, Clone)]
pub struct LineDecoder {
    parser: Parser,
    measurement: Option<Measurement>,
    tags: Tags,
    tag_columns: BTreeSet<String>,
    types: BTreeMap<String, ValueKind>,
    time_column: Option<String>,
    time_format: TimeFormat,
    precision: Precision,
    delimiter: char,
}

impl LineDecoder {
    /// Checks and compiles a spec; every problem is reported, as
    /// `key: message`.
    pub fn new(spec: &LineSpec) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let named = spec.format != LineFormat::LineProtocol;
        if named && spec.measurement.is_none() {
            errors.push(format!(
                "measurement: required for format {:?}",
                spec.format
            ));
        }
        let target = |name: &str, errors: &mut Vec<String>| -> Target {
            if name == "_" || name.is_empty() {
                Target::Skip
            } else if spec.time_column.as_deref() == Some(name) {
                Target::Time
            } else if spec.tag_columns.iter().any(|t| t == name) {
                match TagKey::new(name) {
                    Ok(k) => Target::Tag(k),
                    Err(e) => {
                        errors.push(format!("tag_columns: {name:?}: {e}"));
                        Target::Skip
                    }
                }
            } else {
                match FieldKey::new(name) {
                    Ok(k) => Target::Field(k, spec.types.get(name).copied()),
                    Err(e) => {
                        errors.push(format!("{name:?} is not a valid field name: {e}"));
                        Target::Skip
                    }
                }
            }
        };
        let parser = match spec.format {
            LineFormat::LineProtocol => Parser::LineProtocol,
            LineFormat::Json => Parser::Json,
            LineFormat::Csv => {
                if spec.columns.is_empty() {
                    errors.push("columns: required for format csv".into());
                }
                if spec.delimiter == '"' || spec.delimiter == '\n' {
                    errors.push(format!("delimiter: {:?} cannot separate", spec.delimiter));
                }
                let targets = spec
                    .columns
                    .iter()
                    .map(|c| target(c, &mut errors))
                    .collect();
                Parser::Csv(targets)
            }
            LineFormat::Regex => match spec.pattern.as_deref() {
                None => {
                    errors.push("pattern: required for format regex".into());
                    Parser::Json
                }
                Some(p) => match regex_lite::Regex::new(p) {
                    Ok(re) => {
                        let names: Vec<(String, Target)> = re
                            .capture_names()
                            .flatten()
                            .map(|n| (n.to_owned(), target(n, &mut errors)))
                            .collect();
                        if names.is_empty() {
                            errors.push("pattern: has no named captures".into());
                        }
                        Parser::Regex(re, names)
                    }
                    Err(e) => {
                        errors.push(format!("pattern: {e}"));
                        Parser::Json
                    }
                },
            },
        };
        let declared: BTreeSet<&str> = match &parser {
            Parser::Csv(_) => spec.columns.iter().map(String::as_str).collect(),
            Parser::Regex(_, names) => names.iter().map(|(n, _)| n.as_str()).collect(),
            _ => BTreeSet::new(),
        };
        if matches!(spec.format, LineFormat::Csv | LineFormat::Regex) {
            let mut check = |what: &str, name: &str| {
                if !declared.contains(name) {
                    errors.push(format!("{what}: {name:?} is not a column or capture"));
                }
            };
            for t in &spec.tag_columns {
                check("tag_columns", t);
            }
            for t in spec.types.keys() {
                check("types", t);
            }
            if let Some(t) = &spec.time_column {
                check("time_column", t);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(LineDecoder {
            parser,
            measurement: spec.measurement.clone(),
            tags: spec.tags.clone(),
            tag_columns: spec.tag_columns.iter().cloned().collect(),
            types: spec.types.clone(),
            time_column: spec.time_column.clone(),
            time_format: spec.time_format,
            precision: spec.precision,
            delimiter: spec.delimiter,
        })
    }
}

impl LineDecoder {
    /// Decodes one line (without its terminator). `now_ns` stamps readings
    /// that carry no device time.
    pub fn decode(&self, line: &[u8], now_ns: i64) -> Result<Vec<Reading>, LineError> {
        let text = std::str::from_utf8(line).map_err(|_| LineError::Encoding)?;
        let text = text.trim();
        let mut readings = match &self.parser {
            Parser::LineProtocol => {
                let out = lp::parse(text.as_bytes(), self.precision, now_ns);
                if let Some(e) = out.errors.first() {
                    return Err(LineError::Decode(e.to_string()));
                }
                out.readings
            }
            Parser::Json => vec![self.json(text, now_ns)?],
            Parser::Csv(targets) => {
                let values = split_csv(text, self.delimiter)?;
                if values.len() != targets.len() {
                    return Err(LineError::Decode(format!(
                        "{} values, expected {} columns",
                        values.len(),
                        targets.len()
                    )));
                }
                let pairs = targets.iter().zip(values.iter().map(String::as_str));
                vec![self.assemble(pairs, now_ns)?]
            }
            Parser::Regex(re, names) => {
                let caps = re.captures(text).ok_or_else(|| {
                    LineError::Decode(format!("does not match the pattern: {}", quote(text)))
                })?;
                let pairs = names
                    .iter()
                    .filter_map(|(n, t)| caps.name(n).map(|m| (t, m.as_str())));
                vec![self.assemble(pairs, now_ns)?]
            }
        };
        for r in &mut readings {
            for (k, v) in &self.tags {
                r.tags.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Ok(readings)
    }

    fn measurement(&self) -> Result<Measurement, LineError> {
        self.measurement
            .clone()
            .ok_or_else(|| LineError::Decode("no measurement configured".into()))
    }

    /// csv and regex: text values to a reading.
    fn assemble<'a>(
        &self,
        pairs: impl Iterator<Item = (&'a Target, &'a str)>,
        now_ns: i64,
    ) -> Result<Reading, LineError> {
        let mut reading = Reading::new(self.measurement()?, now_ns);
        let mut timed = false;
        for (target, raw) in pairs {
            let raw = raw.trim();
            match target {
                Target::Skip => {}
                _ if raw.is_empty() => {}
                Target::Tag(k) => {
                    reading.tags.insert(k.clone(), raw.to_owned());
                }
                Target::Time => {
                    reading.time_ns = parse_time_text(raw, self.time_format)?;
                    timed = true;
                }
                Target::Field(k, kind) => {
                    let value = parse_text(raw, kind.unwrap_or_default())
                        .map_err(|e| LineError::Decode(format!("{k}: {e}")))?;
                    reading.fields.insert(k.clone(), value);
                }
            }
        }
        self.finish(reading, timed)
    }

    fn finish(&self, reading: Reading, timed: bool) -> Result<Reading, LineError> {
        if let (Some(col), false) = (&self.time_column, timed) {
            return Err(LineError::Decode(format!(
                "no value for time column {col:?}"
            )));
        }
        if reading.fields.is_empty() {
            return Err(LineError::Decode("the line has no field values".into()));
        }
        Ok(reading)
    }

    fn json(&self, text: &str, now_ns: i64) -> Result<Reading, LineError> {
        let doc: serde_json::Value =
            serde_json::from_str(text).map_err(|e| LineError::Decode(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(map) = doc else {
            return Err(LineError::Decode("expected a JSON object".into()));
        };
        let mut reading = Reading::new(self.measurement()?, now_ns);
        let mut timed = false;
        for (key, value) in map {
            if self.time_column.as_deref() == Some(key.as_str()) {
                reading.time_ns = match &value {
                    serde_json::Value::String(s) => parse_time_text(s, self.time_format)?,
                    serde_json::Value::Number(n) => {
                        parse_time_text(&n.to_string(), self.time_format)?
                    }
                    _ => return Err(LineError::Decode(format!("{key}: not a timestamp"))),
                };
                timed = true;
                continue;
            }
            if self.tag_columns.contains(&key) {
                let tag = TagKey::new(key.as_str())
                    .map_err(|e| LineError::Decode(format!("{key:?}: {e}")))?;
                let text = match value {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => continue,
                    other => other.to_string(),
                };
                reading.tags.insert(tag, text);
                continue;
            }
            let field = FieldKey::new(key.as_str())
                .map_err(|e| LineError::Decode(format!("{key:?}: {e}")))?;
            let kind = self.types.get(&key).copied();
            let parsed = match (value, kind) {
                (serde_json::Value::Null, _) => continue,
                (serde_json::Value::Bool(b), None | Some(ValueKind::Bool)) => {
                    Ok(FieldValue::Bool(b))
                }
                (serde_json::Value::String(s), None | Some(ValueKind::Str)) => {
                    Ok(FieldValue::Str(s))
                }
                (serde_json::Value::String(s), Some(k)) => parse_text(&s, k),
                (serde_json::Value::Number(n), k) => {
                    parse_text(&n.to_string(), k.unwrap_or_default())
                }
                (serde_json::Value::Bool(b), Some(k)) => parse_text(&b.to_string(), k),
                (serde_json::Value::Array(_) | serde_json::Value::Object(_), _) => {
                    Err("nested values are not supported".to_owned())
                }
            }
            .map_err(|e| LineError::Decode(format!("{key}: {e}")))?;
            reading.fields.insert(field, parsed);
        }
        self.finish(reading, timed)
    }
}

/// Parses a text value as `kind` (also used by the hub's CSV import).
pub fn parse_text(raw: &str, kind: ValueKind) -> Result<FieldValue, String> {
    let bad = || format!("{} is not a valid {}", quote(raw), kind.name());
    match kind {
        ValueKind::F64 => match raw.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(FieldValue::F64(v)),
            _ => Err(bad()),
        },
        ValueKind::I64 => raw.parse().map(FieldValue::I64).map_err(|_| bad()),
        ValueKind::U64 => raw.parse().map(FieldValue::U64).map_err(|_| bad()),
        ValueKind::Bool => match raw {
            "1" | "true" | "True" | "TRUE" | "t" | "T" | "on" | "ON" => Ok(FieldValue::Bool(true)),
            "0" | "false" | "False" | "FALSE" | "f" | "F" | "off" | "OFF" => {
                Ok(FieldValue::Bool(false))
            }
            _ => Err(bad()),
        },
        ValueKind::Str => Ok(FieldValue::Str(raw.to_owned())),
    }
}

/// Parses a timestamp to nanoseconds since the epoch (a device's, or a
/// CSV file's in the hub's import).
pub fn parse_time_text(raw: &str, format: TimeFormat) -> Result<i64, LineError> {
    let raw = raw.trim();
    let unit = match format {
        TimeFormat::Auto | TimeFormat::Rfc3339 => None,
        TimeFormat::S => Some(Precision::S),
        TimeFormat::Ms => Some(Precision::Ms),
        TimeFormat::Us => Some(Precision::Us),
        TimeFormat::Ns => Some(Precision::Ns),
    };
    let numeric = format != TimeFormat::Rfc3339;
    let parsed = if numeric {
        if let Ok(i) = raw.parse::<i64>() {
            match unit {
                Some(u) => u.to_nanos(i),
                None => Precision::infer_to_nanos(i),
            }
        } else if let Ok(f) = raw.parse::<f64>() {
            match unit {
                Some(u) => {
                    let ns = f * u.nanos_per_unit() as f64;
                    (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64)
                }
                None => infer_float_to_nanos(f),
            }
        } else if format == TimeFormat::Auto {
            rfc3339(raw)
        } else {
            None
        }
    } else {
        rfc3339(raw)
    };
    parsed.ok_or_else(|| {
        LineError::Decode(format!(
            "time {} is not a valid {format:?} timestamp",
            quote(raw)
        ))
    })
}

/// RFC 3339, or the SQL forms databases export: `2024-01-02 03:04:05.6+00`
/// (PostgreSQL), `2024-01-02 03:04:05[.6]` and `2024-01-02` (UTC; ClickHouse,
/// DuckDB).
fn rfc3339(raw: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return t.timestamp_nanos_opt();
    }
    for with_offset in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(raw, with_offset) {
            return t.timestamp_nanos_opt();
        }
    }
    for naive in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, naive) {
            return t.and_utc().timestamp_nanos_opt();
        }
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()?
        .and_hms_opt(0, 0, 0)?
        .and_utc()
        .timestamp_nanos_opt()
}

/// Splits one CSV record; `"` quotes a value (`""` inside is one quote).
fn split_csv(text: &str, delimiter: char) -> Result<Vec<String>, LineError> {
    let mut values = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if current.trim().is_empty() => {
                current.clear();
                quoted = true;
            }
            c if c == delimiter && !quoted => values.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return Err(LineError::Decode("unterminated quote".into()));
    }
    values.push(current);
    Ok(values)
}

/// A short, escaped excerpt of device text for error messages.
fn quote(text: &str) -> String {
    let shown: String = text.chars().take(48).collect();
    if text.chars().nth(48).is_some() {
        format!("{shown:?}...")
    } else {
        format!("{shown:?}")
    }
}
