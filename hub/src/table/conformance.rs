//! Test support: the same write / dedupe / read / compact / expire /
//! vacuum checks against any
//! `[storage]` backend, so the local filesystem, an S3 server (moto,
//! s3s-fs) and Azurite can be held to one standard.
//!
//! ```ignore
//! let storage: StorageConfig = toml::from_str(r#"backend = "s3" ..."#)?;
//! ferry_hub::table::conformance::run(&storage).await?;
//! ```
//!
//! Each run uses a fresh database name (`conf<random>`), so runs against a
//! shared bucket do not interfere. Nothing is deleted afterwards.

use std::time::Duration;

use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::datatypes::Int64Type;
use deltalake::datafusion::prelude::SessionContext;
use ferry_protocols::batch::ReadingBatch;
use ferry_protocols::segment::SegmentSeq;
use ferry_protocols::{AgentId, DatabaseName, FieldKey, FieldValue, Measurement, Reading, TagKey};
use tokio_util::sync::CancellationToken;

use super::{
    CompactionPolicy, Origin, StorageConfig, TableConfig, TableName, Tables, WriteOutcome,
    WriteRequest,
};

/// A batch of `rows` readings of `measurement`: tag `site` = `site`, field
/// `value` (f64) = row index, times `start_ns + i * step_ns`.
pub fn sample_batch(
    measurement: &str,
    site: &str,
    start_ns: i64,
    step_ns: i64,
    rows: usize,
) -> RecordBatch {
    let measurement = Measurement::new(measurement).expect("test measurement name");
    let mut batch = ReadingBatch::new(measurement.clone());
    for i in 0..rows {
        let offset = i64::try_from(i).expect("small row count") * step_ns;
        let reading = Reading::new(measurement.clone(), start_ns + offset)
            .with_tag(TagKey::new("site").expect("tag key"), site)
            .with_field(
                FieldKey::new("value").expect("field key"),
                FieldValue::F64(i as f64),
            );
        batch.push(&reading).expect("valid sample reading");
    }
    batch.to_record_batch().expect("sample batch")
}

/// A batch built from readings.
pub fn batch_of(readings: &[Reading]) -> RecordBatch {
    let first = readings.first().expect("at least one reading");
    let mut batch = ReadingBatch::new(first.measurement.clone());
    for r in readings {
        batch.push(r).expect("valid reading");
    }
    batch.to_record_batch().expect("batch")
}

/// A segment write request.
pub fn segment_request(
    table: &TableName,
    agent: &str,
    seq: u64,
    batch: RecordBatch,
) -> WriteRequest {
    WriteRequest {
        table: table.clone(),
        batches: vec![batch],
        origin: Origin::Segment {
            agent: AgentId::new(agent).expect("test agent id"),
            seq: SegmentSeq(seq),
        },
    }
}

/// Runs `sql` and returns the single `i64` in its first row and column.
pub async fn query_i64(tables: &Tables, sql: &str) -> Result<i64, String> {
    let ctx = SessionContext::new();
    tables
        .register_catalog(&ctx, None)
        .await
        .map_err(|e| format!("register_catalog: {e}"))?;
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))?
        .collect()
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| format!("{sql}: no rows"))?;
    let col = batch.column(0);
    let col = col
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| format!("{sql}: first column is {}", col.data_type()))?;
    if col.is_null(0) {
        return Err(format!("{sql}: null"));
    }
    Ok(col.value(0))
}

