//! The hub's own scan (`scan.rs`) against deltalake's on the same tables:
//! equal answers, file skipping from the log's statistics, `count(*)` from
//! the log, and deltalake's scan for a table the own scan must not read.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Date32Array, Float64Array, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{Field, Schema, TimeUnit};
use deltalake::arrow::util::pretty::pretty_format_batches;
use deltalake::kernel::{DataType as DeltaType, PrimitiveType, StructField};
use deltalake::table::config::TableProperty;

use super::*;

const DAY_NS: i64 = 86_400_000_000_000;

/// Rows over three days in several commits: two sites, a field added late
/// (older files lack it), and stamps a few microseconds apart inside one
/// millisecond (the log keeps milliseconds).
async fn fleet_table(h: &Hub) -> TableName {
    let t = table("plant.scan");
    for day in 0..3 {
        for (i, site) in ["north", "south"].iter().enumerate() {
            let base = T0 + day * DAY_NS + i64::try_from(i).unwrap() * 1_000_000;
            let readings: Vec<_> = (0..50)
                .map(|n| {
                    let r = reading("scan", base + n * 60_000_000_000 + 250_000)
                        .with_tag(tag("site"), *site)
                        .with_field(field("temp"), FieldValue::F64(10.0 + n as f64))
                        .with_field(field("count"), FieldValue::U64(n as u64));
                    if day == 2 {
                        r.with_field(field("note"), FieldValue::Str(format!("n{n}")))
                    } else {
                        r
                    }
                })
                .collect();
            h.tables
                .write(write(&t, batch_of(&readings)))
                .await
                .unwrap();
        }
    }
    // Two stamps 100 µs apart in the same millisecond, in their own files.
    for us in [100_000, 200_000] {
        let r = reading("scan", T0 + 2 * DAY_NS + 3_600_000_000_000 + us)
            .with_tag(tag("site"), "edge")
            .with_field(field("temp"), FieldValue::F64(f64::NAN));
        h.tables.write(write(&t, batch_of(&[r]))).await.unwrap();
    }
    t
}

async fn deltalake_scan(h: &Hub, t: &TableName) -> SessionContext {
    let resolved = h.storage.resolve().unwrap();
    let dt: DeltaTable = load_latest(&resolved, &resolved.table_url(t))
        .await
        .unwrap()
        .unwrap();
    let ctx = SessionContext::new();
    dt.update_datafusion_session(&ctx.state()).unwrap();
    let provider = dt.table_provider().await.unwrap();
    ctx.register_table("reference", provider).unwrap();
    ctx
}

fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// The values of `batches`, rendered without their column names.
fn values(batches: &[RecordBatch]) -> String {
    let renamed: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let fields: Vec<Field> = (0..b.num_columns())
                .map(|i| {
                    Field::new(
                        format!("c{i}"),
                        b.schema().field(i).data_type().clone(),
                        true,
                    )
                })
                .collect();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), b.columns().to_vec()).unwrap()
        })
        .collect();
    pretty(&renamed)
}

