//! Tests of the table capability on the local filesystem backend.

use std::time::Duration;

use deltalake::arrow::array::{AsArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::prelude::SessionContext;
use ferry_protocols::batch::ROLE_KEY;
use ferry_protocols::{DatabaseName, FieldKey, FieldValue, Measurement, Reading, TagKey};
use tokio_util::sync::CancellationToken;

use super::conformance::{batch_of, query_i64, sample_batch, segment_request};
use super::writer::load_latest;
use super::*;

mod scan;
mod segments;

const T0: i64 = 1_764_115_200_000_000_000; // 2025-11-26T00:00:00Z

struct Hub {
    dir: tempfile::TempDir,
    storage: StorageConfig,
    tables: Tables,
    shutdown: CancellationToken,
}

fn config(interval_ms: u64) -> TableConfig {
    TableConfig {
        commit_interval: Duration::from_millis(interval_ms),
        ..TableConfig::default()
    }
}

async fn hub(interval_ms: u64) -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.path().join("tables"),
        multi_writer: false,
    });
    let shutdown = CancellationToken::new();
    let tables = Tables::open(&storage, &config(interval_ms), shutdown.clone())
        .await
        .unwrap();
    Hub {
        dir,
        storage,
        tables,
        shutdown,
    }
}

impl Hub {
    async fn reopen(self) -> Hub {
        self.shutdown.cancel();
        self.tables.wait_stopped().await;
        let shutdown = CancellationToken::new();
        let tables = Tables::open(&self.storage, &config(20), shutdown.clone())
            .await
            .unwrap();
        Hub {
            tables,
            shutdown,
            ..self
        }
    }

    async fn version(&self, table: &TableName) -> u64 {
        let resolved = self.storage.resolve().unwrap();
        let t = load_latest(&resolved, &resolved.table_url(table))
            .await
            .unwrap()
            .unwrap();
        t.version().unwrap()
    }
}

fn table(name: &str) -> TableName {
    name.parse().unwrap()
}

fn write(table: &TableName, batch: RecordBatch) -> WriteRequest {
    WriteRequest {
        table: table.clone(),
        batches: vec![batch],
        origin: Origin::Write,
    }
}

fn reading(m: &str, t: i64) -> Reading {
    Reading::new(Measurement::new(m).unwrap(), t)
}

fn tag(k: &str) -> TagKey {
    TagKey::new(k).unwrap()
}

fn field(k: &str) -> FieldKey {
    FieldKey::new(k).unwrap()
}

async fn sql(tables: &Tables, q: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    tables.register_catalog(&ctx, None).await.unwrap();
    ctx.sql(q).await.unwrap().collect().await.unwrap()
}

#[tokio::test]
async fn write_then_read_back_with_sql() {
    let h = hub(20).await;
    let t = table("plant.boiler");
    let r = reading("boiler", T0 + 1_234_567)
        .with_tag(tag("site"), "north")
        .with_field(field("temp"), FieldValue::F64(21.5))
        .with_field(field("count"), FieldValue::U64(7))
        .with_field(field("delta"), FieldValue::I64(-3))
        .with_field(field("ok"), FieldValue::Bool(true))
        .with_field(field("note"), FieldValue::Str("hi".into()));
    let out = h.tables.write(write(&t, batch_of(&[r]))).await.unwrap();
    assert_eq!(
        out,
        WriteOutcome::Committed {
            version: 0,
            rows: 1
        }
    );

    assert_eq!(h.tables.list().await.unwrap(), vec![t.clone()]);
    let rows = sql(
        &h.tables,
        "SELECT time, site, temp, count, delta, ok, note, day FROM plant.boiler",
    )
    .await;
    let b = &rows[0];
    assert_eq!(b.num_rows(), 1);
    let schema = b.schema();
    assert_eq!(schema.field(0).data_type(), &storage_time_type());
    // DataFusion scans Delta strings as Utf8View.
    assert!(matches!(
        schema.field(1).data_type(),
        DataType::Utf8 | DataType::Utf8View
    ));
    assert_eq!(schema.field(3).data_type(), &DataType::Int64);
    assert_eq!(schema.field(7).data_type(), &DataType::Date32);
    let time = b
        .column(0)
        .as_primitive::<deltalake::arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(time.value(0), (T0 + 1_234_567) / 1000);
    let site = deltalake::arrow::compute::cast(b.column(1), &DataType::Utf8).unwrap();
    assert_eq!(site.as_string::<i32>().value(0), "north");
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(0), 7);

    // The roles are in the Delta schema.
    let resolved = h.storage.resolve().unwrap();
    let dt = load_latest(&resolved, &resolved.table_url(&t))
        .await
        .unwrap()
        .unwrap();
    let arrow = dt.snapshot().unwrap().snapshot().arrow_schema();
    let role = |c: &str| {
        arrow
            .field_with_name(c)
            .unwrap()
            .metadata()
            .get(ROLE_KEY)
            .cloned()
    };
    assert_eq!(role("time").as_deref(), Some("time"));
    assert_eq!(role("site").as_deref(), Some("tag"));
    assert_eq!(role("temp").as_deref(), Some("field"));
    assert_eq!(role("day").as_deref(), Some(PARTITION_ROLE));
    assert_eq!(
        arrow
            .field_with_name("count")
            .unwrap()
            .metadata()
            .get(TYPE_KEY)
            .map(String::as_str),
        Some(TYPE_U64)
    );
    drop(h.dir);
}

