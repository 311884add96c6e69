use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::compute::take_record_batch;
use deltalake::arrow::datatypes::{Field, Schema, TimeUnit};
use proptest::prelude::*;

use super::*;

fn field(name: &str, data_type: DataType, role: &str) -> Field {
    Field::new(name, data_type, role != "time")
        .with_metadata(HashMap::from([(ROLE_KEY.to_owned(), role.to_owned())]))
}

/// A batch with string tags `tags` (columns of optional values), `time`
/// in microseconds and one field column numbering the rows.
fn batch(tags: &[Vec<Option<String>>], time: &[i64]) -> RecordBatch {
    let mut fields = vec![field(
        TIME_COLUMN,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "time",
    )];
    let mut columns: Vec<ArrayRef> = vec![Arc::new(
        TimestampMicrosecondArray::from(time.to_vec()).with_timezone("UTC"),
    )];
    for (i, t) in tags.iter().enumerate() {
        fields.push(field(&format!("tag{i}"), DataType::Utf8, "tag"));
        columns.push(Arc::new(StringArray::from(t.clone())));
    }
    fields.push(field("row", DataType::Float64, "field"));
    columns.push(Arc::new(Float64Array::from_iter_values(
        (0..time.len()).map(|r| r as f64),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("batch")
}

/// The sort key columns of `rows` in the order `indices` gives, and the
/// order of the key columns the general path chose.
fn keys_after(rows: &RecordBatch, indices: &UInt32Array) -> RecordBatch {
    let sorted = take_record_batch(rows, indices).expect("take");
    let names: Vec<usize> = (0..sorted.num_columns() - 1).collect();
    sorted.project(&names).expect("keys")
}

fn general(rows: &RecordBatch) -> UInt32Array {
    let tags: Vec<usize> = (1..rows.num_columns() - 1).collect();
    let time = rows.column_by_name(TIME_COLUMN).expect("time").clone();
    lexsorted(rows, &tags, &time).expect("lexsort")
}

fn assert_permutation(indices: &UInt32Array, n: usize) {
    let mut seen: Vec<u32> = indices.values().to_vec();
    seen.sort_unstable();
    assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
}

#[test]
fn tags_with_fewest_values_first_nulls_first_then_time() {
    let s = |v: &str| Some(v.to_owned());
    // tag0 has 3 distinct values, tag1 2 (with a null): tag1 sorts first.
    let rows = batch(
        &[
            vec![s("b"), s("a"), s("c"), s("a"), s("b"), s("a")],
            vec![s("x"), None, s("x"), s("x"), None, None],
        ],
        &[5, 4, 3, 2, 1, 0],
    );
    let order = sorted_indices(&rows).expect("sort");
    // tag1 null: rows 1 (a, t4), 4 (b, t1), 5 (a, t0) → a@0, a@4, b@1;
    // tag1 x: rows 0 (b, t5), 2 (c, t3), 3 (a, t2) → a@2, b@5, c@3.
    assert_eq!(order.values().to_vec(), vec![5, 1, 4, 3, 0, 2]);
}

#[test]
fn ties_in_distinct_values_keep_table_order_on_both_paths() {
    let s = |v: &str| Some(v.to_owned());
    // device has four values; site (a null is one) and line two each:
    // site, then line, then device.
    let rows = batch(
        &[
            vec![s("d1"), s("d2"), s("d3"), s("d4")],
            vec![s("a"), None, s("a"), None],
            vec![s("x"), s("y"), s("y"), s("x")],
        ],
        &[0, 0, 0, 0],
    );
    assert_eq!(
        sorted_indices(&rows).expect("sort").values().to_vec(),
        vec![3, 1, 0, 2]
    );
    assert_eq!(general(&rows).values().to_vec(), vec![3, 1, 0, 2]);
}

#[test]
fn ranks_that_do_not_fit_in_64_bits_take_the_general_path() {
    // Five tag columns of 10,000 distinct values: 5 × 14 bits > 64.
    let n = 10_000usize;
    let tags: Vec<Vec<Option<String>>> = [7919, 7927, 7933, 7937, 7949]
        .iter()
        .map(|p| {
            (0..n)
                .map(|r| Some(format!("{:05}", (r * p) % n)))
                .collect()
        })
        .collect();
    let time: Vec<i64> = (0..n as i64).rev().collect();
    let rows = batch(&tags, &time);
    let ranked: Vec<Ranked> = (1..6)
        .map(|i| {
            let (ranks, distinct) = rank(rows.column(i)).expect("strings");
            Ranked::new(ranks, distinct, i)
        })
        .collect();
    assert!(packed_bits(&ranked) > 64);
    let order = sorted_indices(&rows).expect("sort");
    assert_permutation(&order, n);
    assert_eq!(
        keys_after(&rows, &order),
        keys_after(&rows, &general(&rows))
    );
}

#[test]
fn a_tag_that_is_not_a_string_takes_the_general_path() {
    let schema = Arc::new(Schema::new(vec![
        field(
            TIME_COLUMN,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "time",
        ),
        field("site", DataType::Int64, "tag"),
    ]));
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMicrosecondArray::from(vec![3, 1, 2, 0]).with_timezone("UTC")),
            Arc::new(Int64Array::from(vec![Some(2), Some(1), None, Some(1)])),
        ],
    )
    .expect("batch");
    let order = sorted_indices(&rows).expect("sort");
    assert_eq!(order.values().to_vec(), vec![2, 3, 1, 0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The packed ranks give the order arrow's lexicographic sort gives.
    #[test]
    fn same_order_as_arrow_lexsort(
        rows in prop::collection::vec(
            (prop::collection::vec(prop::option::weighted(0.9, "[a-c]{0,2}"), 3), 0i64..20),
            0..300,
        )
    ) {
        let n = rows.len();
        let tags: Vec<Vec<Option<String>>> =
            (0..3).map(|c| rows.iter().map(|(t, _)| t[c].clone()).collect()).collect();
        let time: Vec<i64> = rows.iter().map(|(_, t)| *t).collect();
        let rows = batch(&tags, &time);
        let order = sorted_indices(&rows).expect("sort");
        assert_permutation(&order, n);
        prop_assert_eq!(keys_after(&rows, &order), keys_after(&rows, &general(&rows)));
    }
}
