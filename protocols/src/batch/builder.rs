//! [`ReadingBatch`]: readings of one measurement, gathered into columns.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow_schema::{Schema, SchemaRef};
use hashbrown::HashTable;

use super::BatchError;
use super::schema::{TIME_ZONE, canonical_schema};
use crate::name::{FieldKey, Measurement, TagKey};
use crate::reading::{FieldType, FieldValue, Reading};

/// Strings in one buffer: the distinct values of a tag column, or a string
/// field column's values. One allocation per column, not one per value: a
/// segment cut of 10,000 readings with a string field and a device tag of
/// its own per reading made 20,000 small allocations here, which stayed
/// spread over the allocator's pages after the cut (heaptrack: the largest
/// part of a cut's peak).
#[derive(Debug, Default)]
struct Strings {
    data: String,
    /// Where each string ends in `data`.
    ends: Vec<usize>,
}

impl Strings {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn push(&mut self, value: &str) {
        self.data.push_str(value);
        self.ends.push(self.data.len());
    }

    /// The `i`th string ("" past the end).
    fn get(&self, i: usize) -> &str {
        let end = self.ends.get(i).copied().unwrap_or(0);
        let start = i
            .checked_sub(1)
            .and_then(|j| self.ends.get(j))
            .copied()
            .unwrap_or(0);
        self.data.get(start..end).unwrap_or("")
    }
}

/// A tag column: dictionary indexes per row, and the distinct values.
#[derive(Debug, Default)]
struct TagColumn {
    rows: Vec<Option<u32>>,
    values: Strings,
    /// Indexes into `values`, hashed by the value they point to.
    lookup: HashTable<u32>,
    hasher: RandomState,
}

impl TagColumn {
    fn push(&mut self, value: Option<&str>) -> usize {
        let Some(value) = value else {
            self.rows.push(None);
            return 0;
        };
        let hash = self.hasher.hash_one(value);
        let values = &self.values;
        if let Some(&i) = self.lookup.find(hash, |&i| values.get(i as usize) == value) {
            self.rows.push(Some(i));
            return 0;
        }
        // More than u32::MAX distinct values cannot fit in memory anyway;
        // saturating keeps this panic-free.
        let i = u32::try_from(self.values.len()).unwrap_or(u32::MAX);
        self.values.push(value);
        let (values, hasher) = (&self.values, &self.hasher);
        self.lookup
            .insert_unique(hash, i, |&j| hasher.hash_one(values.get(j as usize)));
        self.rows.push(Some(i));
        value.len()
    }

    /// Each row's sort rank: 0 for null, else 1 + the value's rank among the
    /// distinct values (byte order). Also returns the values sorted.
    fn ranks(&self) -> (Vec<u32>, Vec<&str>) {
        let mut order: Vec<u32> = (0..self.values.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            self.values.get(a as usize).cmp(self.values.get(b as usize))
        });
        let mut rank_of = vec![0u32; self.values.len()];
        for (rank, &v) in order.iter().enumerate() {
            rank_of[v as usize] = rank as u32 + 1;
        }
        let rows = self
            .rows
            .iter()
            .map(|r| r.map_or(0, |i| rank_of[i as usize]))
            .collect();
        let sorted = order.iter().map(|&i| self.values.get(i as usize)).collect();
        (rows, sorted)
    }
}

/// A field column of one type.
#[derive(Debug)]
enum FieldColumn {
    F64(Vec<Option<f64>>),
    I64(Vec<Option<i64>>),
    U64(Vec<Option<u64>>),
    Bool(Vec<Option<bool>>),
    Str(StrColumn),
}

/// A string field column: the values in one buffer, and which rows are null.
#[derive(Debug, Default)]
struct StrColumn {
    /// One entry per row; a null row's is "".
    values: Strings,
    valid: Vec<bool>,
}

impl StrColumn {
    fn nulls(n: usize, expect: &mut Expect) -> Self {
        let rows = expect.rows.max(n);
        let mut ends = Vec::with_capacity(rows);
        ends.resize(n, 0);
        let mut valid = Vec::with_capacity(rows);
        valid.resize(n, false);
        StrColumn {
            values: Strings {
                // The first string column takes the whole estimate: it is
                // all of the bodies' bytes, so it bounds every string
                // column together.
                data: String::with_capacity(std::mem::take(&mut expect.string_bytes)),
                ends,
            },
            valid,
        }
    }

