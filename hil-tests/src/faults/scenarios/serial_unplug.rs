//! Scenario 8: a Modbus RTU bus unplugged and replugged again and again in
//! the middle of poll cycles (a slave polled every 20 ms, so the bus is
//! almost always mid-exchange when the socat pair dies).
//!
//! The oracle for a serial source: every reading the agent counted as
//! committed (`serial.<port>.readings`) is in the lake exactly once (one
//! row per poll, distinct timestamps), with the simulator's exact values;
//! nothing else is.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::faults::oracle::{Verdict, scalar};
use crate::faults::{Rng, RssSampler, Scale, Summary};
use crate::serial::{ModbusSim, SocatPair, serial_agent};
use crate::{start_hub, wait_until};

pub fn serial_unplug(scale: Scale) -> Summary {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pair = SocatPair::start(dir.path(), "ttyBus", "ttySim")
        .unwrap_or_else(|| panic!("serial-unplug needs socat"));
    let sim = ModbusSim::rtu(
        pair.path_b(),
        19200,
        &json!({ "slaves": { "1": { "hr": [4242, 7] } } }),
    )
    .unwrap_or_else(|| panic!("serial-unplug needs pymodbus"));
    let hub = start_hub(dir.path(), false);
    let agent = serial_agent(
        dir.path(),
        hub.addr,
        &format!(
            "[[serial.ports]]\nname = \"bus\"\npath = \"{}\"\nmode = \"modbus-rtu\"\ndatabase = \"plant\"\nbaud = 19200\ntimeout = \"150ms\"\nreopen_min = \"50ms\"\nreopen_max = \"300ms\"\n\
             [[serial.ports.slaves]]\nid = 1\npoll_interval = \"20ms\"\nmeasurement = \"unplug\"\n\
             registers = [ {{ field = \"a\", table = \"holding\", address = 0, type = \"u16\" }}, {{ field = \"b\", table = \"holding\", address = 1, type = \"u16\" }} ]\n",
            pair.path_a().display()
        ),
    );
    let rss = RssSampler::start();
    rss.watch(agent.peer.id());
    agent.wait_connected("bus", 1);
    let mut rng = Rng::from_env("serial-unplug");
    let unplugs = scale.count(8, 10);
    let end = Instant::now() + scale.duration(Duration::ZERO);
    let mut done = 0u64;
    while done < unplugs || Instant::now() < end {
        std::thread::sleep(rng.between(Duration::from_millis(300), Duration::from_millis(1500)));
        pair.kill();
        wait_until("the agent sees the unplug", Duration::from_secs(20), || {
            agent.port_status("bus")["connected"] == false
        });
        std::thread::sleep(rng.between(Duration::ZERO, Duration::from_millis(500)));
        pair.restart();
        done += 1;
        agent.wait_connected("bus", done + 1);
    }
    // Freeze the source: a muted slave produces no more readings.
    std::thread::sleep(Duration::from_millis(500));
    sim.mute(1);
    std::thread::sleep(Duration::from_millis(500));
    let status = agent.port_status("bus");
    let produced = status["readings"].as_u64().unwrap_or(0);
    let rejected = status["rejected"].as_u64().unwrap_or(0);
    let table = "plant.unplug";
    wait_until(
        "every committed poll in the lake",
        Duration::from_secs(60),
        || scalar(hub.addr, &format!("SELECT count(*) FROM {table}")).unwrap_or(0) >= produced,
    );
    let rows = scalar(hub.addr, &format!("SELECT count(*) FROM {table}")).unwrap_or(0);
    let distinct = scalar(
        hub.addr,
        &format!("SELECT count(DISTINCT time) FROM {table}"),
    )
    .unwrap_or(0);
    let wrong = scalar(
        hub.addr,
        &format!("SELECT count(*) FROM {table} WHERE a <> 4242 OR b <> 7"),
    )
    .unwrap_or(u64::MAX);
    let verdict = Verdict {
        acked: produced,
        delivered: distinct.min(produced),
        duplicates: rows - distinct,
        lost: produced.saturating_sub(distinct),
        unknown: distinct.saturating_sub(produced),
        wrong_values: wrong,
        maybe_stored: 0,
        documented_drops: rejected,
    };
    let summary = Summary {
        scenario: "serial-unplug".to_owned(),
        verdict,
        faults: done,
        max_agent_rss_mb: rss.max_mb(),
        duration: started.elapsed(),
        notes: vec![
            format!("unplugs={done}"),
            format!("opens={}", status["opens"]),
            format!("polls={}", status["slaves"]["1"]["polls"]),
            format!("requests={}", status["slaves"]["1"]["requests"]).replace(' ', ""),
        ],
    };
    summary.report();
    assert_eq!(rejected, 0, "the buffer refused serial readings: {summary}");
    summary.assert_exact();
    summary
}
