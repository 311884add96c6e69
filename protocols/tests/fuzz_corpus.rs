//! Replays every committed fuzz corpus file through its target's checks, so a
//! regression on any input the fuzzer kept fails the ordinary test suite.

use std::path::Path;

use ferry_protocols::fuzz_checks;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{target}: {} fails", path.display());
        count += 1;
    }
    assert!(
        count >= 5,
        "{target}: only {count} corpus files in {}",
        dir.display()
    );
}

#[test]
fn line_protocol_corpus() {
    replay("line_protocol", fuzz_checks::line_protocol::check);
}

#[test]
fn msgpack_corpus() {
    replay("msgpack", fuzz_checks::msgpack::check);
}

#[test]
fn json_corpus() {
    replay("json", fuzz_checks::json::check);
}

#[test]
fn topic_template_corpus() {
    replay("topic_template", fuzz_checks::topic_template::check);
}

#[test]
fn segment_corpus() {
    replay("segment", fuzz_checks::segment::check);
}

#[test]
fn serial_line_corpus() {
    replay("serial_line", fuzz_checks::serial_line::check);
}

#[test]
fn segment_batch_corpus() {
    replay("segment_batch", fuzz_checks::segment_batch::check);
}
