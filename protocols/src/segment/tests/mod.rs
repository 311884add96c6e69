#![allow(clippy::unwrap_used)]

use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    Array, ArrayRef, BinaryArray, Float32Array, Float64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::file::metadata::{KeyValue, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use proptest::prelude::*;

use super::*;
use crate::batch::{ColumnRole, ReadingBatch, field_column, time_column};
use crate::{AgentId, DatabaseName, FieldKey, FieldType, FieldValue, Measurement, Reading, TagKey};

fn header() -> SegmentHeader {
    SegmentHeader {
        agent_id: AgentId::new("gw-01").unwrap(),
        sequence: SegmentSeq(7),
        first_reading_id: 100,
        last_reading_id: 199,
        database: DatabaseName::new("plant").unwrap(),
        measurement: Measurement::new("env").unwrap(),
    }
}

pub(crate) fn sample_readings(n: usize) -> Vec<Reading> {
    let m = Measurement::new("env").unwrap();
    (0..n)
        .map(|i| {
            let mut r = Reading::new(
                m.clone(),
                1_700_000_000_000_000_000 + (i as i64) * 10_000_000_000,
            )
            .with_tag(TagKey::new("host").unwrap(), format!("h{}", i % 3))
            .with_field(
                FieldKey::new("temp").unwrap(),
                FieldValue::F64(20.0 + i as f64 / 8.0),
            )
            .with_field(FieldKey::new("n").unwrap(), FieldValue::I64(i as i64 - 3));
            if i % 2 == 0 {
                r = r.with_tag(TagKey::new("room").unwrap(), "lab");
                r = r.with_field(FieldKey::new("ok").unwrap(), FieldValue::Bool(i % 4 == 0));
            } else {
                r = r.with_field(
                    FieldKey::new("note").unwrap(),
                    FieldValue::Str(format!("n{i}")),
                );
                r = r.with_field(
                    FieldKey::new("c").unwrap(),
                    FieldValue::U64(u64::MAX - i as u64),
                );
            }
            r
        })
        .collect()
}

fn sample_batch(n: usize) -> RecordBatch {
    let rs = sample_readings(n);
    ReadingBatch::from_readings(header().measurement, &rs)
        .unwrap()
        .to_record_batch()
        .unwrap()
}

fn sorted(mut rs: Vec<Reading>) -> Vec<Reading> {
    rs.sort_by_key(|r| format!("{r:?}"));
    rs
}

/// Rewrites a segment with `f` applied to its key-value metadata (the
/// `ferry.*` entries and `ARROW:schema`, which is written as is) and `g` to
/// its data (one batch).
fn rewrite(
    bytes: &[u8],
    f: impl FnOnce(&mut Vec<KeyValue>),
    g: impl FnOnce(RecordBatch) -> RecordBatch,
) -> Vec<u8> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(bytes)).unwrap();
    let mut kvs: Vec<KeyValue> = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter(|kv| kv.key.starts_with("ferry.") || kv.key == ARROW_SCHEMA)
        .cloned()
        .collect();
    f(&mut kvs);
    let schema = reader.schema().clone();
    let batches: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
    let batch = g(arrow_select::concat::concat_batches(&schema, &batches).unwrap());
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kvs))
        .build();
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut w = ArrowWriter::try_new_with_options(Vec::new(), batch.schema(), options).unwrap();
    w.write(&batch).unwrap();
    w.into_inner().unwrap()
}

/// Rewrites a segment with `f` applied to its key-value metadata (data unchanged).
fn with_kv(bytes: &[u8], f: impl FnOnce(&mut Vec<KeyValue>)) -> Vec<u8> {
    rewrite(bytes, f, |b| b)
}

