//! Typed access to the columns of a [`RecordBatch`] that follows the schema
//! rules, and conversion back to [`Reading`]s.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray, UInt64Array,
};

use super::BatchError;
use super::schema::{SchemaLayout, validate_schema};
use crate::name::{FieldKey, Measurement, TIME_COLUMN, TagKey};
use crate::reading::{FieldValue, Reading};

/// A tag column: dictionary keys and values.
#[derive(Debug)]
pub(crate) struct TagView<'a> {
    pub(crate) name: &'a TagKey,
    keys: &'a Int32Array,
    values: &'a StringArray,
}

impl<'a> TagView<'a> {
    /// The dictionary key in `row`, or `None` for null (or a negative key).
    pub(crate) fn key(&self, row: usize) -> Option<usize> {
        if self.keys.is_null(row) {
            return None;
        }
        usize::try_from(self.keys.value(row)).ok()
    }

    /// Number of dictionary values.
    pub(crate) fn dictionary_len(&self) -> usize {
        self.values.len()
    }

    /// Dictionary value `k`, or `None` if null or out of range.
    pub(crate) fn dictionary_value(&self, k: usize) -> Option<&'a str> {
        (k < self.values.len() && self.values.is_valid(k)).then(|| self.values.value(k))
    }

    /// The tag value in `row`, or `None` for null.
    pub(crate) fn get(&self, row: usize) -> Result<Option<&'a str>, BatchError> {
        if self.keys.is_null(row) {
            return Ok(None);
        }
        let key = self.keys.value(row);
        match usize::try_from(key) {
            Ok(k) if k < self.values.len() => {
                Ok((!self.values.is_null(k)).then(|| self.values.value(k)))
            }
            _ => Err(BatchError::BadDictionaryKey {
                column: self.name.as_str().to_owned(),
                row,
            }),
        }
    }
}

/// A field column, by type.
#[derive(Debug)]
pub(crate) enum FieldArray<'a> {
    F64(&'a Float64Array),
    I64(&'a Int64Array),
    U64(&'a UInt64Array),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
}

impl FieldArray<'_> {
    /// The value in `row`, or `None` for null.
    pub(crate) fn get(&self, row: usize) -> Option<FieldValue> {
        match self {
            FieldArray::F64(a) => a.is_valid(row).then(|| FieldValue::F64(a.value(row))),
            FieldArray::I64(a) => a.is_valid(row).then(|| FieldValue::I64(a.value(row))),
            FieldArray::U64(a) => a.is_valid(row).then(|| FieldValue::U64(a.value(row))),
            FieldArray::Bool(a) => a.is_valid(row).then(|| FieldValue::Bool(a.value(row))),
            FieldArray::Str(a) => a
                .is_valid(row)
                .then(|| FieldValue::Str(a.value(row).to_owned())),
        }
    }
}

/// The typed columns of one batch.
#[derive(Debug)]
pub(crate) struct BatchView<'a> {
    pub(crate) rows: usize,
    pub(crate) time: &'a TimestampNanosecondArray,
    pub(crate) tags: Vec<TagView<'a>>,
    pub(crate) fields: Vec<(&'a FieldKey, FieldArray<'a>)>,
}

fn wrong_type(column: &str) -> BatchError {
    BatchError::ColumnType {
        column: column.to_owned(),
    }
}

