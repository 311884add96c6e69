//! Serial lines: arbitrary bytes, cut into arbitrary chunks, go through the
//! line framer and then every line decoder. Nothing may panic; every line
//! the framer yields is within `max_line` and holds no `\n`; the framer's
//! output does not depend on how the bytes were chunked; every decoded
//! reading has a field.

use crate::lines::{LineDecoder, LineEvent, LineFramer, LineSpec};

fn decoders() -> Vec<LineDecoder> {
    let specs = [
        r#"{"format":"line-protocol","tags":{"port":"p"}}"#,
        r#"{"format":"json","measurement":"m","tag_columns":["id"],"time_column":"t","types":{"n":"i64"}}"#,
        r#"{"format":"csv","measurement":"m","columns":["t","id","v","_","b"],"tag_columns":["id"],"time_column":"t","types":{"b":"bool"}}"#,
        r#"{"format":"regex","measurement":"m","pattern":"^(?P<id>\\w+)=(?P<v>[-0-9.e]+)(?: @(?P<t>\\S+))?$","tag_columns":["id"]}"#,
    ];
    specs
        .iter()
        .map(|s| {
            let spec: LineSpec = serde_json::from_str(s).expect("a valid spec");
            LineDecoder::new(&spec).expect("a valid spec")
        })
        .collect()
}

/// Runs the `serial_line` fuzz target's checks on one input.
pub fn check(data: &[u8]) {
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(head % 64) + 1;
    let step = usize::from(head / 64) * 7 + 1;

    let mut whole = LineFramer::new(max_line);
    let mut expected = Vec::new();
    whole.push(body, &mut expected);

    let mut chunked = LineFramer::new(max_line);
    let mut events = Vec::new();
    for chunk in body.chunks(step) {
        chunked.push(chunk, &mut events);
    }
    assert_eq!(events, expected, "framing depends on chunking");
    assert_eq!(whole.pending(), chunked.pending());

    let decoders = decoders();
    for event in &events {
        let LineEvent::Line(line) = event else {
            continue;
        };
        assert!(line.len() <= max_line);
        assert!(!line.contains(&b'\n'));
        for d in &decoders {
            if let Ok(readings) = d.decode(line, 1) {
                for r in readings {
                    assert!(!r.fields.is_empty());
                }
            }
        }
    }
}
