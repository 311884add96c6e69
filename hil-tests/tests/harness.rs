//! The test harness's own guarantees, where a broken one would hang or
//! mislead the whole suite rather than fail one test.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use ferry_hil_tests::{publish_lines_within, require_tool};

/// A `mosquitto_pub -l -q 1` whose broker goes away with messages
/// unacknowledged reconnects forever, and it used to share the test's
/// output: one left behind by a failed test kept `scripts/test.sh` from
/// ending. `publish_lines` must stop it, kill it and say so.
#[test]
fn a_publisher_whose_broker_went_away_is_killed_and_reported() {
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    // A "broker" that accepts one connection, answers CONNACK, takes the
    // first messages without acknowledging them, and goes away.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let broker = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        conn.write_all(&[0x20, 0x02, 0x00, 0x00]).expect("CONNACK");
        std::thread::sleep(Duration::from_millis(200));
        let _ = conn.read(&mut buf);
    });
    let lines: String = (0..100).map(|i| format!("m{i}\n")).collect();
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| {
        publish_lines_within(
            &pubber,
            port,
            "harness/t",
            &["-q", "1"],
            &lines,
            Duration::from_secs(3),
        );
    });
    broker.join().expect("broker");
    let message = outcome
        .expect_err("publish_lines must fail")
        .downcast::<String>()
        .map(|m| *m)
        .unwrap_or_default();
    assert!(
        message.contains("still running after 3s, killed"),
        "the reason: {message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing of it is left (pgrep -f matches the port in its arguments).
    let left = std::process::Command::new("pgrep")
        .args(["-f", &format!("mosquitto_pub -p {port} ")])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "mosquitto_pub still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

/// `free_port` hands out distinct ports outside the kernel's ephemeral
/// range, which `:0` binds and outgoing connections draw from.
#[test]
fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("ip_local_port_range");
    let bounds: Vec<u16> = range
        .split_whitespace()
        .map(|v| v.parse().expect("a port"))
        .collect();
    let ports: Vec<u16> = (0..200).map(|_| ferry_hil_tests::free_port()).collect();
    let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "no port twice");
    // This machine's range leaves room below it (Linux's default does).
    assert!(bounds[0] > 11_000, "ephemeral range {range}");
    for port in ports {
        assert!(
            (10_000..bounds[0]).contains(&port),
            "{port} is inside {range} or below 10000"
        );
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("still free");
    }
}
