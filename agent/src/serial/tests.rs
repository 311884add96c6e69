use std::collections::BTreeMap;
use std::time::Duration;

use ferry_protocols::lines::{LineDecoder, LineSpec};
use ferry_protocols::{DatabaseName, FieldValue};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::Ended;
use super::config::{Order, RegisterConfig, RegisterType, SlaveConfig, Table};
use super::lines::LineReader;
use super::modbus::Timing;
use super::modbus::map::{ReadPlan, decode_bits, decode_words, plan};
use super::status::SerialStatus;
use crate::ingest::Durability;
use crate::route::tests::Recorder;

fn register(toml_text: &str) -> RegisterConfig {
    toml::from_str(toml_text).expect("register")
}

fn value(toml_text: &str, words: &[u16]) -> FieldValue {
    decode_words(&register(toml_text), words, 0).expect("decodes")
}

#[test]
fn integer_types_and_word_and_byte_orders() {
    let base = "field = \"v\"\ntable = \"holding\"\naddress = 0\n";
    let t = |extra: &str, words: &[u16]| value(&format!("{base}{extra}"), words);
    assert_eq!(t("type = \"u16\"", &[0xFFFE]), FieldValue::I64(65534));
    assert_eq!(t("type = \"i16\"", &[0xFFFE]), FieldValue::I64(-2));
    assert_eq!(
        t("type = \"u32\"", &[0x0001, 0x0002]),
        FieldValue::I64(0x0001_0002)
    );
    assert_eq!(
        t("type = \"u32\"\nword_order = \"little\"", &[0x0001, 0x0002]),
        FieldValue::I64(0x0002_0001)
    );
    assert_eq!(
        t("type = \"u32\"\nbyte_order = \"little\"", &[0x0102, 0x0304]),
        FieldValue::I64(0x0201_0403)
    );
    assert_eq!(
        t(
            "type = \"i32\"\nword_order = \"little\"\nbyte_order = \"little\"",
            &[0xFEFF, 0xFFFF]
        ),
        FieldValue::I64(-2)
    );
    assert_eq!(
        t("type = \"u64\"", &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        FieldValue::U64(u64::MAX)
    );
    assert_eq!(
        t("type = \"i64\"", &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]),
        FieldValue::I64(-2)
    );
}

#[test]
fn floats_scale_offset_and_bits() {
    let base = "field = \"v\"\ntable = \"input\"\naddress = 0\n";
    let t = |extra: &str, words: &[u16]| value(&format!("{base}{extra}"), words);
    let [hi, lo] = [(21.5f32.to_bits() >> 16) as u16, 21.5f32.to_bits() as u16];
    assert_eq!(t("type = \"f32\"", &[hi, lo]), FieldValue::F64(21.5));
    assert_eq!(
        t("type = \"f32\"\nword_order = \"little\"", &[lo, hi]),
        FieldValue::F64(21.5)
    );
    let b = (-1.25f64).to_bits();
    let words = [
        (b >> 48) as u16,
        (b >> 32) as u16,
        (b >> 16) as u16,
        b as u16,
    ];
    assert_eq!(t("type = \"f64\"", &words), FieldValue::F64(-1.25));
    assert_eq!(
        t("type = \"i16\"\nscale = 0.1\noffset = -40.0", &[650]),
        FieldValue::F64(650.0 * 0.1 - 40.0)
    );
    assert_eq!(
        t("type = \"bool\"\nbit = 3", &[0b1000]),
        FieldValue::Bool(true)
    );
    assert_eq!(
        t("type = \"bool\"\nbit = 2", &[0b1000]),
        FieldValue::Bool(false)
    );
    // NaN is not a value; it is reported, not stored.
    let nan = f32::NAN.to_bits();
    let reg = register(&format!("{base}type = \"f32\""));
    assert!(decode_words(&reg, &[(nan >> 16) as u16, nan as u16], 0).is_err());
    // A short answer is an error, not a panic.
    assert!(decode_words(&reg, &[1], 0).is_err());
    assert_eq!(decode_bits(&[false, true], 1), Ok(FieldValue::Bool(true)));
    assert!(decode_bits(&[true], 3).is_err());
}

fn slave(registers: &[(&str, Table, u16, RegisterType)]) -> SlaveConfig {
    SlaveConfig {
        id: 1,
        poll_interval: Duration::from_secs(1),
        measurement: ferry_protocols::Measurement::new("m").expect("name"),
        tags: Default::default(),
        registers: registers
            .iter()
            .map(|(f, table, address, kind)| RegisterConfig {
                field: ferry_protocols::FieldKey::new(*f).expect("name"),
                table: *table,
                address: *address,
                kind: *kind,
                word_order: Order::Big,
                byte_order: Order::Big,
                scale: None,
                offset: None,
                bit: None,
                unit: None,
                measurement: None,
                tags: Default::default(),
            })
            .collect(),
    }
}