impl<'a> BatchView<'a> {
    /// Typed views of `batch`, whose schema `layout` describes.
    pub(crate) fn new(
        batch: &'a RecordBatch,
        layout: &'a SchemaLayout,
    ) -> Result<Self, BatchError> {
        let time = batch
            .columns()
            .first()
            .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
            .ok_or_else(|| wrong_type(TIME_COLUMN))?;
        if time.null_count() > 0 {
            return Err(BatchError::NullTime);
        }
        let mut tags = Vec::with_capacity(layout.tags.len());
        for (i, name) in &layout.tags {
            let dict = batch
                .columns()
                .get(*i)
                .and_then(|c| c.as_dictionary_opt::<Int32Type>())
                .ok_or_else(|| wrong_type(name.as_str()))?;
            let values = dict
                .values()
                .as_string_opt::<i32>()
                .ok_or_else(|| wrong_type(name.as_str()))?;
            tags.push(TagView {
                name,
                keys: dict.keys(),
                values,
            });
        }
        let mut fields = Vec::with_capacity(layout.fields.len());
        for (i, name, _) in &layout.fields {
            let c = batch
                .columns()
                .get(*i)
                .ok_or_else(|| wrong_type(name.as_str()))?;
            let array = if let Some(a) = c.as_primitive_opt::<Float64Type>() {
                FieldArray::F64(a)
            } else if let Some(a) = c.as_primitive_opt::<Int64Type>() {
                FieldArray::I64(a)
            } else if let Some(a) = c.as_primitive_opt::<UInt64Type>() {
                FieldArray::U64(a)
            } else if let Some(a) = c.as_boolean_opt() {
                FieldArray::Bool(a)
            } else if let Some(a) = c.as_string_opt::<i32>() {
                FieldArray::Str(a)
            } else {
                return Err(wrong_type(name.as_str()));
            };
            fields.push((name, array));
        }
        Ok(BatchView {
            rows: batch.num_rows(),
            time,
            tags,
            fields,
        })
    }

    /// Compares row `i` of `self` with row `j` of `other` (same layout) in
    /// segment sort order: tags in column order, null first, then time.
    pub(crate) fn cmp_rows(
        &self,
        i: usize,
        other: &Self,
        j: usize,
    ) -> Result<Ordering, BatchError> {
        let same_batch = std::ptr::eq(self, other);
        for (a, b) in self.tags.iter().zip(&other.tags) {
            // Fast path: the same dictionary key (or both null) is the same value.
            if same_batch {
                let (ka, kb) = (a.keys.is_valid(i), a.keys.is_valid(j));
                if (!ka && !kb) || (ka && kb && a.keys.value(i) == a.keys.value(j)) {
                    continue;
                }
            }
            match a.get(i)?.cmp(&b.get(j)?) {
                Ordering::Equal => {}
                o => return Ok(o),
            }
        }
        Ok(self.time.value(i).cmp(&other.time.value(j)))
    }
}

/// The index (counted across all batches) of the first row that sorts before
/// its predecessor, if any.
pub(crate) fn first_unsorted_row(views: &[BatchView<'_>]) -> Result<Option<usize>, BatchError> {
    let mut offset = 0;
    let mut prev: Option<(&BatchView<'_>, usize)> = None;
    for view in views {
        for row in 0..view.rows {
            if let Some((pv, pr)) = prev
                && pv.cmp_rows(pr, view, row)? == Ordering::Greater
            {
                return Ok(Some(offset + row));
            }
            prev = Some((view, row));
        }
        offset += view.rows;
    }
    Ok(None)
}

/// Converts a [`RecordBatch`] that follows the schema rules back to readings,
/// one per row, in row order.
///
/// A row whose fields are all null is an error ([`BatchError::EmptyRow`]), not
/// skipped: a reading has at least one field, and silently dropping rows would
/// break row counts. Callers that project a subset of fields should filter
/// such rows first.
pub fn readings_from_record_batch(
    batch: &RecordBatch,
    measurement: &Measurement,
) -> Result<Vec<Reading>, BatchError> {
    let layout = validate_schema(batch.schema_ref())?;
    let view = BatchView::new(batch, &layout)?;
    readings_from_view(&view, measurement)
}

fn readings_from_view(
    view: &BatchView<'_>,
    measurement: &Measurement,
) -> Result<Vec<Reading>, BatchError> {
    let mut out = Vec::with_capacity(view.rows);
    for row in 0..view.rows {
        let mut reading = Reading::new(measurement.clone(), view.time.value(row));
        for tag in &view.tags {
            if let Some(v) = tag.get(row)? {
                reading.tags.insert(tag.name.clone(), v.to_owned());
            }
        }
        for (name, array) in &view.fields {
            if let Some(v) = array.get(row) {
                reading.fields.insert((*name).clone(), v);
            }
        }
        if reading.fields.is_empty() {
            return Err(BatchError::EmptyRow { row });
        }
        out.push(reading);
    }
    Ok(out)
}
