#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampNanosecondType};
use arrow_array::{Array, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{DataType, Field, Schema};

use super::*;
use crate::{FieldKey, FieldValue, Measurement, Reading, TagKey};

fn m(s: &str) -> Measurement {
    Measurement::new(s).unwrap()
}
fn tk(s: &str) -> TagKey {
    TagKey::new(s).unwrap()
}
fn fk(s: &str) -> FieldKey {
    FieldKey::new(s).unwrap()
}
fn reading(t: i64) -> Reading {
    Reading::new(m("cpu"), t)
}

#[test]
fn schema_is_canonical_with_roles() {
    let mut b = ReadingBatch::new(m("cpu"));
    let r = reading(1)
        .with_tag(tk("z"), "1")
        .with_tag(tk("a"), "2")
        .with_field(fk("y"), FieldValue::I64(1))
        .with_field(fk("b"), FieldValue::F64(1.0))
        .with_field(fk("u"), FieldValue::U64(1))
        .with_field(fk("ok"), FieldValue::Bool(true))
        .with_field(fk("s"), FieldValue::Str("x".into()));
    b.push(&r).unwrap();
    let schema = b.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["time", "a", "z", "b", "ok", "s", "u", "y"]);
    assert_eq!(schema.field(0).data_type(), &time_data_type());
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.field(1).data_type(), &tag_data_type());
    let types: Vec<&DataType> = schema
        .fields()
        .iter()
        .skip(3)
        .map(|f| f.data_type())
        .collect();
    assert_eq!(
        types,
        [
            &DataType::Float64,
            &DataType::Boolean,
            &DataType::Utf8,
            &DataType::UInt64,
            &DataType::Int64
        ]
    );
    let roles: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| ColumnRole::of(f).unwrap())
        .collect();
    assert_eq!(roles[0], ColumnRole::Time);
    assert_eq!(roles[1], ColumnRole::Tag);
    assert_eq!(roles[7], ColumnRole::Field);
    let layout = validate_schema(&schema).unwrap();
    assert_eq!(layout.tags.len(), 2);
    assert_eq!(layout.fields.len(), 5);
    assert_eq!(b.to_record_batch().unwrap().schema(), schema);
}

