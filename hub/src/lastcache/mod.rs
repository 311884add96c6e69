//! The last-value cache: "the latest reading of every device", answered
//! from memory, as in InfluxDB 3.
//!
//! A cache belongs to one table: per distinct value of its key columns
//! (default: the table's tags) it keeps the newest `count` rows (1-10,
//! default 1) of its value columns (default: every other column, new ones
//! included as they appear), dropping rows older than `ttl`. It is read in
//! SQL as a table function:
//!
//! ```sql
//! SELECT * FROM last_cache('plant.boiler') WHERE site = 'north'
//! SELECT * FROM last_cache('boiler', 'by_site')   -- default database, named cache
//! ```
//!
//! # Kept current
//!
//! Every commit of a write to the table feeds its rows to the table's
//! caches before the write is answered ([`Registry::observe`]), so a
//! client that got its acknowledgement reads its row back from the cache.
//! Rows with the same key and time replace each other. A cache is filled
//! from the table when it is created and at every start of the hub (one
//! query over the last `ttl`: [`crate::lastcache::fill`]), so a restart
//! loses nothing. Rows that reach the table otherwise (a continuous
//! query's replacement, compaction) are not observed; they are the same
//! rows or older.
//!
//! # Memory
//!
//! A cache holds at most `last_cache.max_keys` keys (a new key beyond is
//! not cached, counted in `ferry_hub_last_cache_refused_total` and logged
//! once), each at most `count` rows; at most `last_cache.max_caches`
//! caches exist. The bound is `max_caches × max_keys × count` rows of the
//! cached columns; `ferry_hub_last_cache_keys{cache}` shows the keys held.

pub mod config;
pub mod function;
pub mod routes;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampNanosecondType,
};
use deltalake::datafusion::common::ScalarValue;
use ferry_protocols::name::TIME_COLUMN;

pub use config::LastCacheConfig;

use crate::meta::last_caches::LastCacheDef;
use crate::meta::now_ms;
use crate::table::{PARTITION_COLUMN, TableName};

/// Counter: rows of new keys a full cache did not take, label `cache`.
pub const REFUSED: &str = "ferry_hub_last_cache_refused_total";
/// Gauge: keys a cache holds, label `cache`.
pub const KEYS: &str = "ferry_hub_last_cache_keys";

/// One cached row: its time and its values, aligned with the cache's
/// value columns at the time it came (missing ones are null).
#[derive(Debug, Clone)]
struct Row {
    time_ns: i64,
    values: Vec<ScalarValue>,
}

/// One cache: its definition and its rows by key.
#[derive(Debug)]
pub struct Cache {
    pub def: LastCacheDef,
    state: Mutex<State>,
    max_keys: usize,
    warned: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// The value columns seen so far, in order, with their types.
    columns: Vec<(String, DataType)>,
    /// Rows by key (the key columns' values, `None` for null), newest first.
    rows: HashMap<Vec<Option<String>>, VecDeque<Row>>,
}

/// Every cache, by table. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    caches: Arc<RwLock<HashMap<TableName, Vec<Arc<Cache>>>>>,
}

fn key_of(columns: &[Option<ArrayRef>], row: usize) -> Vec<Option<String>> {
    columns
        .iter()
        .map(|c| {
            c.as_ref().and_then(|c| {
                c.is_valid(row)
                    .then(|| c.as_string::<i32>().value(row).to_owned())
            })
        })
        .collect()
}

impl Cache {
    pub fn new(def: LastCacheDef, max_keys: usize) -> Self {
        let columns = def
            .value_columns
            .iter()
            .flatten()
            .map(|c| (c.clone(), DataType::Null))
            .collect();
        Cache {
            def,
            state: Mutex::new(State {
                columns,
                rows: HashMap::new(),
            }),
            max_keys,
            warned: AtomicBool::new(false),
        }
    }

    fn ttl_floor_ns(&self) -> i64 {
        now_ms()
            .saturating_sub(self.def.ttl_ms)
            .saturating_mul(1_000_000)
    }

