//! Line mode end to end: a device process writes lines into a virtual serial
//! pair (socat); a real `ferry-agent` reads the other end and ships to a
//! real `ferry-hub`. Garbage, partial, over-long and non-UTF-8 lines are
//! counted and skipped; the port is unplugged (socat killed) mid-line and
//! plugged back on the same path. Every good line arrives exactly once.
//!
//! With `FERRY_SERIAL_DEVICE` and `FERRY_SERIAL_PEER` set (two wired
//! adapters), the same lines go over real hardware; the unplug step is then
//! skipped (a test cannot pull a cable).

use std::time::Duration;

use ferry_hil_tests::serial::{RawPort, SocatPair, serial_agent, serial_line};
use ferry_hil_tests::{query, start_hub, wait_until};

fn good(seq: u32) -> String {
    format!("dev-{},{seq},{}.25\n", seq % 3, seq * 2)
}

#[test]
fn every_good_line_arrives_once_through_garbage_and_an_unplug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(line) = serial_line(dir.path(), "ttyAgent", "ttyDevice") else {
        return;
    };
    let (agent_path, device_path, mut pair) = (line.agent, line.peer, line.pair);
    let hub = start_hub(dir.path(), false);
    let agent = serial_agent(
        dir.path(),
        hub.addr,
        &format!(
            r#"
[[serial.ports]]
name = "weather"
path = "{}"
mode = "lines"
database = "plant"
baud = 115200
reopen_min = "100ms"
reopen_max = "500ms"
max_line = "64 B"
[serial.ports.lines]
format = "csv"
measurement = "weather"
columns = ["station", "seq", "value"]
tag_columns = ["station"]
types = {{ seq = "i64" }}
tags = {{ line = "serial" }}
"#,
            agent_path.display()
        ),
    );
    agent.wait_connected("weather", 1);

    let mut device = RawPort::open(&device_path);
    let mut sent = 0u32;
    let mut write_good = |device: &mut RawPort, n: u32| {
        for _ in 0..n {
            device.write(good(sent).as_bytes());
            sent += 1;
        }
    };
    write_good(&mut device, 40);
    // Noise: garbage, a bad value, non-UTF-8, an over-long line, CRLF.
    device.write(b"\x00\x13garbage!!\n");
    device.write(b"dev-0,abc,1.0\n");
    device.write(b"dev-\xff\xfe,1,1\n");
    device.write(&[b'9'; 200]);
    device.write(b"\n");
    write_good(&mut device, 20);
    device.write(b"dev-1,999,\r\n"); // a missing value is a missing field: a good line
    let mut extra = 1;

    if let Some(pair) = pair.as_mut() {
        // Unplug mid-line, then plug back in on the same path.
        device.write(b"dev-2,1000,");
        std::thread::sleep(Duration::from_millis(300));
        drop(device);
        pair.kill();
        wait_until("the agent sees the unplug", Duration::from_secs(20), || {
            agent.port_status("weather")["connected"] == false
        });
        pair.restart();
        agent.wait_connected("weather", 2);
        device = RawPort::open(&device_path);
    }
    write_good(&mut device, 40);
    device.write(b"dev-0,1001,7.5");
    device.write(b"\n");
    extra += 1;

    let expected = u64::from(sent) + extra;
    let mut last = serde_json::Value::Null;
    wait_until(
        &format!("{expected} rows in plant.weather"),
        Duration::from_secs(60),
        || {
            last = query(hub.addr, None, "SELECT count(*) FROM plant.weather").unwrap_or_default();
            last["data"][0][0] == expected
        },
    );
    // Exactly once, with the values and tags as written.
    let rows = query(
        hub.addr,
        None,
        "SELECT count(DISTINCT seq), min(seq), max(seq), sum(value), count(value), \
         count(DISTINCT station), min(line) FROM plant.weather WHERE seq < 999",
    )
    .expect("query");
    let row = &rows["data"][0];
    let sum: f64 = (0..sent).map(|s| f64::from(s * 2) + 0.25).sum();
    assert_eq!(row[0], u64::from(sent), "{rows}");
    assert_eq!(row[1], 0, "{rows}");
    assert_eq!(row[2], u64::from(sent - 1), "{rows}");
    assert_eq!(row[3].as_f64(), Some(sum), "{rows}");
    assert_eq!(row[4], u64::from(sent), "{rows}");
    assert_eq!(row[5], 3, "{rows}");
    assert_eq!(row[6], "serial", "{rows}");
    let partial = query(
        hub.addr,
        None,
        "SELECT count(*) FROM plant.weather WHERE seq = 1000",
    )
    .expect("query");
    assert_eq!(
        partial["data"][0][0], 0,
        "the unplugged half line is not a reading"
    );

    let status = agent.port_status("weather");
    assert_eq!(status["readings"], expected, "{status}");
    assert_eq!(status["rejected"], 0, "{status}");
    assert_eq!(status["errors"]["decode"], 2, "{status}");
    assert_eq!(status["errors"]["encoding"], 1, "{status}");
    assert_eq!(status["errors"]["overlong"], 1, "{status}");
    if pair.is_some() {
        assert_eq!(status["errors"]["partial"], 1, "{status}");
        assert_eq!(status["opens"], 2, "{status}");
        let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
        assert_eq!(
            log.matches("serial port lost").count(),
            1,
            "the unplug is logged once:\n{log}"
        );
    }
}

#[test]
fn a_missing_port_is_retried_without_stopping_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path(), false);
    let path = dir.path().join("ttyLater");
    let agent = serial_agent(
        dir.path(),
        hub.addr,
        &format!(
            r#"
[[serial.ports]]
name = "late"
path = "{}"
mode = "lines"
database = "plant"
reopen_min = "100ms"
reopen_max = "200ms"
[serial.ports.lines]
format = "line-protocol"
"#,
            path.display()
        ),
    );
    wait_until(
        "status shows the port down",
        Duration::from_secs(10),
        || {
            let s = agent.port_status("late");
            s["connected"] == false && s["last_error"].is_string()
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert_eq!(
        log.matches("cannot open serial port").count(),
        1,
        "logged once, not per retry:\n{log}"
    );
    // The device appears; the agent opens it and reads.
    let Some(pair) = SocatPair::start(dir.path(), "ttyLater", "ttyLaterDev") else {
        return;
    };
    agent.wait_connected("late", 1);
    let mut device = RawPort::open(pair.path_b());
    device.write(b"boiler,site=a temp=71.5\n");
    wait_until("the reading in the lake", Duration::from_secs(30), || {
        query(hub.addr, None, "SELECT temp FROM plant.boiler")
            .is_some_and(|v| v["data"][0][0].as_f64() == Some(71.5))
    });
    // Metrics name the port.
    let (_, metrics) = ferry_hil_tests::http("GET", agent.http, "/metrics", &[], b"");
    assert!(
        metrics.contains("ferry_agent_serial_connected{port=\"late\"} 1"),
        "{metrics}"
    );
}
