use super::*;
use deltalake::arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::arrow::util::display::{ArrayFormatter, FormatOptions};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;

const MIN: i64 = 60_000_000; // µs
const T0: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z in µs

fn context() -> SessionContext {
    let ctx = SessionContext::new();
    for f in functions() {
        ctx.register_udf(f);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("room", DataType::Utf8, true),
        Field::new("temp", DataType::Float64, true),
    ]));
    // Room a at 00:00 (10) and 00:20 (30, 34: avg 32); room b at 00:10 (5).
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    T0,
                    T0 + 20 * MIN,
                    T0 + 21 * MIN,
                    T0 + 10 * MIN,
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec!["a", "a", "a", "b"])),
            Arc::new(Float64Array::from(vec![10.0, 30.0, 34.0, 5.0])),
        ],
    )
    .unwrap();
    let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
    ctx.register_table("t", Arc::new(table)).unwrap();
    ctx
}

/// The filled answer as text rows.
async fn run(sql: &str, max_rows: usize) -> Result<(Vec<String>, bool), ApiError> {
    let ctx = context();
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let optimized = ctx
        .state()
        .optimize(&plan)
        .map_err(|e| bad(e.to_string()))?;
    let spec = spec(&optimized)?.expect("a gap-filling query");
    let df = ctx.execute_logical_plan(plan).await.unwrap();
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.unwrap();
    let (out, truncated) = fill(&spec, &schema, &batches, max_rows)?;
    let options = FormatOptions::default().with_null("-");
    let formatters: Vec<_> = out
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
        .collect();
    let rows = (0..out.num_rows())
        .map(|r| {
            formatters
                .iter()
                .map(|f| f.value(r).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    Ok((rows, truncated))
}

const QUERY: &str = "SELECT date_bin_gapfill(INTERVAL '10 minutes', time) AS bucket, room, \
    avg(temp) AS plain, locf(avg(temp)) AS carried, interpolate(avg(temp)) AS line \
    FROM t WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T00:40:00Z' \
    GROUP BY bucket, room ORDER BY room, bucket";

#[tokio::test]
async fn every_bucket_of_every_group_with_locf_and_interpolation() {
    let (rows, truncated) = run(QUERY, 1000).await.unwrap();
    assert!(!truncated);
    // Hand-computed: a has 10 at 00:00 and 32 at 00:20; b has 5 at 00:10.
    assert_eq!(
        rows,
        [
            "2026-01-01T00:00:00Z a 10.0 10.0 10.0",
            "2026-01-01T00:10:00Z a - 10.0 21.0",
            "2026-01-01T00:20:00Z a 32.0 32.0 32.0",
            "2026-01-01T00:30:00Z a - 32.0 -",
            "2026-01-01T00:00:00Z b - - -",
            "2026-01-01T00:10:00Z b 5.0 5.0 5.0",
            "2026-01-01T00:20:00Z b - 5.0 -",
            "2026-01-01T00:30:00Z b - 5.0 -",
        ]
    );
}

#[tokio::test]
async fn an_inclusive_upper_bound_and_an_origin() {
    let sql = "SELECT date_bin_gapfill(INTERVAL '15 minutes', time, TIMESTAMP '2026-01-01T00:05:00Z') AS b, \
        locf(max(temp)) FROM t WHERE time > '2026-01-01T00:00:00Z' AND time <= '2026-01-01T00:35:00Z' \
        GROUP BY b ORDER BY b";
    let (rows, _) = run(sql, 1000).await.unwrap();
    // Buckets from 23:50 (the one holding the lower bound) to 00:35.
    assert_eq!(
        rows,
        [
            "2025-12-31T23:50:00Z -",
            "2026-01-01T00:05:00Z 5.0",
            "2026-01-01T00:20:00Z 34.0",
            "2026-01-01T00:35:00Z 34.0",
        ]
    );
}

#[tokio::test]
async fn a_tiny_stride_stops_at_max_rows() {
    let sql = "SELECT date_bin_gapfill(INTERVAL '1 millisecond', time) AS b, avg(temp) FROM t \
        WHERE time >= '2026-01-01T00:00:00Z' AND time < '2027-01-01T00:00:00Z' GROUP BY b";
    let (rows, truncated) = run(sql, 50).await.unwrap();
    assert!(truncated);
    assert_eq!(rows.len(), 50);
}

#[tokio::test]
async fn unbounded_ranges_and_month_strides_are_refused() {
    for sql in [
        "SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS b, avg(temp) FROM t \
         WHERE time >= '2026-01-01T00:00:00Z' GROUP BY b",
        "SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS b, avg(temp) FROM t GROUP BY b",
        "SELECT date_bin_gapfill(INTERVAL '1 month', time) AS b, avg(temp) FROM t \
         WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-02-01T00:00:00Z' GROUP BY b",
    ] {
        let e = run(sql, 100).await.expect_err(sql);
        assert_eq!(
            e.code(),
            ferry_protocols::api::ErrorCode::BadRequest,
            "{sql}"
        );
        assert!(
            e.body.message.contains("date_bin_gapfill"),
            "{sql}: {}",
            e.body.message
        );
    }
}