    fn push(&mut self, value: Option<&str>) {
        self.values.push(value.unwrap_or(""));
        self.valid.push(value.is_some());
    }

    /// The rows in `perm` order, the array sized exactly up front.
    fn to_array(&self, perm: &[usize]) -> StringArray {
        let mut array = StringBuilder::with_capacity(perm.len(), self.values.data.len());
        for &i in perm {
            if self.valid.get(i).copied().unwrap_or(false) {
                array.append_value(self.values.get(i));
            } else {
                array.append_null();
            }
        }
        array.finish()
    }
}

/// `n` nulls, with room for `rows` values in all.
fn nulls<T: Clone>(n: usize, rows: usize) -> Vec<Option<T>> {
    let mut v = Vec::with_capacity(rows.max(n));
    v.resize(n, None);
    v
}

impl FieldColumn {
    fn new(t: FieldType, n: usize, expect: &mut Expect) -> Self {
        match t {
            FieldType::F64 => FieldColumn::F64(nulls(n, expect.rows)),
            FieldType::I64 => FieldColumn::I64(nulls(n, expect.rows)),
            FieldType::U64 => FieldColumn::U64(nulls(n, expect.rows)),
            FieldType::Bool => FieldColumn::Bool(nulls(n, expect.rows)),
            FieldType::Str => FieldColumn::Str(StrColumn::nulls(n, expect)),
        }
    }

    fn field_type(&self) -> FieldType {
        match self {
            FieldColumn::F64(_) => FieldType::F64,
            FieldColumn::I64(_) => FieldType::I64,
            FieldColumn::U64(_) => FieldType::U64,
            FieldColumn::Bool(_) => FieldType::Bool,
            FieldColumn::Str(_) => FieldType::Str,
        }
    }

    /// Appends a value (or null), returning its approximate size in bytes.
    /// The caller has checked that the type matches.
    fn push(&mut self, value: Option<&FieldValue>) -> usize {
        match (self, value) {
            (FieldColumn::F64(c), Some(FieldValue::F64(v))) => c.push(Some(*v)),
            (FieldColumn::I64(c), Some(FieldValue::I64(v))) => c.push(Some(*v)),
            (FieldColumn::U64(c), Some(FieldValue::U64(v))) => c.push(Some(*v)),
            (FieldColumn::Bool(c), Some(FieldValue::Bool(v))) => c.push(Some(*v)),
            (FieldColumn::Str(c), Some(FieldValue::Str(v))) => {
                c.push(Some(v));
                return v.len() + 4;
            }
            (FieldColumn::F64(c), _) => c.push(None),
            (FieldColumn::I64(c), _) => c.push(None),
            (FieldColumn::U64(c), _) => c.push(None),
            (FieldColumn::Bool(c), _) => c.push(None),
            (FieldColumn::Str(c), _) => {
                c.push(None);
                return 4;
            }
        }
        8
    }

    fn to_array(&self, perm: &[usize]) -> ArrayRef {
        match self {
            FieldColumn::F64(c) => Arc::new(perm.iter().map(|&i| c[i]).collect::<Float64Array>()),
            FieldColumn::I64(c) => Arc::new(perm.iter().map(|&i| c[i]).collect::<Int64Array>()),
            FieldColumn::U64(c) => Arc::new(perm.iter().map(|&i| c[i]).collect::<UInt64Array>()),
            FieldColumn::Bool(c) => Arc::new(perm.iter().map(|&i| c[i]).collect::<BooleanArray>()),
            FieldColumn::Str(c) => Arc::new(c.to_array(perm)),
        }
    }
}

/// Readings of one measurement in columnar form, ready to become a
/// [`RecordBatch`]. See the [module docs](super) for the rules it enforces.
#[derive(Debug)]
pub struct ReadingBatch {
    measurement: Measurement,
    time: Vec<i64>,
    tags: BTreeMap<TagKey, TagColumn>,
    fields: BTreeMap<FieldKey, FieldColumn>,
    byte_size: usize,
    /// Most columns (time, tags and fields) the batch may hold.
    max_columns: usize,
    /// What the caller expects to push: new columns are sized for it.
    expect: Expect,
}

/// How much a batch expects to hold ([`ReadingBatch::expect`]).
#[derive(Debug, Default, Clone, Copy)]
struct Expect {
    rows: usize,
    /// Taken whole by the first string field column.
    string_bytes: usize,
}