#[tokio::test]
async fn concurrent_writes_share_few_commits() {
    let h = hub(300).await;
    let t = table("db.m");
    let writes = (0..40).map(|i| {
        let tables = h.tables.clone();
        let t = t.clone();
        tokio::spawn(async move {
            tables
                .write(write(&t, sample_batch("m", "s", T0 + i * 10_000, 1, 5)))
                .await
        })
    });
    let results = futures_util::future::join_all(writes).await;
    for r in results {
        assert!(matches!(
            r.unwrap().unwrap(),
            WriteOutcome::Committed { rows: 5, .. }
        ));
    }
    let version = h.version(&t).await;
    assert!(version <= 2, "40 writes took {} commits", version + 1);
    assert_eq!(
        query_i64(&h.tables, "SELECT count(*) FROM db.m")
            .await
            .unwrap(),
        200
    );
}

#[tokio::test]
async fn max_commit_rows_commits_early() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.path().to_owned(),
        multi_writer: false,
    });
    let config = TableConfig {
        commit_interval: Duration::from_secs(3600),
        max_commit_rows: std::num::NonZeroUsize::new(10).unwrap(),
        ..TableConfig::default()
    };
    let tables = Tables::open(&storage, &config, CancellationToken::new())
        .await
        .unwrap();
    let t = table("db.m");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tables.write(write(&t, sample_batch("m", "s", T0, 1, 10))),
    )
    .await
    .expect("a full batch commits without waiting for the interval")
    .unwrap();
    assert!(matches!(out, WriteOutcome::Committed { rows: 10, .. }));
}

#[tokio::test]
async fn idle_and_big_writes_commit_at_once_and_small_ones_wait() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.path().to_owned(),
        multi_writer: false,
    });
    let config = TableConfig {
        commit_interval: Duration::from_secs(3600),
        early_commit_rows: std::num::NonZeroUsize::new(100).unwrap(),
        ..TableConfig::default()
    };
    let tables = Tables::open(&storage, &config, CancellationToken::new())
        .await
        .unwrap();
    let t = table("db.m");
    // A table that has not committed for an interval commits a small
    // write at once...
    let first = tokio::time::timeout(
        Duration::from_secs(60),
        tables.write(write(&t, sample_batch("m", "f", T0, 1, 5))),
    )
    .await
    .expect("a write to an idle table does not wait for commit_interval");
    assert!(matches!(first, Ok(WriteOutcome::Committed { rows: 5, .. })));
    // ...the next small write waits for company (the interval is an hour).
    let small = tables.write(write(&t, sample_batch("m", "s", T0, 1, 5)));
    tokio::pin!(small);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut small)
            .await
            .is_err(),
        "a write below early_commit_rows waits for commit_interval"
    );
    // A write of early_commit_rows rows does not, and the waiting one joins its commit.
    let big = tables.write(write(&t, sample_batch("m", "b", T0, 1, 100)));
    let (small, big) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(small, big) })
            .await
            .expect("a batch of early_commit_rows commits without waiting for the interval");
    let (
        WriteOutcome::Committed {
            version: a,
            rows: 5,
        },
        WriteOutcome::Committed {
            version: b,
            rows: 100,
        },
    ) = (small.unwrap(), big.unwrap())
    else {
        panic!("both writes commit");
    };
    assert_eq!(a, b, "one commit");
}