    /// Whether a column of the table is one of this cache's values.
    fn is_value(&self, name: &str) -> bool {
        if name == TIME_COLUMN
            || name == PARTITION_COLUMN
            || name.starts_with("__ferry_")
            || self.def.key_columns.iter().any(|k| k == name)
        {
            return false;
        }
        match &self.def.value_columns {
            Some(chosen) => chosen.iter().any(|c| c == name),
            None => true,
        }
    }

    /// Takes the rows of `batch` (any form holding `time`: a write or a
    /// query's answer).
    pub fn observe(&self, batch: &RecordBatch) {
        let Some(time) = batch.column_by_name(TIME_COLUMN) else {
            return;
        };
        let Ok(time) = cast(time, &DataType::Timestamp(TimeUnit::Nanosecond, None)) else {
            return;
        };
        let times = time.as_primitive::<TimestampNanosecondType>();
        let keys: Vec<Option<ArrayRef>> = self
            .def
            .key_columns
            .iter()
            .map(|k| {
                batch
                    .column_by_name(k)
                    .and_then(|c| cast(c, &DataType::Utf8).ok())
            })
            .collect();
        let schema = batch.schema();
        let floor = self.ttl_floor_ns();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        // The batch's value columns, as indices into the cache's columns.
        let mut slots: Vec<(usize, &ArrayRef)> = Vec::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            if !self.is_value(field.name()) {
                continue;
            }
            let data_type = match field.data_type() {
                DataType::Dictionary(_, v) => v.as_ref().clone(),
                other => other.clone(),
            };
            let slot = match state.columns.iter().position(|(n, _)| n == field.name()) {
                Some(i) => {
                    if state.columns[i].1 == DataType::Null {
                        state.columns[i].1 = data_type;
                    }
                    i
                }
                None => {
                    state.columns.push((field.name().clone(), data_type));
                    state.columns.len() - 1
                }
            };
            slots.push((slot, column));
        }
        let width = state.columns.len();
        let types: Vec<DataType> = state.columns.iter().map(|(_, t)| t.clone()).collect();
        for row in 0..batch.num_rows() {
            if times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            if t < floor {
                continue;
            }
            let key = key_of(&keys, row);
            let held = state.rows.len();
            let count = usize::from(self.def.count);
            let rows = match state.rows.get_mut(&key) {
                Some(rows) => rows,
                None if held >= self.max_keys => {
                    metrics::counter!(REFUSED, "cache" => self.def.name.clone()).increment(1);
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            cache = %self.def.name,
                            max_keys = self.max_keys,
                            "last-value cache is full (last_cache.max_keys); new keys are not cached"
                        );
                    }
                    continue;
                }
                None => state.rows.entry(key).or_default(),
            };
            if rows.len() >= count && rows.back().is_some_and(|oldest| oldest.time_ns > t) {
                continue;
            }
            let mut values = vec![ScalarValue::Null; width];
            for (slot, column) in &slots {
                let v = ScalarValue::try_from_array(column, row).unwrap_or(ScalarValue::Null);
                values[*slot] = match v {
                    ScalarValue::Dictionary(_, inner) => *inner,
                    other => other,
                }
                .cast_to(&types[*slot])
                .unwrap_or(ScalarValue::Null);
            }
            let at = rows.partition_point(|r| r.time_ns > t);
            if rows.get(at).is_some_and(|r| r.time_ns == t) {
                rows[at] = Row { time_ns: t, values };
            } else {
                rows.insert(at, Row { time_ns: t, values });
                rows.truncate(count);
            }
        }
        metrics::gauge!(KEYS, "cache" => self.def.name.clone()).set(state.rows.len() as f64);
    }

    /// The cache's rows now: key columns, `time`, value columns; rows
    /// past the ttl are dropped first.
    pub fn snapshot(&self) -> Result<RecordBatch, deltalake::arrow::error::ArrowError> {
        let floor = self.ttl_floor_ns();
        let mut state = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        state.rows.retain(|_, rows| {
            rows.retain(|r| r.time_ns >= floor);
            !rows.is_empty()
        });
        let mut entries: Vec<(&Vec<Option<String>>, &Row)> = state
            .rows
            .iter()
            .flat_map(|(k, rows)| rows.iter().map(move |r| (k, r)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0).then(b.1.time_ns.cmp(&a.1.time_ns)));
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (i, k) in self.def.key_columns.iter().enumerate() {
            fields.push(Field::new(k, DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(
                entries
                    .iter()
                    .map(|(key, _)| key[i].clone())
                    .collect::<Vec<_>>(),
            )));
        }
        fields.push(Field::new(
            TIME_COLUMN,
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ));
        columns.push(Arc::new(
            deltalake::arrow::array::TimestampNanosecondArray::from(
                entries.iter().map(|(_, r)| r.time_ns).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ));
        for (i, (name, data_type)) in state.columns.iter().enumerate() {
            let data_type = if *data_type == DataType::Null {
                DataType::Utf8
            } else {
                data_type.clone()
            };
            let null = ScalarValue::try_from(&data_type)?;
            let values = entries
                .iter()
                .map(|(_, r)| r.values.get(i).cloned().unwrap_or_else(|| null.clone()))
                .map(|v| if v.is_null() { null.clone() } else { v });
            let array = if entries.is_empty() {
                deltalake::arrow::array::new_empty_array(&data_type)
            } else {
                ScalarValue::iter_to_array(values)
                    .map_err(|e| deltalake::arrow::error::ArrowError::ComputeError(e.to_string()))?
            };
            fields.push(Field::new(name, data_type, true));
            columns.push(array);
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        RecordBatch::try_new(schema, columns)
    }

    /// Keys held.
    pub fn keys(&self) -> usize {
        self.state.lock().map_or(0, |s| s.rows.len())
    }
}

impl Registry {
    /// Adds a cache (already filled, or filled after).
    pub fn add(&self, table: TableName, cache: Arc<Cache>) {
        if let Ok(mut caches) = self.caches.write() {
            caches.entry(table).or_default().push(cache);
        }
    }

    /// Removes the cache `id`.
    pub fn remove(&self, id: i64) {
        if let Ok(mut caches) = self.caches.write() {
            for list in caches.values_mut() {
                list.retain(|c| c.def.id != id);
            }
            caches.retain(|_, list| !list.is_empty());
        }
    }

    /// The caches of `table`.
    pub fn of(&self, table: &TableName) -> Vec<Arc<Cache>> {
        self.caches
            .read()
            .ok()
            .and_then(|c| c.get(table).cloned())
            .unwrap_or_default()
    }

    /// Every cache.
    pub fn all(&self) -> Vec<Arc<Cache>> {
        self.caches
            .read()
            .map(|c| c.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Feeds committed rows of `table` to its caches (a cheap lookup for
    /// a table without one).
    pub fn observe(&self, table: &TableName, batches: &[RecordBatch]) {
        let caches = match self.caches.read() {
            Ok(c) => match c.get(table) {
                Some(list) => list.clone(),
                None => return,
            },
            Err(_) => return,
        };
        for cache in caches {
            for batch in batches {
                cache.observe(batch);
            }
        }
    }
}

/// `name` as a quoted SQL identifier (case and punctuation kept).
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL that fills `def`'s cache from its table: the newest `count`
/// rows per key within the ttl.
pub fn fill_sql(def: &LastCacheDef) -> String {
    let keys: Vec<String> = def.key_columns.iter().map(|k| quoted(k)).collect();
    let partition = if keys.is_empty() {
        String::new()
    } else {
        format!("PARTITION BY {} ", keys.join(", "))
    };
    let since = crate::table::rfc3339_ns(
        now_ms()
            .saturating_sub(def.ttl_ms)
            .saturating_mul(1_000_000),
    );
    format!(
        "SELECT * FROM (SELECT *, row_number() OVER ({partition}ORDER BY time DESC) AS \"__ferry_rank\" \
         FROM {}.{} WHERE time >= '{since}') WHERE \"__ferry_rank\" <= {}",
        quoted(&def.database),
        quoted(&def.measurement),
        def.count
    )
}