#[tokio::test]
async fn own_scan_answers_as_deltalake_scan() {
    let h = hub(20).await;
    let t = fleet_table(&h).await;
    let reference = deltalake_scan(&h, &t).await;
    // 2025-11-28T01:00:00.000150Z: between the two stamps of one millisecond.
    let mid = "2025-11-28T01:00:00.000150Z";
    let queries = [
        "SELECT count(*) FROM {t}".to_owned(),
        "SELECT time, site, temp, count, note, day FROM {t} ORDER BY time, site".to_owned(),
        "SELECT site, count(*), min(time), max(time), min(temp), max(count) FROM {t} \
         GROUP BY site ORDER BY site"
            .to_owned(),
        format!("SELECT time, site FROM {{t}} WHERE time > '{mid}' ORDER BY time"),
        format!("SELECT count(*) FROM {{t}} WHERE time >= '{mid}'"),
        format!("SELECT count(*) FROM {{t}} WHERE time <= '{mid}'"),
        "SELECT time, site FROM {t} ORDER BY time DESC LIMIT 3".to_owned(),
        "SELECT site, time FROM {t} WHERE site = 'south' ORDER BY time LIMIT 2".to_owned(),
        "SELECT count(*) FROM {t} WHERE day = '2025-11-27'".to_owned(),
        "SELECT count(*), sum(count) FROM {t} WHERE site = 'south' AND temp > 30".to_owned(),
        "SELECT count(*) FROM {t} WHERE note IS NULL".to_owned(),
        "SELECT count(*) FROM {t} WHERE note = 'n7'".to_owned(),
        "SELECT count(*) FROM {t} WHERE temp > 1e9 OR isnan(temp)".to_owned(),
        "SELECT count(*) FROM {t} WHERE count = 49 AND site = 'north'".to_owned(),
        "SELECT max(time), min(time) FROM {t}".to_owned(),
        "SELECT count(*) FROM {t} WHERE site IN ('edge', 'north')".to_owned(),
        "SELECT count(*) FROM {t} WHERE site <> 'north' AND NOT (site = 'edge')".to_owned(),
        "SELECT count(*) FROM {t} WHERE day < '2025-11-28' AND site = 'south'".to_owned(),
        "SELECT count(*) FROM {t} WHERE day IS NULL OR site IS NULL".to_owned(),
        "SELECT count(*) FROM {t} WHERE site > 'm' AND count < 3".to_owned(),
        "SELECT count(*) FROM {t} WHERE upper(site) = 'EDGE'".to_owned(),
    ];
    for q in &queries {
        let ours = sql(&h.tables, &q.replace("{t}", "plant.scan")).await;
        let theirs = reference
            .sql(&q.replace("{t}", "reference"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(values(&ours), values(&theirs), "{q}");
    }
    drop(h);
}

/// The rendered physical plan of `q` (with `EXPLAIN ANALYZE`, its metrics).
async fn plan(h: &Hub, q: &str) -> String {
    let batches = sql(&h.tables, q).await;
    pretty(&batches)
}

/// The files the Parquet scan in `analyzed` was handed, and kept.
fn assert_files_read(analyzed: &str, expected: &str) {
    let pruned: String = analyzed
        .split("files_ranges_pruned_statistics=")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take(expected.chars().count())
        .collect();
    assert_eq!(pruned, expected, "{analyzed}");
}

#[tokio::test]
async fn own_scan_skips_files_by_statistics_and_counts_from_the_log() {
    let h = hub(20).await;
    let _t = fleet_table(&h).await;

    let scan = plan(&h, "EXPLAIN SELECT time, site FROM plant.scan").await;
    assert!(scan.contains("DataSourceExec"), "{scan}");
    assert!(!scan.contains("DeltaScan"), "{scan}");

    // Answered from the `add` actions' row counts: no scan at all.
    let count = plan(&h, "EXPLAIN SELECT count(*) FROM plant.scan").await;
    assert!(!count.contains("DataSourceExec"), "{count}");

    // Only the last day's four files can hold rows after 00:30 that day:
    // the other four are skipped at planning, before any footer is read
    // (the scan is handed four files).
    let analyzed = plan(
        &h,
        "EXPLAIN ANALYZE SELECT count(*) FROM plant.scan WHERE time > '2025-11-28T00:30:00Z'",
    )
    .await;
    assert_files_read(&analyzed, "4 total → 4 matched");

    // Tags are read as string views, and their bounds skip files too.
    let tags = sql(&h.tables, "SELECT site FROM plant.scan LIMIT 1").await;
    assert_eq!(tags[0].schema().field(0).data_type(), &DataType::Utf8View);
    let analyzed = plan(
        &h,
        "EXPLAIN ANALYZE SELECT count(*) FROM plant.scan WHERE site = 'edge'",
    )
    .await;
    assert_files_read(&analyzed, "2 total → 2 matched");
    drop(h);
}

#[tokio::test]
async fn a_table_with_reader_features_is_read_by_deltalake() {
    let h = hub(20).await;
    let t = table("plant.dv");
    let resolved = h.storage.resolve().unwrap();
    let url = resolved.table_url(&t);
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("temp", DataType::Float64, true),
        Field::new("day", DataType::Date32, false),
    ]));
    let created = super::writer::open_table(&resolved, &url)
        .unwrap()
        .create()
        .with_columns([
            StructField::new(
                "time",
                DeltaType::Primitive(PrimitiveType::Timestamp),
                false,
            ),
            StructField::new("temp", DeltaType::Primitive(PrimitiveType::Double), true),
            StructField::new("day", DeltaType::Primitive(PrimitiveType::Date), false),
        ])
        .with_partition_columns(["day"])
        .with_configuration_property(TableProperty::EnableDeletionVectors, Some("true"))
        .await
        .unwrap();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![T0 / 1000, T0 / 1000 + 1])
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(vec![1.5, 2.5])),
            Arc::new(Date32Array::from(vec![20418, 20418])),
        ],
    )
    .unwrap();
    created.write([batch]).await.unwrap();

    let rows = sql(&h.tables, "SELECT sum(temp) FROM plant.dv").await;
    assert_eq!(pretty(&rows).matches("4.0").count(), 1, "{}", pretty(&rows));
    let scan = plan(&h, "EXPLAIN SELECT temp FROM plant.dv").await;
    assert!(scan.contains("DeltaScan"), "{scan}");
    drop(h);
}
