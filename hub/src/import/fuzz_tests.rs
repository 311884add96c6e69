//! The import readers take bytes from the network: arbitrary and mutated
//! files must never panic, every input row must come out as a reading or
//! a rejection, and progress must only grow, up to the file's size. The
//! seeds in `hub/tests/import_corpus/` (odd CSV, line protocol and broken
//! Parquet files) are replayed here too.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_protocols::Precision;
use ferry_protocols::lines::TimeFormat;
use proptest::prelude::*;

use super::options::{Format, ImportOptions};
use super::source::{self, Chunk};

fn options(format: Format, delimiter: u8) -> ImportOptions {
    ImportOptions {
        format,
        database: "fuzz".to_owned(),
        measurement: (format != Format::Lp).then(|| "m".to_owned()),
        time_column: "time".to_owned(),
        time_format: TimeFormat::Auto,
        delimiter,
        skip_rows: 0,
        precision: Precision::Ns,
        tag_columns: vec![],
        types: BTreeMap::new(),
        ignore_columns: vec![],
        chunk_rows: 7,
    }
}

/// Reads `path` to the end; checks the invariants; answers (readings,
/// rejected) or the reader's error.
fn read_all(path: &Path, options: &ImportOptions) -> Result<(usize, usize), String> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut source = source::open(path, options, 256, 0)?;
    let (mut readings, mut rejected, mut last) = (0, 0, 0);
    loop {
        match source.next_chunk(options.chunk_rows)? {
            None => break,
            Some(Chunk {
                readings: r,
                rejected: j,
                bytes_done,
            }) => {
                assert!(
                    r.len() + j.len() <= options.chunk_rows.max(1) * 2,
                    "a chunk past its rows"
                );
                assert!(
                    bytes_done >= last,
                    "progress went back: {bytes_done} < {last}"
                );
                assert!(
                    bytes_done <= size,
                    "progress past the file: {bytes_done} > {size}"
                );
                for (_, reading) in &r {
                    assert!(!reading.fields.is_empty(), "a reading without fields");
                }
                last = bytes_done;
                readings += r.len();
                rejected += j.len();
            }
        }
    }
    if options.format != Format::Parquet {
        assert_eq!(last, size, "a file read to its end reports all its bytes");
    }
    Ok((readings, rejected))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn the_corpus_reads_without_panics() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import_corpus");
    let mut seen = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("lp") => Format::Lp,
            Some("parquet") => Format::Parquet,
            _ => continue,
        };
        let delimiter = if name.contains("semicolon") {
            b';'
        } else {
            b','
        };
        let _ = read_all(&path, &options(format, delimiter));
        seen += 1;
    }
    assert!(seen >= 9, "corpus files found: {seen}");
}

#[test]
fn known_odd_files_read_as_expected() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import_corpus");
    // BOM, CRLF, doubled quotes, a quoted newline: three good rows.
    let r = read_all(
        &corpus.join("csv-bom-crlf-quotes.csv"),
        &options(Format::Csv, b','),
    );
    assert_eq!(r, Ok((3, 0)));
    // Extra value, missing value (no field), empty line skipped, bad UTF-8.
    let r = read_all(
        &corpus.join("csv-ragged-utf8.csv"),
        &options(Format::Csv, b','),
    );
    assert_eq!(r, Ok((1, 3)));
    // SQL and RFC 3339 times; month 13 rejected.
    let r = read_all(
        &corpus.join("csv-semicolon.csv"),
        &options(Format::Csv, b';'),
    );
    assert_eq!(r, Ok((2, 1)));
    let r = read_all(
        &corpus.join("csv-empty-header.csv"),
        &options(Format::Csv, b','),
    );
    assert!(r.unwrap_err().contains("has no name"));
    for bad in [
        "parquet-empty-footer.parquet",
        "parquet-random.parquet",
        "parquet-magic-only.parquet",
    ] {
        let r = read_all(&corpus.join(bad), &options(Format::Parquet, b','));
        assert!(r.unwrap_err().contains("Parquet"), "{bad}");
    }
}

fn csv_mutations() -> impl Strategy<Value = Vec<u8>> {
    let good =
        "time,site,v,ok\n1704067200,a,1.5,true\n1704067201,b,2,false\n\"1704067202\",\"c,d\",3,t\n";
    (
        proptest::collection::vec((0usize..good.len(), any::<u8>()), 0..6),
        proptest::collection::vec(0usize..good.len(), 0..3),
    )
        .prop_map(move |(flips, cuts)| {
            let mut b = good.as_bytes().to_vec();
            for (at, byte) in flips {
                if at < b.len() {
                    b[at] = byte;
                }
            }
            for at in cuts {
                if at < b.len() {
                    b.remove(at);
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic_any_reader(bytes in proptest::collection::vec(any::<u8>(), 1..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "f", &bytes);
        for format in [Format::Csv, Format::Lp, Format::Parquet] {
            let _ = read_all(&p, &options(format, b','));
        }
    }

    #[test]
    fn mutated_csv_never_panics_and_progress_only_grows(bytes in csv_mutations()) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "f.csv", &bytes);
        let _ = read_all(&p, &options(Format::Csv, b','));
    }

    #[test]
    fn line_protocol_lines_are_each_a_reading_or_a_rejection(
        lines in proptest::collection::vec("[a-z]{1,3}(,t=[a-z])? v=[0-9i.]{0,3}( [0-9]{1,5})?", 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let body = lines.join("\n");
        let p = write(dir.path(), "f.lp", body.as_bytes());
        let (readings, rejected) = read_all(&p, &options(Format::Lp, b',')).unwrap();
        prop_assert_eq!(readings + rejected, lines.len());
    }
}