#[test]
fn type_conflict_rejects_whole_reading() {
    let mut b = ReadingBatch::new(m("cpu"));
    b.push(&reading(1).with_field(fk("v"), FieldValue::I64(1)))
        .unwrap();
    let size = b.byte_size();
    let bad = reading(2)
        .with_tag(tk("new_tag"), "x")
        .with_field(fk("other"), FieldValue::F64(1.0))
        .with_field(fk("v"), FieldValue::F64(2.5));
    let err = b.push(&bad).unwrap_err();
    match &err {
        BatchError::TypeConflict {
            field,
            existing,
            incoming,
        } => {
            assert_eq!(field.as_str(), "v");
            assert_eq!(*existing, FieldType::I64);
            assert_eq!(*incoming, FieldType::F64);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "field \"v\" is i64 in this batch but the reading has f64; the first type seen wins"
    );
    // Unchanged: no new columns, no new row.
    assert_eq!(b.len(), 1);
    assert_eq!(b.byte_size(), size);
    assert_eq!(b.schema().fields().len(), 2);
    assert_eq!(b.field_type(&fk("v")), Some(FieldType::I64));
}

#[test]
fn name_collisions_and_wrong_measurement() {
    let mut b = ReadingBatch::new(m("cpu"));
    b.push(
        &reading(1)
            .with_tag(tk("host"), "a")
            .with_field(fk("v"), FieldValue::F64(1.0)),
    )
    .unwrap();
    let as_field = reading(2).with_field(fk("host"), FieldValue::F64(1.0));
    assert!(matches!(b.push(&as_field), Err(BatchError::NameCollision { name }) if name == "host"));
    let as_tag = reading(2)
        .with_tag(tk("v"), "x")
        .with_field(fk("w"), FieldValue::F64(1.0));
    assert!(matches!(b.push(&as_tag), Err(BatchError::NameCollision { name }) if name == "v"));
    let within = reading(2)
        .with_tag(tk("k"), "x")
        .with_field(fk("k"), FieldValue::F64(1.0));
    assert!(matches!(
        b.push(&within),
        Err(BatchError::NameCollision { .. })
    ));
    let other = Reading::new(m("mem"), 1).with_field(fk("v"), FieldValue::F64(1.0));
    assert!(matches!(
        b.push(&other),
        Err(BatchError::WrongMeasurement { .. })
    ));
    assert!(matches!(b.push(&reading(3)), Err(BatchError::NoFields)));
    assert_eq!(b.len(), 1);
}

#[test]
fn missing_tags_and_fields_are_null() {
    let mut b = ReadingBatch::new(m("cpu"));
    assert!(b.is_empty());
    b.push(&reading(1).with_field(fk("a"), FieldValue::F64(1.0)))
        .unwrap();
    b.push(
        &reading(2)
            .with_tag(tk("host"), "h")
            .with_field(fk("b"), FieldValue::Str("s".into())),
    )
    .unwrap();
    b.push(&reading(3).with_field(fk("a"), FieldValue::F64(3.0)))
        .unwrap();
    assert_eq!(b.len(), 3);
    let rb = b.to_record_batch().unwrap();
    // Null tags sort first: rows 1 and 3 (by time), then row 2.
    let host = rb.column(1).as_dictionary::<Int32Type>();
    assert_eq!(host.null_count(), 2);
    assert!(host.is_valid(2));
    let a = rb
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(a.iter().collect::<Vec<_>>(), [Some(1.0), Some(3.0), None]);
    let back = readings_from_record_batch(&rb, &m("cpu")).unwrap();
    assert_eq!(
        back[2],
        reading(2)
            .with_tag(tk("host"), "h")
            .with_field(fk("b"), FieldValue::Str("s".into()))
    );
    assert_eq!(
        back[0],
        reading(1).with_field(fk("a"), FieldValue::F64(1.0))
    );
}

#[test]
fn rows_sort_by_tags_then_time_stably() {
    let mut b = ReadingBatch::new(m("cpu"));
    let rows = [
        (Some("b"), Some("x"), 5, 0.0),
        (Some("a"), None, 9, 1.0),
        (None, Some("y"), 7, 2.0),
        (Some("a"), Some("x"), 1, 3.0),
        (Some("a"), None, 3, 4.0),
        (Some("b"), Some("x"), 5, 5.0), // same key as the first: stays after it
        (Some("é"), None, 0, 6.0),
    ];
    for (host, region, t, v) in rows {
        let mut r = reading(t).with_field(fk("v"), FieldValue::F64(v));
        if let Some(h) = host {
            r = r.with_tag(tk("host"), h);
        }
        if let Some(g) = region {
            r = r.with_tag(tk("region"), g);
        }
        b.push(&r).unwrap();
    }
    let rb = b.to_record_batch().unwrap();
    let v: Vec<f64> = rb
        .column(3)
        .as_primitive::<arrow_array::types::Float64Type>()
        .values()
        .to_vec();
    assert_eq!(v, [2.0, 4.0, 1.0, 3.0, 0.0, 5.0, 6.0]);
    let t = rb.column(0).as_primitive::<TimestampNanosecondType>();
    assert_eq!(t.value(0), 7);
    // Dictionaries hold sorted distinct values.
    let host = rb.column(1).as_dictionary::<Int32Type>();
    let values: Vec<_> = host.values().as_string::<i32>().iter().flatten().collect();
    assert_eq!(values, ["a", "b", "é"]);
}

#[test]
fn empty_batch_is_valid() {
    let b = ReadingBatch::new(m("cpu"));
    let rb = b.to_record_batch().unwrap();
    assert_eq!(rb.num_rows(), 0);
    assert_eq!(rb.schema().fields().len(), 1);
    assert!(
        readings_from_record_batch(&rb, &m("cpu"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn all_null_row_is_an_error() {
    let schema = Arc::new(Schema::new(vec![
        time_column(),
        field_column(&fk("v"), FieldType::F64),
    ]));
    let rb = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![1, 2]).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![Some(1.0), None])),
        ],
    )
    .unwrap();
    assert!(matches!(
        readings_from_record_batch(&rb, &m("cpu")),
        Err(BatchError::EmptyRow { row: 1 })
    ));
}

