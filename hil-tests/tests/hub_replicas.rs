//! Two writer hubs and a read replica over one lake (`storage.multi_writer`,
//! `replica.role = "reader"`): a table directory, a bucket on moto (S3)
//! and a container on Azurite (Azure Blob).
//!
//! - The reader answers queries and refuses every kind of write with a 403
//!   that says it is a read replica.
//! - An agent that lists the reader first among its `uplink.hub_urls`
//!   moves on to a writer; `kill -9` of that writer mid-stream moves it to
//!   the other; the reader sees every reading exactly once.
//! - Staleness: a row a writer acknowledged is in the reader's answers to
//!   every query that starts `replica.max_staleness` later. How long it
//!   took to appear (polled every 10 ms) is printed: the measured lag.
//! - `/api/v1/instance` on the reader reports its role, bound and lag.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_hil_tests::census::{backlog_empty, expect_census, readings};
use ferry_hil_tests::shared_hubs::{Lake, Role};
use ferry_hil_tests::stores;
use ferry_hil_tests::{
    agent_status, free_port, http, publish_lines, query, require_tool, spawn_agent, wait_for_port,
    wait_until,
};

fn max_seq(hub: SocketAddr) -> Option<i64> {
    query(hub, None, "SELECT max(seq) FROM plant.lag")?["data"][0][0].as_i64()
}

fn write_seq(hub: SocketAddr, seq: i64) {
    let (status, body) = http(
        "POST",
        hub,
        "/api/v1/write/line-protocol?db=plant",
        &[],
        format!("lag seq={seq}i").as_bytes(),
    );
    assert!(status < 300, "write of seq {seq}: {status} {body}");
}

#[test]
fn on_a_local_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_writers_and_a_reader(&Lake::fs(dir.path()), "fs", 20);
}

#[test]
fn on_moto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::moto(dir.path(), "lake") else {
        return;
    };
    two_writers_and_a_reader(&Lake::on(dir.path(), &store), "moto", 6);
}

#[test]
fn on_azurite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::azurite(dir.path(), "lake") else {
        return;
    };
    two_writers_and_a_reader(&Lake::on(dir.path(), &store), "azurite", 6);
}

