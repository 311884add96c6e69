//! The agent under `Type=notify` with `WatchdogSec`: the test plays
//! systemd's side of the protocol (a datagram socket in `NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`), and checks `READY=1` once the broker listens,
//! `WATCHDOG=1` at half the watchdog period, and `STOPPING=1` on SIGTERM.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_hil_tests::{Peer, free_port, wait_for_port, workspace_bin};

fn receive(sock: &UnixDatagram, within: Duration) -> Option<String> {
    sock.set_read_timeout(Some(within)).expect("timeout");
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn ready_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let mqtt = free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
id = "gw-notify"
data_dir = "{}"
[mqtt]
listen = "127.0.0.1:{mqtt}"
[uplink]
hub_url = "http://127.0.0.1:1"
[http]
listen = "127.0.0.1:{}"
"#,
            dir.path().join("agent").display(),
            free_port()
        ),
    )
    .expect("agent.toml");
    let started = Instant::now();
    let mut agent = Peer::spawn(
        "ferry-agent",
        Command::new(workspace_bin("ferry-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000"),
        &dir.path().join("agent.log"),
    );
    let ready = receive(&sock, Duration::from_secs(30)).expect("READY=1 within 30 s");
    assert_eq!(ready, "READY=1");
    // Ready means serving: the broker accepts connections now.
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], mqtt)),
        Duration::from_secs(1),
    );

    // WATCHDOG_USEC = 400 ms: a ping about every 200 ms.
    let window = Instant::now();
    let mut pings = 0;
    while window.elapsed() < Duration::from_secs(2) {
        let msg = receive(&sock, Duration::from_secs(1)).expect("a watchdog ping within 1 s");
        assert_eq!(msg, "WATCHDOG=1");
        pings += 1;
    }
    assert!((6..=14).contains(&pings), "{pings} pings in 2 s");

    let pid = agent.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let mut stopping = false;
    while let Some(msg) = receive(&sock, Duration::from_secs(5)) {
        if msg == "STOPPING=1" {
            stopping = true;
            break;
        }
        assert_eq!(msg, "WATCHDOG=1");
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.is_running() {
        assert!(
            Instant::now() < deadline,
            "the agent did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("ready after {:?}", started.elapsed());
}

#[test]
fn no_watchdog_pings_for_another_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-notify2\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{}\"\n[uplink]\nhub_url = \"http://127.0.0.1:1\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            dir.path().join("agent").display(),
            free_port(),
            free_port()
        ),
    )
    .expect("agent.toml");
    let _agent = Peer::spawn(
        "ferry-agent",
        Command::new(workspace_bin("ferry-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "400000")
            // The watchdog belongs to another PID (e.g. a wrapper script).
            .env("WATCHDOG_PID", "1"),
        &dir.path().join("agent.log"),
    );
    let ready = receive(&sock, Duration::from_secs(30)).expect("READY=1 within 30 s");
    assert_eq!(ready, "READY=1");
    assert_eq!(receive(&sock, Duration::from_secs(1)), None);
}
