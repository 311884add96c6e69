//! Two writer hubs and a read replica over one lake (`storage.multi_writer`,
//! `replica.role = "reader"`): a table directory, a bucket on moto (S3)
//! and a container on Azurite (Azure Blob).
//!
//! Auth is on: writer A prints the bootstrap admin token, and B and the
//! reader get it, like every token, through the shared metadata log.
//!
//! - The reader answers queries and refuses every kind of write with a 403
//!   that says it is a read replica.
//! - A write token created on B is accepted by A, and a read token created
//!   on A by the reader, each within its `replica.max_staleness` (2 s on the
//!   writers, 1 s on the reader; the times are printed).
//! - Two agents upload with the token made on B. Agent 1 lists the reader
//!   first among its `uplink.hub_urls`, moves on to writer A, and `kill -9`
//!   of A mid-stream moves it to B. Agent 2 is killed with `kill -9`
//!   mid-stream and restarted. Every reading either agent acknowledged is
//!   in the lake exactly once, seen through the reader and through B.
//! - Staleness: a row a writer acknowledged is in the reader's answers to
//!   every query that starts `replica.max_staleness` later. How long it
//!   took to appear (polled every 10 ms) is printed: the measured lag.
//! - `/api/v1/instance` on the reader reports its role, bound and lag.
//! - The fleet view (`GET /api/v1/agents`) on the reader, which no agent
//!   uploads to, lists both agents with every row they uploaded through
//!   the writers (`replica.fleet_interval = 500ms`).
//! - Maintenance lease (`replica.lease_ttl = 1s`): one writer holds it;
//!   when A, the holder, is killed with `kill -9`, B takes it over (the
//!   time printed). On a loaded machine A's renewals can be later than
//!   the ttl and B takes it over from a live A; then B must still hold it
//!   after the kill.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_hil_tests::census::{backlog_empty, expect_census, readings};
use ferry_hil_tests::shared_hubs::{Lake, Role};
use ferry_hil_tests::stores;
use ferry_hil_tests::{
    agent_status, free_port, http, publish_lines, query, require_tool, spawn_agent, wait_for_port,
    wait_until,
};

fn max_seq(hub: SocketAddr, token: &str) -> Option<i64> {
    query(hub, Some(token), "SELECT max(seq) FROM plant.lag")?["data"][0][0].as_i64()
}

fn try_write_seq(hub: SocketAddr, token: &str, seq: i64) -> (u16, String) {
    http(
        "POST",
        hub,
        "/api/v1/write/line-protocol?db=plant",
        &[("Authorization", &format!("Bearer {token}"))],
        format!("lag seq={seq}i").as_bytes(),
    )
}

fn write_seq(hub: SocketAddr, token: &str, seq: i64) {
    let (status, body) = try_write_seq(hub, token, seq);
    assert!(status < 300, "write of seq {seq}: {status} {body}");
}

/// Whether `hub` reports holding the maintenance lease.
fn holds_lease(hub: SocketAddr) -> bool {
    let (_, text) = http("GET", hub, "/metrics", &[], b"");
    text.contains("ferry_hub_maintenance_lease_held 1")
}

fn create_token(hub: SocketAddr, admin: &str, name: &str, role: &str) -> String {
    let (status, body) = http(
        "POST",
        hub,
        "/api/v1/auth/tokens",
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "application/json"),
        ],
        format!(r#"{{"name": "{name}", "role": "{role}"}}"#).as_bytes(),
    );
    assert_eq!(status, 201, "token {name} on {hub}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// How long until `ok` holds, polled every 10 ms; fails past `bound`.
fn time_until(what: &str, bound: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    t.elapsed()
}

/// An agent config: id, MQTT port, status address, measurement, hubs, token.
fn agent_config(
    dir: &std::path::Path,
    id: &str,
    mqtt: u16,
    status: SocketAddr,
    hubs: &[SocketAddr],
    token: &str,
) -> std::path::PathBuf {
    let config = dir.join(format!("{id}.toml"));
    let urls = hubs
        .iter()
        .map(|h| format!("\"http://{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"{id}\"\ndata_dir = \"{}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n\
             [[routes]]\ntopic = \"replicas/{{device}}\"\ndatabase = \"plant\"\nmeasurement = \"{id}\"\n\
             [segment]\nmax_rows = 40\nmax_age = \"100ms\"\n\
             [uplink]\nhub_urls = [{urls}]\ntoken = \"{token}\"\n\
             timeout = \"5s\"\nbackoff_initial = \"50ms\"\nbackoff_max = \"300ms\"\n\
             [http]\nlisten = \"{status}\"\n",
            dir.join(id).display()
        ),
    )
    .expect("agent config");
    config
}

#[test]
fn on_a_local_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    two_writers_and_a_reader(&Lake::fs(dir.path()).with_auth(), "fs", 20);
}