/// One store at a time: each run has six processes, an agent and a
/// publisher on two cores, and timing of its own to measure.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The checks of the module docs on `lake`, with `lag_writes` rows for the
/// staleness check.
fn two_writers_and_a_reader(lake: &Lake<'_>, store: &str, lag_writes: i64) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let Some(pubber) = require_tool("mosquitto_pub", "apt-get install mosquitto-clients") else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let [a, b, r] = [0; 3].map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
    let staleness = Duration::from_millis(1000);
    let mut hub_a = lake.launch("hub-a", a, Role::Writer, 0);
    let _hub_b = lake.launch("hub-b", b, Role::Writer, 0);
    let _reader = lake.launch("reader", r, Role::Reader(staleness), 0);

    // The reader refuses writes, with the reason, before anything else.
    write_seq(a, 0);
    for (method, path, body) in [
        ("POST", "/api/v1/write/line-protocol?db=plant", "lag seq=1i"),
        ("POST", "/api/v2/write?bucket=plant", "lag seq=1i"),
        ("POST", "/api/v1/segments", ""),
        ("POST", "/api/v1/segments/batch", ""),
        (
            "POST",
            "/api/v1/import/csv?db=plant&measurement=lag",
            "time,seq\n",
        ),
        (
            "POST",
            "/api/v1/delete",
            r#"{"database":"plant","measurement":"lag"}"#,
        ),
        ("POST", "/api/v1/compaction/run", ""),
        ("POST", "/api/v1/retention/run", ""),
        ("POST", "/api/v1/continuous_queries", "{}"),
        ("POST", "/api/v1/alerts", "{}"),
    ] {
        let (status, text) = http(method, r, path, &[], body.as_bytes());
        assert_eq!(status, 403, "{method} {path} on the reader: {text}");
        assert!(text.contains("read replica"), "{method} {path}: {text}");
    }
    let (status, text) = http("GET", r, "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(
        text.contains("ferry_hub_replica_refused_total 10"),
        "the refusals are counted:\n{text}"
    );
    wait_until("the reader to see seq 0", Duration::from_secs(10), || {
        max_seq(r) == Some(0)
    });

    // Staleness: a row acknowledged by a writer is in every reader answer
    // that starts max_staleness later; the time it took to appear is the lag.
    let mut lags = Vec::new();
    for seq in 1..=lag_writes {
        let writer = if seq % 2 == 0 { a } else { b };
        write_seq(writer, seq);
        let acked = Instant::now();
        while max_seq(r) != Some(seq) && acked.elapsed() < staleness {
            std::thread::sleep(Duration::from_millis(10));
        }
        lags.push(acked.elapsed());
        let wait = staleness.saturating_sub(acked.elapsed());
        std::thread::sleep(wait + Duration::from_millis(20));
        assert_eq!(
            max_seq(r),
            Some(seq),
            "seq {seq} (acknowledged by {writer}) is not in the reader's answer {staleness:?} later"
        );
    }
    lags.sort();
    let (status, text) = http("GET", r, "/api/v1/instance", &[], b"");
    assert_eq!(status, 200, "{text}");
    let instance: serde_json::Value = serde_json::from_str(&text).expect("instance json");
    assert_eq!(instance["role"], "reader", "{instance}");
    assert_eq!(instance["replica_max_staleness_seconds"], 1.0, "{instance}");
    let lag = instance["replica_lag_seconds"].as_f64().expect("a lag");
    assert!((0.0..=1.0).contains(&lag), "{instance}");
    let (_, text) = http("GET", a, "/api/v1/instance", &[], b"");
    assert!(text.contains(r#""role":"writer""#), "{text}");

    // An agent that lists the reader first uploads to a writer; kill -9 of
    // that writer moves it to the other; the reader sees every reading once.
    let mqtt = free_port();
    let status = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"gw-replicas\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [[routes]]\ntopic = \"replicas/{{device}}\"\ndatabase = \"plant\"\nmeasurement = \"stream\"\n\
             [segment]\nmax_rows = 40\nmax_age = \"100ms\"\n\
             [uplink]\nhub_urls = [\"http://{r}\", \"http://{a}\", \"http://{b}\"]\n\
             timeout = \"5s\"\nbackoff_initial = \"50ms\"\nbackoff_max = \"300ms\"\n\
             [http]\nlisten = \"{status}\"\n",
            dir.join("agent").display()
        ),
    )
    .expect("agent.toml");
    let mut agent = spawn_agent(&config, mqtt, &dir.join("agent.log"));
    // Its status server, which the checks below read, is up.
    wait_for_port(status, Duration::from_secs(30));
    const BATCHES: u64 = 30;
    const BATCH: u64 = 40;
    let publisher = std::thread::spawn(move || {
        for i in 0..BATCHES {
            publish_lines(
                &pubber,
                mqtt,
                "replicas/dev1",
                &["-q", "1"],
                &readings(i * BATCH..(i + 1) * BATCH),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let agent_log = dir.join("agent.log");
    let mut on = |url: SocketAddr| {
        assert!(
            agent.is_running(),
            "the agent exited:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        agent_status(status)["uplink"]["hub"] == format!("http://{url}")
    };
    wait_until("the agent on writer A", Duration::from_secs(30), || on(a));
    hub_a.kill();
    wait_until("the agent on writer B", Duration::from_secs(30), || on(b));
    publisher.join().expect("publisher");
    wait_until("the backlog to drain", Duration::from_secs(60), || {
        backlog_empty(status)
    });
    expect_census(r, "plant.stream", BATCHES * BATCH);
    expect_census(b, "plant.stream", BATCHES * BATCH);
    eprintln!(
        "replicas on {store}: reader lag after a writer's ack ({lag_writes} writes, polled every 10 ms, max_staleness {staleness:?}): \
         min {:?}, median {:?}, max {:?}; {} readings once each via the reader; {:.1?} in all",
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1],
        BATCHES * BATCH,
        started.elapsed()
    );
}