/// Rewrites a segment with column `name` replaced by `field` and `array`,
/// without an `ARROW:schema` entry (`ferry.*` entries unchanged).
fn with_column(bytes: &[u8], name: &str, field: arrow_schema::Field, array: ArrayRef) -> Vec<u8> {
    rewrite(
        bytes,
        |kvs| kvs.retain(|kv| kv.key != ARROW_SCHEMA),
        |b| {
            let i = b.schema().index_of(name).unwrap();
            let mut fields: Vec<arrow_schema::Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            let mut columns = b.columns().to_vec();
            fields[i] = field;
            columns[i] = array;
            RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap()
        },
    )
}

const ARROW_SCHEMA: &str = "ARROW:schema";

/// A file the fuzzer found: its `ARROW:schema` entry makes arrow-ipc 59
/// panic ("Unexpected bitwidth and signed") when decoded.
const BAD_ARROW_SCHEMA_FILE: &[u8] =
    include_bytes!("testdata/arrow-schema-bad-int-bitwidth.parquet");

/// The poisonous `ARROW:schema` value of [`BAD_ARROW_SCHEMA_FILE`], read
/// without decoding it.
fn bad_arrow_schema() -> String {
    let md = ParquetMetaDataReader::new()
        .parse_and_finish(&Bytes::from_static(BAD_ARROW_SCHEMA_FILE))
        .unwrap();
    md.file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .find(|kv| kv.key == ARROW_SCHEMA)
        .and_then(|kv| kv.value.clone())
        .unwrap()
}

/// A valid segment whose `ARROW:schema` entry is `value`.
fn with_arrow_schema(rows: usize, value: &str) -> Vec<u8> {
    let bytes = write_segment(&header(), &sample_batch(rows)).unwrap();
    with_kv(&bytes, |kvs| set(kvs, ARROW_SCHEMA, value))
}

fn set(kvs: &mut [KeyValue], key: &str, value: &str) {
    for kv in kvs.iter_mut().filter(|kv| kv.key == key) {
        kv.value = Some(value.to_owned());
    }
}

#[test]
fn round_trip() {
    let readings = sample_readings(50);
    let rb = sample_batch(50);
    let bytes = write_segment(&header(), &rb).unwrap();
    let meta = read_segment_meta(&Bytes::from(bytes.clone())).unwrap();
    assert_eq!(meta.header, header());
    assert_eq!(meta.row_count, 50);
    assert_eq!(meta.format_version, FORMAT_VERSION);
    assert_eq!(meta.min_time_ns, readings[0].time_ns);
    assert_eq!(meta.max_time_ns, readings[49].time_ns);
    assert_eq!(meta.table_name(), "plant.env");
    let seg = read_segment(Bytes::from(bytes)).unwrap();
    assert_eq!(seg.meta, meta);
    assert_eq!(seg.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 50);
    assert_eq!(seg.batches[0].schema(), rb.schema());
    assert_eq!(sorted(seg.readings().unwrap()), sorted(readings));
}

#[test]
fn several_row_groups() {
    let rb = sample_batch(100);
    let opts = WriteOptions {
        max_row_group_rows: NonZeroUsize::new(7).unwrap(),
        zstd_level: 3,
    };
    let bytes = write_segment_with(&header(), &rb, &opts).unwrap();
    let plain = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone())).unwrap();
    assert_eq!(plain.metadata().num_row_groups(), 15);
    let seg = read_segment(Bytes::from(bytes)).unwrap();
    assert_eq!(
        sorted(seg.readings().unwrap()),
        sorted(sample_readings(100))
    );
}

#[test]
fn plain_parquet_reader_can_read_it() {
    let rb = sample_batch(20);
    let bytes = write_segment(&header(), &rb).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes)).unwrap();
    let md = builder.metadata().clone();
    let rg = md.row_group(0);
    assert_eq!(
        rg.column(0).compression(),
        parquet::basic::Compression::ZSTD(Default::default())
    );
    assert!(
        rg.column(0).statistics().is_some(),
        "statistics for Delta stats"
    );
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(batches, vec![rb]);
}