#[tokio::test]
async fn schema_evolves_and_conflicts_reject_only_the_bad_request() {
    let h = hub(300).await;
    let t = table("db.m");
    let base = reading("m", T0)
        .with_tag(tag("site"), "a")
        .with_field(field("v"), FieldValue::F64(1.0));
    h.tables.write(write(&t, batch_of(&[base]))).await.unwrap();

    let new_field = reading("m", T0 + 1)
        .with_tag(tag("site"), "a")
        .with_field(field("w"), FieldValue::I64(2));
    let new_tag = reading("m", T0 + 2)
        .with_tag(tag("room"), "r1")
        .with_field(field("v"), FieldValue::F64(3.0));
    let bad_type = reading("m", T0 + 3).with_field(field("v"), FieldValue::I64(4));
    let bad_role = reading("m", T0 + 4).with_field(field("site"), FieldValue::F64(5.0));
    let later_conflict = reading("m", T0 + 5).with_field(field("w"), FieldValue::Str("x".into()));
    let (a, b, c, d, e) = tokio::join!(
        h.tables.write(write(&t, batch_of(&[new_field]))),
        h.tables.write(write(&t, batch_of(&[new_tag]))),
        h.tables.write(write(&t, batch_of(&[bad_type]))),
        h.tables.write(write(&t, batch_of(&[bad_role]))),
        h.tables.write(write(&t, batch_of(&[later_conflict]))),
    );
    assert!(matches!(
        a.unwrap(),
        WriteOutcome::Committed { version: 1, .. }
    ));
    assert!(matches!(
        b.unwrap(),
        WriteOutcome::Committed { version: 1, .. }
    ));
    for (err, column) in [(c, "v"), (d, "site"), (e, "w")] {
        let err = err.unwrap_err();
        assert!(err.is_client_error());
        match &err {
            TableError::SchemaConflict { table, conflict } => {
                assert_eq!(table, "db.m");
                assert_eq!(conflict.column, column);
            }
            other => panic!("expected a schema conflict, got {other}"),
        }
        let text = err.to_string();
        assert!(text.contains("db.m") && text.contains(column), "{text}");
    }
    assert_eq!(
        query_i64(&h.tables, "SELECT count(*) FROM db.m")
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        query_i64(&h.tables, "SELECT sum(w) FROM db.m WHERE room IS NULL")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        query_i64(&h.tables, "SELECT count(*) FROM db.m WHERE room = 'r1'")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn rows_spanning_midnight_land_in_two_days() {
    let h = hub(20).await;
    let t = table("db.m");
    let before = reading("m", T0 - 1).with_field(field("v"), FieldValue::F64(1.0));
    let after = reading("m", T0).with_field(field("v"), FieldValue::F64(2.0));
    h.tables
        .write(write(&t, batch_of(&[before, after])))
        .await
        .unwrap();
    let n = query_i64(&h.tables, "SELECT count(DISTINCT day) FROM db.m")
        .await
        .unwrap();
    assert_eq!(n, 2);
    let n = query_i64(
        &h.tables,
        "SELECT count(*) FROM db.m WHERE day = DATE '2025-11-26'",
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    let dir = h.dir.path().join("tables/db/m");
    assert!(dir.join("day=2025-11-25").is_dir());
    assert!(dir.join("day=2025-11-26").is_dir());
}

#[tokio::test]
async fn invalid_data_is_rejected_alone() {
    let h = hub(300).await;
    let t = table("db.m");
    let too_big = reading("m", T0).with_field(field("n"), FieldValue::U64(u64::MAX));
    let reserved = reading("m", T0)
        .with_tag(tag("day"), "mon")
        .with_field(field("n"), FieldValue::U64(1));
    let fine = reading("m", T0).with_field(field("n"), FieldValue::U64(1 << 62));
    let (a, b, c) = tokio::join!(
        h.tables.write(write(&t, batch_of(&[too_big]))),
        h.tables.write(write(&t, batch_of(&[reserved]))),
        h.tables.write(write(&t, batch_of(&[fine]))),
    );
    assert!(matches!(a, Err(TableError::InvalidData(_))), "{a:?}");
    assert!(matches!(b, Err(TableError::InvalidData(_))), "{b:?}");
    assert!(matches!(c.unwrap(), WriteOutcome::Committed { .. }));
    let empty = WriteRequest {
        table: t.clone(),
        batches: vec![],
        origin: Origin::Write,
    };
    assert!(h.tables.write(empty).await.unwrap_err().is_client_error());
    assert_eq!(
        query_i64(&h.tables, "SELECT max(n) FROM db.m")
            .await
            .unwrap(),
        1 << 62
    );
}

#[tokio::test]
async fn shutdown_commits_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.path().to_owned(),
        multi_writer: false,
    });
    let shutdown = CancellationToken::new();
    let tables = Tables::open(&storage, &config(3_600_000), shutdown.clone())
        .await
        .unwrap();
    let t = table("db.m");
    let pending = tokio::spawn({
        let tables = tables.clone();
        let t = t.clone();
        async move {
            tables
                .write(write(&t, sample_batch("m", "s", T0, 1, 3)))
                .await
        }
    });
    // Wait until the batcher holds the request, without sleeping blind.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tables.pushed() == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    tables.wait_stopped().await;
    assert!(matches!(
        pending.await.unwrap().unwrap(),
        WriteOutcome::Committed { rows: 3, .. }
    ));
    assert!(matches!(
        tables
            .write(write(&t, sample_batch("m", "s", T0, 1, 1)))
            .await,
        Err(TableError::ShuttingDown)
    ));
}