impl ReadingBatch {
    /// An empty batch for `measurement`, holding at most
    /// [`DEFAULT_MAX_COLUMNS`](super::DEFAULT_MAX_COLUMNS) columns.
    pub fn new(measurement: Measurement) -> Self {
        ReadingBatch::with_max_columns(measurement, super::DEFAULT_MAX_COLUMNS)
    }

    /// An empty batch that refuses a reading which would take it past
    /// `max_columns` columns (time, tags and fields), before allocating
    /// anything for it: a reading that adds a column back-fills it for
    /// every earlier row, so the cap bounds rows × columns.
    pub fn with_max_columns(measurement: Measurement, max_columns: usize) -> Self {
        ReadingBatch {
            measurement,
            time: Vec::new(),
            tags: BTreeMap::new(),
            fields: BTreeMap::new(),
            byte_size: 0,
            max_columns,
            expect: Expect::default(),
        }
    }

    /// Sizes the batch for about `rows` readings whose string field values
    /// take at most about `string_bytes` together, so that its columns do
    /// not grow (copying what they hold into new memory each time) as the
    /// readings arrive. Columns created from now on get that room, the
    /// first string field column all of `string_bytes`. Only an estimate:
    /// a batch holds more or fewer all the same.
    pub fn expect(&mut self, rows: usize, string_bytes: usize) {
        self.time.reserve(rows.saturating_sub(self.time.len()));
        self.expect = Expect { rows, string_bytes };
    }

    /// Columns (time, tags and fields) so far.
    pub fn columns(&self) -> usize {
        1 + self.tags.len() + self.fields.len()
    }