fn schema(cols: Vec<Field>) -> Schema {
    Schema::new(cols)
}

#[test]
fn validate_schema_rejections() {
    let t = time_column();
    let tag = tag_column(&tk("host"));
    let f = field_column(&fk("v"), FieldType::F64);
    assert!(validate_schema(&schema(vec![t.clone(), tag.clone(), f.clone()])).is_ok());
    // Fields in any order within the group are fine.
    let f2 = field_column(&fk("a"), FieldType::I64);
    assert!(validate_schema(&schema(vec![t.clone(), f.clone(), f2.clone()])).is_ok());

    let cases: Vec<(Vec<Field>, &str)> = vec![
        (vec![], "first column"),
        (vec![tag.clone(), t.clone()], "first column"),
        (
            vec![Field::new("time", DataType::Int64, false)],
            "Timestamp",
        ),
        (vec![t.clone().with_nullable(true)], "non-null"),
        (
            vec![Field::new(
                "time",
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
                false,
            )],
            "Timestamp",
        ),
        (
            vec![t.clone(), Field::new("x", DataType::Float64, true)],
            "no ferry.role",
        ),
        (vec![t.clone(), f.clone(), tag.clone()], "tags must precede"),
        (vec![t.clone(), f.clone(), f.clone()], "more than once"),
        (
            vec![t.clone(), tag.clone().with_data_type(DataType::Utf8)],
            "Dictionary",
        ),
        (
            vec![t.clone(), f.clone().with_data_type(DataType::Int32)],
            "Float64, Int64",
        ),
        (vec![t.clone(), f.clone().with_nullable(false)], "nullable"),
        (vec![t.clone(), f.clone().with_name("a\nb")], "forbidden"),
        (vec![t.clone(), f.clone().with_name("")], "empty"),
        (vec![t.clone(), t.clone().with_name("t2")], "only the first"),
        (
            vec![
                t.clone(),
                f.clone()
                    .with_metadata([(ROLE_KEY.to_owned(), "x".to_owned())].into()),
            ],
            "unknown ferry.role",
        ),
    ];
    for (cols, needle) in cases {
        let err = validate_schema(&schema(cols.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{cols:?}: {err:?} lacks {needle:?}");
    }
}

#[test]
fn merge_appends_fields_and_adds_tags() {
    let t = time_column();
    let existing = schema(vec![
        t.clone(),
        tag_column(&tk("z")),
        field_column(&fk("v"), FieldType::F64),
    ]);
    let incoming = schema(vec![
        t.clone(),
        tag_column(&tk("b")),
        tag_column(&tk("a")),
        tag_column(&tk("z")),
        field_column(&fk("c"), FieldType::Str),
        field_column(&fk("a2"), FieldType::I64),
    ]);
    let merged = merge_schema(&existing, &incoming).unwrap();
    let names: Vec<&str> = merged.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["time", "z", "a", "b", "v", "a2", "c"]);
    assert!(validate_schema(&merged).is_ok());
    // Idempotent and a no-op for a subset.
    assert_eq!(merge_schema(&merged, &incoming).unwrap(), merged);
    assert_eq!(merge_schema(&merged, &existing).unwrap(), merged);
    assert_eq!(
        merge_schema(&merged, &schema(vec![t.clone()])).unwrap(),
        merged
    );
}

#[test]
fn merge_conflicts() {
    let t = time_column();
    let existing = schema(vec![
        t.clone(),
        tag_column(&tk("host")),
        field_column(&fk("v"), FieldType::F64),
    ]);
    let type_change = schema(vec![t.clone(), field_column(&fk("v"), FieldType::I64)]);
    let err = merge_schema(&existing, &type_change).unwrap_err();
    assert_eq!(err.column, "v");
    assert_eq!(
        err.to_string(),
        "column \"v\" conflicts: the existing schema has a field of type Float64, the incoming data has a field of type Int64"
    );
    let role_change = schema(vec![t.clone(), field_column(&fk("host"), FieldType::Str)]);
    let err = merge_schema(&existing, &role_change).unwrap_err();
    assert_eq!(err.column, "host");
    assert!(matches!(
        err.existing,
        ColumnSpec::Present {
            role: Some(ColumnRole::Tag),
            ..
        }
    ));

    let bad_time = schema(vec![Field::new("time", DataType::Int64, false)]);
    let err = merge_schema(&existing, &bad_time).unwrap_err();
    assert_eq!(err.column, "time");
    let no_time = schema(vec![field_column(&fk("v"), FieldType::F64)]);
    let err = merge_schema(&existing, &no_time).unwrap_err();
    assert_eq!(err.incoming, ColumnSpec::Missing);
    let no_role = schema(vec![t.clone(), Field::new("x", DataType::Float64, true)]);
    let err = merge_schema(&existing, &no_role).unwrap_err();
    assert_eq!(err.existing, ColumnSpec::Missing);
    assert!(err.to_string().contains("without a valid ferry.role"));
}

#[test]
fn byte_size_grows() {
    let mut b = ReadingBatch::new(m("cpu"));
    b.push(
        &reading(1)
            .with_tag(tk("h"), "abc")
            .with_field(fk("v"), FieldValue::F64(1.0)),
    )
    .unwrap();
    let one = b.byte_size();
    assert!(one >= 8 + 4 + 3 + 8, "{one}");
    b.push(
        &reading(2)
            .with_tag(tk("h"), "abc")
            .with_field(fk("v"), FieldValue::F64(1.0)),
    )
    .unwrap();
    assert_eq!(b.byte_size(), one * 2 - 3);
}

#[test]
fn columns_are_capped_before_anything_is_allocated() {
    // One reading with more fields than the cap: refused, batch unchanged.
    let mut wide = reading(1);
    for i in 0..20_000 {
        wide = wide.with_field(fk(&format!("f{i}")), FieldValue::F64(1.0));
    }
    let mut b = ReadingBatch::with_max_columns(m("cpu"), 1024);
    let err = b.push(&wide).unwrap_err();
    assert!(
        matches!(&err, BatchError::TooManyColumns { limit: 1024, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cpu"), "{err}");
    assert_eq!((b.len(), b.columns()), (0, 1));

    // Readings that each add a column: the one past the cap is refused and
    // names its column; the others stay.
    let mut b = ReadingBatch::with_max_columns(m("cpu"), 4);
    for i in 0..3 {
        b.push(&reading(i).with_field(fk(&format!("f{i}")), FieldValue::F64(1.0)))
            .unwrap();
    }
    assert_eq!(b.columns(), 4);
    let err = b
        .push(
            &reading(9)
                .with_tag(tk("host"), "a")
                .with_field(fk("f0"), FieldValue::F64(2.0)),
        )
        .unwrap_err();
    assert!(
        matches!(&err, BatchError::TooManyColumns { column, .. } if column == "host"),
        "{err}"
    );
    // Existing columns only: still fine.
    b.push(&reading(10).with_field(fk("f1"), FieldValue::F64(2.0)))
        .unwrap();
    assert_eq!((b.len(), b.columns()), (4, 4));
    assert_eq!(ReadingBatch::new(m("cpu")).columns(), 1);
}

#[test]
fn rows_with_the_batch_columns_keep_every_rule() {
    let row = |t: i64, host: &str, v: FieldValue| {
        reading(t).with_tag(tk("host"), host).with_field(fk("v"), v)
    };
    let mut b = ReadingBatch::new(m("cpu"));
    b.push(&row(1, "a", FieldValue::F64(1.0))).unwrap();
    // The same keys: a new row, a tag value seen before costs no bytes.
    let size = b.byte_size();
    b.push(&row(2, "a", FieldValue::F64(2.0))).unwrap();
    assert_eq!(b.byte_size(), size * 2 - 1);
    // The same keys with another type: still a conflict, nothing changes.
    let size = b.byte_size();
    let err = b.push(&row(3, "a", FieldValue::I64(3))).unwrap_err();
    assert!(matches!(err, BatchError::TypeConflict { .. }), "{err:?}");
    assert_eq!((b.len(), b.byte_size()), (2, size));
    // The same keys in another measurement: refused.
    let other = Reading::new(m("mem"), 3)
        .with_tag(tk("host"), "a")
        .with_field(fk("v"), FieldValue::F64(3.0));
    let err = b.push(&other).unwrap_err();
    assert!(
        matches!(err, BatchError::WrongMeasurement { .. }),
        "{err:?}"
    );
    // As many keys but other names: new columns, nulls where absent.
    let renamed = reading(4)
        .with_tag(tk("site"), "s")
        .with_field(fk("w"), FieldValue::F64(4.0));
    b.push(&renamed).unwrap();
    b.push(&row(5, "b", FieldValue::F64(5.0))).unwrap();
    assert_eq!(b.len(), 4);
    let rb = b.to_record_batch().unwrap();
    let names: Vec<&str> = rb
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["time", "host", "site", "v", "w"]);
    let v = rb
        .column(3)
        .as_primitive::<arrow_array::types::Float64Type>();
    let w = rb
        .column(4)
        .as_primitive::<arrow_array::types::Float64Type>();
    // Sorted by host (null first), then site, then time.
    assert_eq!(v.null_count(), 1);
    assert_eq!(w.null_count(), 3);
    let host = rb.column(1).as_dictionary::<Int32Type>();
    assert_eq!(host.keys().null_count(), 1);
    // A tag that is a field name in the batch: still a collision.
    let clash = reading(6)
        .with_tag(tk("v"), "x")
        .with_field(fk("host"), FieldValue::F64(6.0));
    let err = b.push(&clash);
    assert!(err.is_err(), "{err:?}");
    assert_eq!(b.len(), 4);
}

#[test]
fn an_expected_size_changes_nothing_but_the_room() {
    // Readings whose columns appear late (back-filled with nulls), two
    // string fields, out of tag order: the same batch whatever the batch
    // was told to expect, including far too little and far too much.
    let readings: Vec<Reading> = (0..50i64)
        .map(|i| {
            let mut r = reading(1_000 - i).with_tag(tk("dev"), format!("d{}", i % 3));
            if i > 10 {
                r = r.with_field(fk("s"), FieldValue::Str("x".repeat(i as usize)));
            }
            if i % 2 == 0 {
                r = r.with_field(fk("t"), FieldValue::Str(format!("t{i}")));
            }
            if i > 20 {
                r = r.with_tag(tk("late"), "y");
            }
            r.with_field(fk("v"), FieldValue::F64(i as f64))
        })
        .collect();
    let plain = ReadingBatch::from_readings(m("cpu"), &readings)
        .unwrap()
        .to_record_batch()
        .unwrap();
    for (rows, bytes) in [(0, 0), (1, 3), (50, 2_000), (10_000, 4 << 20)] {
        let mut b = ReadingBatch::new(m("cpu"));
        b.expect(rows, bytes);
        for r in &readings {
            b.push(r).unwrap();
        }
        assert_eq!(
            b.to_record_batch().unwrap(),
            plain,
            "expect({rows}, {bytes})"
        );
    }
}