#[test]
fn on_moto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::moto(dir.path(), "lake") else {
        return;
    };
    two_writers_and_a_reader(&Lake::on(dir.path(), &store).with_auth(), "moto", 6);
}

#[test]
fn on_azurite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::azurite(dir.path(), "lake") else {
        return;
    };
    two_writers_and_a_reader(&Lake::on(dir.path(), &store).with_auth(), "azurite", 6);
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
    let admin = lake.admin_token("hub-a", 0);
    let _hub_b = lake.launch("hub-b", b, Role::Writer, 0);
    let _reader = lake.launch("reader", r, Role::Reader(staleness), 0);

    // The reader refuses writes, with the reason, before anything else.
    write_seq(a, &admin, 0);
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

    // Tokens made on one hub work on the others within max_staleness.
    let gateways = create_token(b, &admin, "gateways", "write");
    // The writers keep the default replica.max_staleness, 2 s.
    let write_on_a = time_until("B's write token on A", Duration::from_secs(2), || {
        try_write_seq(a, &gateways, 0).0 < 300
    });
    let dash = create_token(a, &admin, "dashboard", "read");
    let read_on_r = time_until("A's read token on the reader", staleness, || {
        max_seq(r, &dash) == Some(0)
    });
    let (status, text) = http("GET", r, "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(
        text.contains("ferry_hub_shared_meta_applied_total"),
        "the reader counts what it applied:\n{text}"
    );

    // Staleness: a row acknowledged by a writer is in every reader answer
    // that starts max_staleness later; the time it took to appear is the lag.
    let mut lags = Vec::new();
    for seq in 1..=lag_writes {
        let writer = if seq % 2 == 0 { a } else { b };
        write_seq(writer, &gateways, seq);
        let acked = Instant::now();
        while max_seq(r, &dash) != Some(seq) && acked.elapsed() < staleness {
            std::thread::sleep(Duration::from_millis(10));
        }
        lags.push(acked.elapsed());
        let wait = staleness.saturating_sub(acked.elapsed());
        std::thread::sleep(wait + Duration::from_millis(20));
        assert_eq!(
            max_seq(r, &dash),
            Some(seq),
            "seq {seq} (acknowledged by {writer}) is not in the reader's answer {staleness:?} later"
        );
    }
    lags.sort();
    let bearer = format!("Bearer {admin}");
    let (status, text) = http(
        "GET",
        r,
        "/api/v1/instance",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(status, 200, "{text}");
    let instance: serde_json::Value = serde_json::from_str(&text).expect("instance json");
    assert_eq!(instance["role"], "reader", "{instance}");
    assert_eq!(instance["replica_max_staleness_seconds"], 1.0, "{instance}");
    let lag = instance["replica_lag_seconds"].as_f64().expect("a lag");
    assert!((0.0..=1.0).contains(&lag), "{instance}");
    let (_, text) = http(
        "GET",
        a,
        "/api/v1/instance",
        &[("Authorization", &bearer)],
        b"",
    );
    assert!(text.contains(r#""role":"writer""#), "{text}");

    // Two agents with the token made on B. Agent 1 lists the reader first,
    // uploads to A, and kill -9 of A moves it to B. Agent 2 is killed and
    // restarted mid-stream.
    let [mqtt1, mqtt2] = [0; 2].map(|_| free_port());
    let [status1, status2] = [0; 2].map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())));
    let config1 = agent_config(dir, "agent1", mqtt1, status1, &[r, a, b], &gateways);
    let config2 = agent_config(dir, "agent2", mqtt2, status2, &[b, a], &gateways);
    let mut agent1 = spawn_agent(&config1, mqtt1, &dir.join("agent1.log"));
    let mut agent2 = spawn_agent(&config2, mqtt2, &dir.join("agent2-0.log"));
    // Their status servers, which the checks below read, are up.
    wait_for_port(status1, Duration::from_secs(30));
    wait_for_port(status2, Duration::from_secs(30));
    const BATCHES: u64 = 30;
    const BATCH: u64 = 40;
    let pubber1 = pubber.clone();
    let publisher = std::thread::spawn(move || {
        for i in 0..BATCHES {
            publish_lines(
                &pubber1,
                mqtt1,
                "replicas/dev1",
                &["-q", "1"],
                &readings(i * BATCH..(i + 1) * BATCH),
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let agent_log = dir.join("agent1.log");
    let mut on = |url: SocketAddr| {
        assert!(
            agent1.is_running(),
            "agent 1 exited:\n{}",
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
        agent_status(status1)["uplink"]["hub"] == format!("http://{url}")
    };
    wait_until("agent 1 on writer A", Duration::from_secs(30), || on(a));
    // Agent 2: the first third, kill -9 right after the last
    // acknowledgement (its segments still to seal or upload), a restart,
    // and the rest.
    let mut takeover = None;
    for i in 0..BATCHES {
        if i == BATCHES / 3 {
            agent2.kill();
            agent2 = spawn_agent(&config2, mqtt2, &dir.join("agent2-1.log"));
            wait_for_port(status2, Duration::from_secs(30));
        }
        if i == BATCHES / 2 {
            // A, started first, normally holds it. On a loaded machine a
            // renewal can be late by more than the 1 s ttl, and B rightly
            // takes over from a live A; the kill then finds B holding it.
            wait_until(
                "one writer holding the lease",
                Duration::from_secs(5),
                || holds_lease(a) != holds_lease(b),
            );
            let a_held = holds_lease(a);
            hub_a.kill();
            let killed_at = Instant::now();
            takeover = Some(std::thread::spawn(move || {
                while !holds_lease(b) && killed_at.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                (a_held, killed_at.elapsed())
            }));
        }
        publish_lines(
            &pubber,
            mqtt2,
            "replicas/dev2",
            &["-q", "1"],
            &readings(i * BATCH..(i + 1) * BATCH),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until("agent 1 on writer B", Duration::from_secs(30), || on(b));
    // The lease: B takes it within lease_ttl (1 s) and a renewal period
    // or two after A went silent.
    let (a_held, takeover) = takeover.expect("A was killed").join().expect("poller");
    assert!(
        holds_lease(b) && takeover < Duration::from_secs(3),
        "B holds the lease {takeover:?} after A's kill (A held it until then: {a_held})"
    );
    let takeover = if a_held {
        format!("B held the maintenance lease {takeover:?} after A's kill -9")
    } else {
        "B had taken the maintenance lease before A's kill -9".to_owned()
    };
    publisher.join().expect("publisher");
    for status in [status1, status2] {
        wait_until("the backlog to drain", Duration::from_secs(60), || {
            backlog_empty(status)
        });
    }
    for table in ["plant.agent1", "plant.agent2"] {
        expect_census(r, Some(&dash), table, BATCHES * BATCH);
        expect_census(b, Some(&admin), table, BATCHES * BATCH);
    }
    // The reader's fleet view: agent 2 uploaded only to B, which publishes
    // its agents; agent 1's rows through A count until A's last publish.
    let fleet = |id: &str| -> serde_json::Value {
        let (status, text) = http(
            "GET",
            r,
            "/api/v1/agents",
            &[("Authorization", &format!("Bearer {dash}"))],
            b"",
        );
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        v["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|g| g["id"] == id).cloned())
            .unwrap_or_default()
    };
    wait_until("the reader's fleet view", Duration::from_secs(10), || {
        fleet("agent2")["rows_received"] == BATCHES * BATCH
            && fleet("agent1")["rows_received"].as_u64() > Some(0)
    });
    eprintln!(
        "replicas on {store}: reader lag after a writer's ack ({lag_writes} writes, polled every 10 ms, max_staleness {staleness:?}): \
         min {:?}, median {:?}, max {:?}; a token made on B worked on A after {write_on_a:?}, one made on A on the reader after {read_on_r:?}; \
         {takeover} (lease_ttl 1s, polled every 10 ms); \
         {} readings from each of 2 agents once each via the reader; {:.1?} in all",
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1],
        BATCHES * BATCH,
        started.elapsed()
    );
}