#[test]
fn writer_rejects_bad_input() {
    let rb = sample_batch(10);
    let mut h = header();
    h.first_reading_id = 500;
    assert!(matches!(
        write_segment(&h, &rb),
        Err(SegmentError::BadReadingRange { .. })
    ));
    assert!(matches!(
        write_segment(&header(), &rb.slice(0, 0)),
        Err(SegmentError::Empty)
    ));
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        time_column(),
        field_column(&FieldKey::new("v").unwrap(), FieldType::F64),
    ]));
    let unsorted = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampNanosecondArray::from(vec![2, 1]).with_timezone("UTC")),
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
        ],
    )
    .unwrap();
    assert!(matches!(
        write_segment(&header(), &unsorted),
        Err(SegmentError::NotSorted { row: 1 })
    ));
    let no_roles = RecordBatch::try_new(
        Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "x",
            arrow_schema::DataType::Float64,
            true,
        )])),
        vec![Arc::new(Float64Array::from(vec![1.0]))],
    )
    .unwrap();
    assert!(matches!(
        write_segment(&header(), &no_roles),
        Err(SegmentError::Schema(_))
    ));
}

fn good() -> Vec<u8> {
    write_segment(&header(), &sample_batch(30)).unwrap()
}

fn read(bytes: Vec<u8>) -> SegmentError {
    read_segment(Bytes::from(bytes)).unwrap_err()
}

#[test]
fn truncated_and_garbage() {
    let bytes = good();
    for cut in [
        0,
        3,
        11,
        12,
        bytes.len() / 2,
        bytes.len() - 9,
        bytes.len() - 1,
    ] {
        let err = read(bytes[..cut].to_vec());
        assert!(
            matches!(
                err,
                SegmentError::TooShort { .. }
                    | SegmentError::BadMagic { .. }
                    | SegmentError::Truncated { .. }
                    | SegmentError::Parquet(_)
            ),
            "cut {cut}: {err}"
        );
    }
    // Magic intact at both ends, but the tail of the file is missing.
    let mut tail_cut = bytes[..bytes.len() / 2].to_vec();
    tail_cut.extend_from_slice(&bytes[bytes.len() - 8..]);
    let _ = read(tail_cut); // any error, no panic
    let mut junk = b"PAR1".to_vec();
    junk.extend_from_slice(&[0xff; 64]);
    junk.extend_from_slice(b"PAR1");
    assert!(matches!(read(junk), SegmentError::Truncated { .. }));
}

#[test]
fn tampered_data_is_caught() {
    let bytes = good();
    let mut caught = 0;
    // Flip one byte at a time across the data pages (after the magic, before
    // the footer); every flip must give an error or the exact same rows.
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap()) as usize;
    let data_end = bytes.len() - 8 - footer_len;
    let original = sorted(
        read_segment(Bytes::from(bytes.clone()))
            .unwrap()
            .readings()
            .unwrap(),
    );
    for at in (4..data_end).step_by(3) {
        let mut b = bytes.clone();
        b[at] ^= 0x5a;
        match read_segment(Bytes::from(b)) {
            Err(_) => caught += 1,
            Ok(seg) => assert_eq!(sorted(seg.readings().unwrap()), original, "flip at {at}"),
        }
    }
    assert!(caught > 0);
}

#[test]
fn checksum_mismatch() {
    let bytes = with_kv(&good(), |kvs| set(kvs, keys::CHECKSUM, "00000000"));
    assert!(matches!(
        read(bytes),
        SegmentError::ChecksumMismatch { metadata: 0, .. }
    ));
}