    /// A batch holding `readings`, or the first error.
    pub fn from_readings<'a>(
        measurement: Measurement,
        readings: impl IntoIterator<Item = &'a Reading>,
    ) -> Result<Self, BatchError> {
        let mut batch = ReadingBatch::new(measurement);
        for r in readings {
            batch.push(r)?;
        }
        Ok(batch)
    }

    /// The measurement every row belongs to.
    pub fn measurement(&self) -> &Measurement {
        &self.measurement
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// Approximate in-memory size of the column data, in bytes: 8 per time,
    /// 4 per tag slot plus each distinct tag value, 8 per numeric or boolean
    /// field slot, 4 plus the length per string field slot. Null slots count.
    pub fn byte_size(&self) -> usize {
        self.byte_size
    }

    /// The type a field has in this batch, if it has appeared.
    pub fn field_type(&self, key: &FieldKey) -> Option<FieldType> {
        self.fields.get(key).map(FieldColumn::field_type)
    }

    /// Checks `reading` against the batch without changing anything.
    fn check(&self, reading: &Reading) -> Result<(), BatchError> {
        if reading.measurement != self.measurement {
            return Err(BatchError::WrongMeasurement {
                expected: self.measurement.clone(),
                found: reading.measurement.clone(),
            });
        }
        if reading.fields.is_empty() {
            return Err(BatchError::NoFields);
        }
        let mut new_columns = reading
            .tags
            .keys()
            .map(TagKey::as_str)
            .filter(|k| !self.tags.contains_key(*k))
            .chain(
                reading
                    .fields
                    .keys()
                    .map(FieldKey::as_str)
                    .filter(|k| !self.fields.contains_key(*k)),
            );
        let mut columns = self.columns();
        for column in new_columns.by_ref() {
            columns += 1;
            if columns > self.max_columns {
                return Err(BatchError::TooManyColumns {
                    measurement: self.measurement.clone(),
                    column: column.to_owned(),
                    limit: self.max_columns,
                });
            }
        }
        for key in reading.tags.keys() {
            if self.fields.contains_key(key.as_str()) || reading.fields.contains_key(key.as_str()) {
                return Err(BatchError::NameCollision {
                    name: key.as_str().to_owned(),
                });
            }
        }
        for (key, value) in &reading.fields {
            if self.tags.contains_key(key.as_str()) {
                return Err(BatchError::NameCollision {
                    name: key.as_str().to_owned(),
                });
            }
            if let Some(column) = self.fields.get(key) {
                let (existing, incoming) = (column.field_type(), value.field_type());
                if existing != incoming {
                    return Err(BatchError::TypeConflict {
                        field: key.clone(),
                        existing,
                        incoming,
                    });
                }
            }
        }
        Ok(())
    }

    /// Appends one reading as a row. On error the batch is unchanged.
    pub fn push(&mut self, reading: &Reading) -> Result<(), BatchError> {
        if self.push_same_columns(reading) {
            return Ok(());
        }
        self.check(reading)?;
        let n = self.len();
        for key in reading.tags.keys() {
            if !self.tags.contains_key(key) {
                let column = TagColumn {
                    rows: nulls(n, self.expect.rows),
                    ..TagColumn::default()
                };
                self.tags.insert(key.clone(), column);
            }
        }
        for (key, value) in &reading.fields {
            if !self.fields.contains_key(key) {
                let column = FieldColumn::new(value.field_type(), n, &mut self.expect);
                self.byte_size += n * if value.field_type() == FieldType::Str {
                    4
                } else {
                    8
                };
                self.fields.insert(key.clone(), column);
            }
        }
        let mut size = 8;
        for (key, column) in &mut self.tags {
            size += 4 + column.push(reading.tags.get(key).map(String::as_str));
        }
        for (key, column) in &mut self.fields {
            size += column.push(reading.fields.get(key));
        }
        self.time.push(reading.time_ns);
        self.byte_size += size;
        Ok(())
    }

    /// The common case, in one pass over the sorted keys: `reading` has
    /// exactly the batch's tag keys and field keys, with the batch's field
    /// types. Then nothing [`check`](Self::check) looks for can be wrong (no
    /// new column, and the batch's tags and fields never share a name), and
    /// the row is pushed without looking any key up. Otherwise the batch
    /// is unchanged and the answer is false.
    fn push_same_columns(&mut self, reading: &Reading) -> bool {
        let same = !reading.fields.is_empty()
            && reading.tags.len() == self.tags.len()
            && reading.fields.len() == self.fields.len()
            && reading.measurement == self.measurement
            && self
                .tags
                .keys()
                .zip(reading.tags.keys())
                .all(|(a, b)| a == b)
            && self
                .fields
                .iter()
                .zip(&reading.fields)
                .all(|((a, column), (b, value))| {
                    a == b && column.field_type() == value.field_type()
                });
        if !same {
            return false;
        }
        let mut size = 8;
        for (column, value) in self.tags.values_mut().zip(reading.tags.values()) {
            size += 4 + column.push(Some(value));
        }
        for (column, value) in self.fields.values_mut().zip(reading.fields.values()) {
            size += column.push(Some(value));
        }
        self.time.push(reading.time_ns);
        self.byte_size += size;
        true
    }

    /// The batch's schema: `time`, tags sorted by key, fields sorted by key.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.schema_inner())
    }

    fn schema_inner(&self) -> Schema {
        canonical_schema(
            self.tags.keys(),
            self.fields.iter().map(|(k, c)| (k, c.field_type())),
        )
    }

    /// The rows as a [`RecordBatch`] with [`schema`](Self::schema), sorted by
    /// the tag values (in tag-key order, null before any value, strings in
    /// byte order), then by time; a stable sort, so equal keys keep push order.
    /// Tag dictionaries hold the distinct values in sorted order.
    pub fn to_record_batch(&self) -> Result<RecordBatch, BatchError> {
        let tags: Vec<(Vec<u32>, Vec<&str>)> = self.tags.values().map(TagColumn::ranks).collect();
        let mut perm: Vec<usize> = (0..self.len()).collect();
        perm.sort_by(|&a, &b| {
            for (ranks, _) in &tags {
                match ranks[a].cmp(&ranks[b]) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            self.time[a].cmp(&self.time[b])
        });

        let mut columns: Vec<ArrayRef> = Vec::with_capacity(1 + tags.len() + self.fields.len());
        let time = TimestampNanosecondArray::from(
            perm.iter().map(|&i| self.time[i]).collect::<Vec<i64>>(),
        );
        columns.push(Arc::new(time.with_timezone(TIME_ZONE)));
        for (ranks, sorted) in &tags {
            let keys: Int32Array = perm
                .iter()
                .map(|&i| match ranks[i] {
                    0 => Ok(None),
                    r => i32::try_from(r - 1).map(Some),
                })
                .collect::<Result<_, _>>()
                .map_err(|_| BatchError::TooManyTagValues)?;
            let values: ArrayRef = Arc::new(StringArray::from_iter_values(sorted.iter()));
            columns.push(Arc::new(DictionaryArray::<Int32Type>::try_new(
                keys, values,
            )?));
        }
        for column in self.fields.values() {
            columns.push(column.to_array(&perm));
        }
        Ok(RecordBatch::try_new(
            Arc::new(self.schema_inner()),
            columns,
        )?)
    }
}