#[tokio::test]
async fn conformance_on_local_fs() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig::Fs(config::FsConfig {
        path: dir.path().to_owned(),
        multi_writer: false,
    });
    conformance::run(&storage).await.unwrap();
}

#[test]
fn storage_config_parses() {
    let fs: StorageConfig = toml::from_str("").unwrap();
    assert_eq!(fs, StorageConfig::default());
    assert!(!fs.resolve().unwrap().multi_writer);
    let shared: StorageConfig =
        toml::from_str("backend = \"fs\"\npath = \"/tmp/lake\"\nmulti_writer = true").unwrap();
    assert!(shared.resolve().unwrap().multi_writer);
    let s3: StorageConfig = toml::from_str(
        r#"backend = "s3"
bucket = "lake"
prefix = "ferry/x"
endpoint = "http://127.0.0.1:9000"
access_key_id = "k"
secret_access_key = "s"
allow_http = true
multi_writer = true
request_timeout = "2s""#,
    )
    .unwrap();
    let r = s3.resolve().unwrap();
    assert_eq!(r.root, "s3://lake/ferry/x/");
    assert_eq!(r.options["timeout"], "2s");
    assert_eq!(r.options["aws_conditional_put"], "etag");
    assert_eq!(r.options["aws_virtual_hosted_style_request"], "false");
    assert!(r.multi_writer);
    let bad = toml::from_str::<StorageConfig>("backend = \"s3\"\nbucket = \"b\"\nbukket = 1");
    assert!(bad.is_err());
    let unsafe_multi: StorageConfig = toml::from_str(
        "backend = \"s3\"\nbucket = \"b\"\nconditional_put = \"disabled\"\nmulti_writer = true",
    )
    .unwrap();
    assert!(unsafe_multi.resolve().is_err());
    assert!(unsafe_multi.lacks_conditional_put());
    assert!(!s3.lacks_conditional_put());
    assert!(!StorageConfig::default().lacks_conditional_put());
    let az: StorageConfig = toml::from_str(
        "backend = \"azure\"\ncontainer = \"c\"\nconnection_string = \"AccountName=acc;AccountKey=a2V5;EndpointSuffix=core.windows.net\"",
    )
    .unwrap();
    let r = az.resolve().unwrap();
    assert_eq!(r.root, "az://c/");
    assert!(!r.options.contains_key("timeout"));
    assert_eq!(r.options["azure_storage_account_name"], "acc");
    assert_eq!(
        r.options["azure_storage_endpoint"],
        "https://acc.blob.core.windows.net"
    );
    let tables: TableConfig = toml::from_str("commit_interval = \"250ms\"").unwrap();
    assert_eq!(tables.commit_interval, Duration::from_millis(250));
}