fn expect(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

/// Write, deduplicate (sequential, concurrent, after reopening) and read
/// back against `storage`. `Err` says which check failed.
pub async fn run(storage: &StorageConfig) -> Result<(), String> {
    run_with(storage, None).await
}

/// [`run`] with `[encryption]` on; afterwards every object in the store but
/// the lake's marker must be ciphertext.
pub async fn run_with(
    storage: &StorageConfig,
    encryption: Option<std::sync::Arc<crate::encryption::Encryption>>,
) -> Result<(), String> {
    let config = TableConfig {
        commit_interval: Duration::from_millis(50),
        ..TableConfig::default()
    };
    let db = format!("conf{:016x}", rand::random::<u64>());
    let table = TableName::new(
        DatabaseName::new(db.as_str()).map_err(|e| e.to_string())?,
        Measurement::new("sensor readings").map_err(|e| e.to_string())?,
    );
    let sql_table = format!("{db}.\"sensor readings\"");
    let t0 = 1_764_115_200_000_000_000; // 2025-11-26T00:00:00Z
    let shutdown = CancellationToken::new();
    let tables = Tables::open_with(storage, &config, encryption.clone(), shutdown.clone())
        .await
        .map_err(|e| format!("open: {e}"))?;

    // 1. A segment commits; its replay is a duplicate.
    let first = segment_request(
        &table,
        "gw-1",
        1,
        sample_batch("sensor readings", "a", t0, 1_000, 5),
    );
    let outcome = tables
        .write(first.clone())
        .await
        .map_err(|e| format!("write seq 1: {e}"))?;
    expect(
        matches!(outcome, WriteOutcome::Committed { rows: 5, .. }),
        || format!("seq 1: {outcome:?}"),
    )?;
    let again = tables
        .write(first)
        .await
        .map_err(|e| format!("replay seq 1: {e}"))?;
    expect(matches!(again, WriteOutcome::Duplicate { .. }), || {
        format!("replayed seq 1 was {again:?}")
    })?;

    // 2. The same segment three times at once: committed once.
    let second = segment_request(
        &table,
        "gw-1",
        2,
        sample_batch("sensor readings", "b", t0, 1_000, 3),
    );
    let results =
        futures_util::future::join_all((0..3).map(|_| tables.write(second.clone()))).await;
    let mut committed = 0;
    for r in &results {
        match r {
            Ok(WriteOutcome::Committed { .. }) => committed += 1,
            Ok(WriteOutcome::Duplicate { .. }) => {}
            Err(e) => return Err(format!("concurrent seq 2: {e}")),
        }
    }
    expect(committed == 1, || {
        format!("concurrent seq 2 committed {committed} times")
    })?;

    // 3. A direct write, then a read.
    let direct = WriteRequest {
        table: table.clone(),
        batches: vec![sample_batch("sensor readings", "c", t0, 1_000, 2)],
        origin: Origin::Write,
    };
    tables
        .write(direct)
        .await
        .map_err(|e| format!("direct write: {e}"))?;
    let n = query_i64(&tables, &format!("SELECT count(*) FROM {sql_table}")).await?;
    expect(n == 10, || {
        format!("count after writes is {n}, expected 10")
    })?;
    let listed = tables.list().await.map_err(|e| format!("list: {e}"))?;
    expect(listed.contains(&table), || {
        format!("list() lacks {table}: {listed:?}")
    })?;
    shutdown.cancel();
    tables.wait_stopped().await;

    // 4. A new hub instance still knows both segments.
    let shutdown = CancellationToken::new();
    let reopened = Tables::open_with(storage, &config, encryption.clone(), shutdown.clone())
        .await
        .map_err(|e| format!("reopen: {e}"))?;
    for seq in [1, 2] {
        let replay = segment_request(
            &table,
            "gw-1",
            seq,
            sample_batch("sensor readings", "z", t0, 1, 1),
        );
        let outcome = reopened
            .write(replay)
            .await
            .map_err(|e| format!("replay after reopen: {e}"))?;
        expect(matches!(outcome, WriteOutcome::Duplicate { .. }), || {
            format!("seq {seq} after reopen was {outcome:?}")
        })?;
    }
    let n = query_i64(&reopened, &format!("SELECT count(*) FROM {sql_table}")).await?;
    expect(n == 10, || {
        format!("count after reopen is {n}, expected 10")
    })?;
    maintain(&reopened, &table, &sql_table, t0).await?;
    if encryption.is_some() {
        all_ciphertext(&reopened).await?;
    }
    shutdown.cancel();
    reopened.wait_stopped().await;
    Ok(())
}

/// Every object under the root, read raw, starts with the encryption header.
async fn all_ciphertext(tables: &Tables) -> Result<(), String> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStoreExt;
    let (raw, root) = tables.raw_root().map_err(|e| e.to_string())?;
    let objects: Vec<_> = raw
        .list(Some(&root))
        .try_collect()
        .await
        .map_err(|e| format!("raw listing: {e}"))?;
    let mut checked = 0;
    for meta in objects {
        if meta.location.filename() == Some(crate::encryption::lake::MARKER) {
            continue;
        }
        let head = raw
            .get_range(&meta.location, 0..8)
            .await
            .map_err(|e| format!("{}: {e}", meta.location))?;
        expect(&head[..] == crate::encryption::format::MAGIC, || {
            format!("{} is not encrypted", meta.location)
        })?;
        checked += 1;
    }
    expect(checked > 3, || {
        format!("only {checked} objects in the store")
    })
}