#[test]
fn contiguous_registers_share_a_request_and_gaps_do_not() {
    use RegisterType::*;
    use Table::*;
    let s = slave(&[
        ("c", Holding, 10, U16),
        ("a", Holding, 0, F32),
        ("b", Holding, 2, U32),
        ("d", Input, 4, I16),
        ("e", Coil, 0, Bool),
        ("f", Coil, 1, Bool),
        ("g", Holding, 124, U32),
        ("h", Holding, 126, U16),
    ]);
    let plans = plan(&s);
    let summary: Vec<(Table, u16, u16)> =
        plans.iter().map(|p| (p.table, p.start, p.count)).collect();
    assert_eq!(
        summary,
        vec![
            (Holding, 0, 4),
            (Holding, 10, 1),
            (Holding, 124, 3),
            (Input, 4, 1),
            (Coil, 0, 2),
        ]
    );
    // Requests never exceed 125 registers.
    let many: Vec<(String, Table, u16, RegisterType)> = (0..200)
        .map(|i| (format!("r{i}"), Holding, i, U16))
        .collect();
    let refs: Vec<(&str, Table, u16, RegisterType)> = many
        .iter()
        .map(|(n, t, a, k)| (n.as_str(), *t, *a, *k))
        .collect();
    let plans: Vec<ReadPlan> = plan(&slave(&refs));
    assert_eq!(
        plans.iter().map(|p| p.count).collect::<Vec<_>>(),
        vec![125, 75]
    );
}

#[test]
fn rtu_timing_follows_the_baud_rate() {
    let poll = super::config::PollSettings::default();
    let t = Timing::rtu(poll, 9600, 11);
    // 3.5 characters of 11 bits at 9600 baud.
    assert_eq!(t.silence.as_micros(), 4010);
    let fast = Timing::rtu(poll, 115_200, 10);
    assert_eq!(fast.silence, Duration::from_micros(1750));
}

#[tokio::test]
async fn line_mode_commits_good_lines_durably_and_counts_the_rest() {
    let spec: LineSpec = toml::from_str(
        "format = \"csv\"\nmeasurement = \"env\"\ncolumns = [\"dev\", \"t\"]\ntag_columns = [\"dev\"]",
    )
    .expect("spec");
    let decoder = LineDecoder::new(&spec).expect("valid");
    let database = DatabaseName::new("plant").expect("name");
    let mut reader = LineReader::new(decoder, database, 16);
    let status = SerialStatus::default();
    let port = status.port("p", "lines", "/dev/test".into());
    let buffer = Recorder::default();
    let stop = CancellationToken::new();
    let (mut device, mut agent_end) = tokio::io::duplex(64);
    let task = {
        let (buffer, port, stop) = (buffer.clone(), port.clone(), stop.clone());
        tokio::spawn(async move { reader.run(&mut agent_end, &buffer, &port, &stop).await })
    };
    device
        .write_all(b"a,1\r\n\xff\xfe\nbad\na,2\nway-too-long-line-here,3\na,3\npart")
        .await
        .expect("write");
    drop(device);
    let ended = task.await.expect("task");
    assert!(matches!(ended, Ended::Lost(_)), "{ended:?}");
    let got = buffer.readings.lock().expect("lock");
    let values: Vec<&FieldValue> = got.iter().map(|(i, _)| &i.reading.fields["t"]).collect();
    assert_eq!(
        values,
        vec![
            &FieldValue::F64(1.0),
            &FieldValue::F64(2.0),
            &FieldValue::F64(3.0)
        ]
    );
    assert!(got.iter().all(|(_, d)| *d == Durability::Durable));
    let times: Vec<i64> = got.iter().map(|(i, _)| i.reading.time_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {times:?}"
    );
    let snapshot = status.snapshot();
    let p = &snapshot["p"];
    assert_eq!(p.readings, 3);
    let expected: BTreeMap<&str, u64> = [
        ("decode", 1),
        ("encoding", 1),
        ("overlong", 1),
        ("partial", 1),
    ]
    .into();
    assert_eq!(p.errors, expected);
}

#[test]
fn serial_stamps_increase_but_follow_a_clock_step_back() {
    use super::stamp_after;
    assert_eq!(stamp_after(2_000, 1_000), 2_000);
    // Same instant or a slew: still strictly increasing.
    assert_eq!(stamp_after(1_000, 1_000), 1_001);
    assert_eq!(stamp_after(999_000_000, 1_000_000_000), 1_000_000_001);
    // A step back of an hour is followed.
    let last = 10_000_000_000_000;
    assert_eq!(
        stamp_after(last - 3_600_000_000_000, last),
        last - 3_600_000_000_000
    );
}