#[test]
fn unknown_version_is_distinct() {
    let bytes = with_kv(&good(), |kvs| {
        set(kvs, keys::FORMAT_VERSION, "2");
        kvs.retain(|kv| kv.key != keys::AGENT_ID);
    });
    let err = read_segment_meta(&Bytes::from(bytes)).unwrap_err();
    assert!(matches!(
        err,
        SegmentError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    ));
    assert_eq!(
        err.to_string(),
        "unsupported segment format version 2 (this build reads version 1)"
    );
    let bytes = with_kv(&good(), |kvs| set(kvs, keys::FORMAT_VERSION, "one"));
    assert!(matches!(
        read(bytes),
        SegmentError::BadValue {
            key: keys::FORMAT_VERSION,
            ..
        }
    ));
}

#[test]
fn every_key_is_required() {
    for key in keys::ALL {
        let bytes = with_kv(&good(), |kvs| kvs.retain(|kv| kv.key != key));
        match read(bytes) {
            SegmentError::MissingKey { key: k } => assert_eq!(k, key),
            other => panic!("{key}: {other}"),
        }
    }
    let bytes = with_kv(&good(), |kvs| {
        kvs.push(KeyValue::new(keys::SEQUENCE.to_owned(), "8".to_owned()))
    });
    assert!(matches!(
        read(bytes),
        SegmentError::DuplicateKey {
            key: keys::SEQUENCE
        }
    ));
}

#[test]
fn bad_values_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (keys::AGENT_ID, "../etc", "ferry.agent_id"),
        (keys::DATABASE, "a/b", "ferry.database"),
        (keys::MEASUREMENT, "", "ferry.measurement"),
        (keys::SEQUENCE, "-1", "ferry.sequence"),
        (keys::SEQUENCE, "+7", "ferry.sequence"),
        (keys::FIRST_READING_ID, "007", "ferry.first_reading_id"),
        (keys::ROW_COUNT, "99999999999999999999", "ferry.row_count"),
        (keys::CHECKSUM, "ABCDEF01", "ferry.checksum"),
        (keys::MIN_TIME_NS, "1.5", "ferry.min_time_ns"),
    ];
    for (key, value, needle) in cases {
        let bytes = with_kv(&good(), |kvs| set(kvs, key, value));
        let err = read(bytes).to_string();
        assert!(err.contains(needle), "{key}={value}: {err}");
    }
    let bytes = with_kv(&good(), |kvs| set(kvs, keys::FIRST_READING_ID, "1000"));
    assert!(matches!(
        read(bytes),
        SegmentError::BadReadingRange {
            first: 1000,
            last: 199
        }
    ));
}

#[test]
fn counts_and_times_must_match_the_data() {
    let bytes = with_kv(&good(), |kvs| set(kvs, keys::ROW_COUNT, "31"));
    assert!(matches!(
        read(bytes),
        SegmentError::RowCountMismatch {
            metadata: 31,
            actual: 30,
            ..
        }
    ));
    let bytes = with_kv(&good(), |kvs| set(kvs, keys::ROW_COUNT, "0"));
    assert!(matches!(read(bytes), SegmentError::Empty));
    let bytes = with_kv(&good(), |kvs| set(kvs, keys::MIN_TIME_NS, "0"));
    assert!(matches!(
        read(bytes),
        SegmentError::TimeMismatch {
            key: keys::MIN_TIME_NS,
            ..
        }
    ));
    let bytes = with_kv(&good(), |kvs| {
        set(kvs, keys::MAX_TIME_NS, "9223372036854775807")
    });
    assert!(matches!(
        read(bytes),
        SegmentError::TimeMismatch {
            key: keys::MAX_TIME_NS,
            ..
        }
    ));
}

#[test]
fn plain_parquet_without_ferry_keys_is_rejected() {
    let rb = sample_batch(5);
    let mut w = ArrowWriter::try_new(Vec::new(), rb.schema(), None).unwrap();
    w.write(&rb).unwrap();
    let err = read(w.into_inner().unwrap());
    assert!(matches!(
        err,
        SegmentError::MissingKey {
            key: keys::FORMAT_VERSION
        }
    ));
}

/// Schema on read, hostile inputs, the fuzz corpus, property tests and the
/// pinned checksum encoding.
mod hostile;