#[test]
fn directory_names_round_trip() {
    for name in [
        "boiler",
        "my sensor",
        "a+b",
        "température",
        "x.y-z_w",
        "100%",
    ] {
        let enc = config::encode_segment(name);
        assert!(
            enc.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.+".contains(&b)),
            "{enc}"
        );
        assert_eq!(config::decode_segment(&enc).as_deref(), Some(name));
    }
    assert_eq!(config::encode_segment("my sensor"), "my+20sensor");
    assert_eq!(config::decode_segment("a+2"), None);
    assert_eq!(
        config::decode_segment("a+41"),
        None,
        "plain bytes are never encoded"
    );
}

/// `FERRY_CONFORMANCE_STORAGE='backend = "s3" ...' cargo test -p ferry-hub --lib
/// table::tests::conformance_from_env -- --ignored`: the conformance checks
/// against any `[storage]` section (moto, s3s-fs, Azurite).
#[tokio::test]
#[ignore = "needs FERRY_CONFORMANCE_STORAGE and a running store"]
async fn conformance_from_env() {
    let text = std::env::var("FERRY_CONFORMANCE_STORAGE").expect("FERRY_CONFORMANCE_STORAGE");
    let storage: StorageConfig = toml::from_str(&text).unwrap();
    conformance::run(&storage).await.unwrap();
}

/// Writes `plant.boiler` (tags, every field type, two days) under
/// `FERRY_SAMPLE_TABLES` for checks with other readers (Python `deltalake`).
#[tokio::test]
#[ignore = "needs FERRY_SAMPLE_TABLES"]
async fn write_sample_tables() {
    let path = std::env::var("FERRY_SAMPLE_TABLES").expect("FERRY_SAMPLE_TABLES");
    let storage = StorageConfig::Fs(config::FsConfig {
        path: path.into(),
        multi_writer: false,
    });
    let tables = Tables::open(&storage, &config(20), CancellationToken::new())
        .await
        .unwrap();
    let t = table("plant.boiler");
    let rows: Vec<Reading> = (0..4)
        .map(|i| {
            reading("boiler", T0 - 2 + i * 1_000_000_001)
                .with_tag(tag("site"), if i % 2 == 0 { "north" } else { "south" })
                .with_field(field("temp"), FieldValue::F64(20.0 + i as f64))
                .with_field(field("count"), FieldValue::U64(1 << 40))
                .with_field(field("delta"), FieldValue::I64(-i))
                .with_field(field("ok"), FieldValue::Bool(i % 2 == 0))
                .with_field(field("note"), FieldValue::Str(format!("n{i}")))
        })
        .collect();
    let seg = segment_request(&t, "gw-1", 1, batch_of(&rows));
    tables.write(seg).await.unwrap();
}

/// The encodings of the `time` column in every data file under `dir`.
fn time_encodings(dir: &std::path::Path) -> Vec<Vec<deltalake::parquet::basic::Encoding>> {
    use deltalake::parquet::file::reader::{FileReader, SerializedFileReader};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let reader =
                    SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
                let meta = reader.metadata();
                let time = meta
                    .file_metadata()
                    .schema_descr()
                    .columns()
                    .iter()
                    .position(|c| c.name() == "time")
                    .expect("a time column");
                for rg in meta.row_groups() {
                    out.push(rg.column(time).encodings().collect());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn commits_and_compaction_delta_encode_time() {
    use deltalake::parquet::basic::Encoding;
    let h = hub(20).await;
    let t = table("db.m");
    for site in ["a", "b", "c"] {
        h.tables
            .write(write(&t, sample_batch("m", site, T0, 1_000_000_000, 500)))
            .await
            .unwrap();
    }
    let check = |label: &str, files: usize| {
        let found = time_encodings(h.dir.path());
        assert_eq!(found.len(), files, "{label}: {found:?}");
        for e in found {
            assert!(e.contains(&Encoding::DELTA_BINARY_PACKED), "{label}: {e:?}");
            assert!(!e.contains(&Encoding::RLE_DICTIONARY), "{label}: {e:?}");
        }
    };
    check("commits", 3);
    let policy = compact::CompactionPolicy {
        target_file_size: 64 * 1024 * 1024,
        min_files: 2,
        settle: Duration::ZERO,
    };
    let report = h
        .tables
        .compact(&t, &policy, chrono::Utc::now())
        .await
        .unwrap();
    assert_eq!((report.files_removed, report.files_added), (3, 1));
    // The removed files stay on disk until a vacuum.
    check("commits and compaction", 4);
}