/// Step 5: compaction, retention and vacuum on the table that steps 1 to 4
/// left (10 rows in 3 files, one old day). Nothing is lost or doubled, and
/// exactly-once still holds afterwards.
async fn maintain(
    tables: &Tables,
    table: &TableName,
    sql_table: &str,
    t0: i64,
) -> Result<(), String> {
    let policy = CompactionPolicy {
        target_file_size: 64 * 1024 * 1024,
        min_files: 16,
        settle: Duration::from_secs(3600),
    };
    let report = tables
        .compact(table, &policy, chrono::Utc::now())
        .await
        .map_err(|e| format!("compact: {e}"))?;
    expect(
        report.files_removed == 3 && report.files_added == 1 && report.rows == 10,
        || format!("compaction report {report:?}"),
    )?;
    let n = query_i64(tables, &format!("SELECT count(*) FROM {sql_table}")).await?;
    expect(n == 10, || format!("count after compaction is {n}"))?;
    let replay = segment_request(
        table,
        "gw-1",
        2,
        sample_batch("sensor readings", "z", t0, 1, 1),
    );
    let outcome = tables
        .write(replay)
        .await
        .map_err(|e| format!("replay after compaction: {e}"))?;
    expect(matches!(outcome, WriteOutcome::Duplicate { .. }), || {
        format!("seq 2 after compaction was {outcome:?}")
    })?;

    // Two days later: a new segment; then expire everything before that day.
    let later = t0 + 2 * 86_400 * 1_000_000_000;
    tables
        .write(segment_request(
            table,
            "gw-1",
            3,
            sample_batch("sensor readings", "d", later, 1_000, 4),
        ))
        .await
        .map_err(|e| format!("write seq 3: {e}"))?;
    let keep_from = chrono::DateTime::from_timestamp_nanos(later).date_naive();
    let dry = tables
        .expire(table, keep_from, true)
        .await
        .map_err(|e| format!("retention dry run: {e}"))?;
    expect(
        dry.rows == 10 && dry.days.len() == 1 && dry.version.is_none(),
        || format!("dry run {dry:?}"),
    )?;
    let n = query_i64(tables, &format!("SELECT count(*) FROM {sql_table}")).await?;
    expect(n == 14, || {
        format!("count after the dry run is {n}, expected 14")
    })?;
    let done = tables
        .expire(table, keep_from, false)
        .await
        .map_err(|e| format!("retention: {e}"))?;
    expect(done.rows == 10 && done.version.is_some(), || {
        format!("retention {done:?}")
    })?;
    let n = query_i64(tables, &format!("SELECT count(*) FROM {sql_table}")).await?;
    expect(n == 4, || {
        format!("count after retention is {n}, expected 4")
    })?;
    let vacuumed = tables
        .vacuum(table, Duration::ZERO)
        .await
        .map_err(|e| format!("vacuum: {e}"))?;
    expect(vacuumed >= 4, || {
        format!("vacuum deleted {vacuumed} files, expected >= 4")
    })?;
    let n = query_i64(tables, &format!("SELECT count(*) FROM {sql_table}")).await?;
    expect(n == 4, || format!("count after vacuum is {n}, expected 4"))?;
    let replay = segment_request(
        table,
        "gw-1",
        3,
        sample_batch("sensor readings", "z", later, 1, 1),
    );
    let outcome = tables
        .write(replay)
        .await
        .map_err(|e| format!("replay after retention: {e}"))?;
    expect(matches!(outcome, WriteOutcome::Duplicate { .. }), || {
        format!("seq 3 after retention was {outcome:?}")
    })
}
