//! Modbus end to end: a real `ferry-agent` polls a pymodbus simulator over a
//! virtual RTU bus (socat pair) and over TCP, and ships to a real
//! `ferry-hub`. The values in the lake must be exactly what the simulator
//! holds, for every register type, word order and byte order. A slave that
//! stops answering is marked dead without stalling the others and comes
//! back; CRC noise on the line is counted and never becomes a value; the
//! bus is unplugged mid-poll and recovers.
//!
//! With `FERRY_SERIAL_DEVICE` and `FERRY_SERIAL_PEER` set (two wired
//! RS-485 adapters), the RTU test runs the simulator on the peer adapter
//! instead of a socat pair; the noise and unplug steps are skipped.

use std::time::Duration;

use ferry_hil_tests::serial::{
    ModbusSim, NoiseRelay, SerialAgent, SocatPair, hardware_ports, serial_agent, serial_line,
};
use ferry_hil_tests::{HubProcess, free_port, query, start_hub, wait_until};
use serde_json::json;

/// The simulator's memory: every type and order the agent must decode.
fn sim_map() -> serde_json::Value {
    json!({ "slaves": {
        "1": {
            "hr": [
                54321,            // 0  u16
                0xFB2E,           // 1  i16 -1234
                0x1234, 0x5678,   // 2  u32 big: 0x12345678
                0x5678, 0x1234,   // 4  u32 word-little: 0x12345678
                0xFFFF, 0xFEFF,   // 6  i32 byte-little: -2
                0x41AC, 0x0000,   // 8  f32 big: 21.5
                0x0000, 0xC070,   // 10 f32 word-little: -3.75
                0x4093, 0x4A45, 0x6D5C, 0xFAAD, // 12 f64 big: 1234.5678
                0x0000, 0x0100, 0x0000, 0x0005, // 16 u64 big: 2^40 + 5
                0b1010,           // 20 bit field
                650               // 21 i16 * 0.1 - 40 = 25.0
            ],
            "ir": [7, 0xFFFE, 0x7960]   // u16 7, i32 -100000
        },
        "2": { "co": [1, 0, 1], "di": [0, 1] },
        "3": { "hr": [42] },
        "4": { "hr": [1] }
    }})
}

/// The slaves' register maps (shared by the RTU port and the TCP device).
fn slaves(table: &str) -> String {
    format!(
        r#"
[[{table}.slaves]]
id = 1
poll_interval = "200ms"
measurement = "meter"
tags = {{ meter = "m1" }}
registers = [
  {{ field = "u16", table = "holding", address = 0, type = "u16", unit = "V" }},
  {{ field = "i16", table = "holding", address = 1, type = "i16" }},
  {{ field = "u32_big", table = "holding", address = 2, type = "u32" }},
  {{ field = "u32_wl", table = "holding", address = 4, type = "u32", word_order = "little" }},
  {{ field = "i32_bl", table = "holding", address = 6, type = "i32", byte_order = "little" }},
  {{ field = "f32_big", table = "holding", address = 8, type = "f32" }},
  {{ field = "f32_wl", table = "holding", address = 10, type = "f32", word_order = "little" }},
  {{ field = "f64_big", table = "holding", address = 12, type = "f64" }},
  {{ field = "u64_big", table = "holding", address = 16, type = "u64" }},
  {{ field = "bit1", table = "holding", address = 20, type = "bool", bit = 1 }},
  {{ field = "bit2", table = "holding", address = 20, type = "bool", bit = 2 }},
  {{ field = "scaled", table = "holding", address = 21, type = "i16", scale = 0.1, offset = -40.0 }},
  {{ field = "count", table = "input", address = 0, measurement = "meter_inputs", tags = {{ bank = "b" }} }},
  {{ field = "delta", table = "input", address = 1, type = "i32", measurement = "meter_inputs", tags = {{ bank = "b" }} }},
]
[[{table}.slaves]]
id = 2
poll_interval = "200ms"
measurement = "valves"
registers = [
  {{ field = "v0", table = "coil", address = 0, type = "bool" }},
  {{ field = "v1", table = "coil", address = 1, type = "bool" }},
  {{ field = "v2", table = "coil", address = 2, type = "bool" }},
  {{ field = "in1", table = "discrete", address = 1, type = "bool" }},
]
[[{table}.slaves]]
id = 3
poll_interval = "200ms"
measurement = "tank"
registers = [
  {{ field = "level", table = "holding", address = 0 }},
  {{ field = "missing", table = "holding", address = 50 }},
]
[[{table}.slaves]]
id = 4
poll_interval = "200ms"
measurement = "refuser"
registers = [ {{ field = "missing", table = "holding", address = 50 }} ]
"#
    )
}

fn bus_settings() -> &'static str {
    "timeout = \"150ms\"\npacing = \"2ms\"\ndead_after = 2\ndead_retry = \"1s\"\nreopen_min = \"100ms\"\nreopen_max = \"500ms\"\n"
}

fn latest(hub: &HubProcess, sql: &str) -> serde_json::Value {
    query(hub.addr, None, sql).unwrap_or_default()["data"][0].clone()
}

/// Waits for the newest meter row and checks every decoded value.
fn assert_meter_values(hub: &HubProcess) {
    wait_until("meter rows in the lake", Duration::from_secs(60), || {
        latest(hub, "SELECT count(*) FROM plant.meter")[0]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    let row = latest(
        hub,
        "SELECT u16, i16, u32_big, u32_wl, i32_bl, f32_big, f32_wl, f64_big, u64_big, \
         bit1, bit2, scaled, meter FROM plant.meter ORDER BY time DESC LIMIT 1",
    );
    assert_eq!(
        row,
        json!([
            54321,
            -1234,
            0x1234_5678,
            0x1234_5678,
            -2,
            21.5,
            -3.75,
            1234.5678,
            1_099_511_627_781u64,
            true,
            false,
            25.0,
            "m1"
        ]),
        "every type and order decodes to what the simulator holds"
    );
    wait_until("input register rows", Duration::from_secs(30), || {
        latest(
            hub,
            "SELECT count, delta, bank FROM plant.meter_inputs ORDER BY time DESC LIMIT 1",
        ) == json!([7, -100000, "b"])
    });
    wait_until("valve rows", Duration::from_secs(30), || {
        latest(
            hub,
            "SELECT v0, v1, v2, in1 FROM plant.valves ORDER BY time DESC LIMIT 1",
        ) == json!([true, false, true, true])
    });
}

/// Mutes slave 3: it goes dead, and slaves 1 and 2 keep their pace.
fn assert_dead_slave_does_not_stall_the_bus(agent: &SerialAgent, sim: &ModbusSim, port: &str) {
    sim.mute(3);
    wait_until("slave 3 marked dead", Duration::from_secs(20), || {
        agent.port_status(port)["slaves"]["3"]["alive"] == false
    });
    let polls = |id: &str| {
        agent.port_status(port)["slaves"][id]["polls"]
            .as_u64()
            .unwrap_or(0)
    };
    let (one, two) = (polls("1"), polls("2"));
    std::thread::sleep(Duration::from_secs(3));
    // 200 ms interval: 15 polls in 3 s; a stalled bus would do far fewer.
    assert!(
        polls("1") - one >= 11,
        "slave 1 slowed down: {} polls",
        polls("1") - one
    );
    assert!(
        polls("2") - two >= 11,
        "slave 2 slowed down: {} polls",
        polls("2") - two
    );
    let status = agent.port_status(port);
    assert!(
        status["slaves"]["3"]["requests"]["timeout"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{status}"
    );
    // Dead: retried about once a second, not every 200 ms.
    let three = polls("3");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        polls("3") - three <= 3,
        "a dead slave is polled at dead_retry"
    );
    sim.unmute(3);
    wait_until("slave 3 alive again", Duration::from_secs(20), || {
        agent.port_status(port)["slaves"]["3"]["alive"] == true
    });
    // Address 50 is not in slave 3's table: an exception, counted, while
    // its other register is still read.
    let status = agent.port_status(port);
    assert!(
        status["slaves"]["3"]["requests"]["exception"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{status}"
    );
    assert!(status["slaves"]["3"]["last_value_ms"].is_i64(), "{status}");
    // A slave that answers every request with an exception is alive.
    let four = &status["slaves"]["4"];
    assert!(
        four["requests"]["exception"].as_u64().unwrap_or(0) >= 3,
        "{status}"
    );
    assert_eq!(four["alive"], true, "{status}");
}

#[test]
fn modbus_rtu_reads_every_type_survives_a_dead_slave_and_an_unplug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(line) = serial_line(dir.path(), "ttyBus", "ttySim") else {
        return;
    };
    let (agent_path, sim_path, mut pair) = (line.agent, line.peer, line.pair);
    let Some(sim) = ModbusSim::rtu(&sim_path, 19200, &sim_map()) else {
        return;
    };
    let hub = start_hub(dir.path(), false);
    let agent = serial_agent(
        dir.path(),
        hub.addr,
        &format!(
            "[[serial.ports]]\nname = \"bus\"\npath = \"{}\"\nmode = \"modbus-rtu\"\ndatabase = \"plant\"\nbaud = 19200\nparity = \"none\"\n{}{}",
            agent_path.display(),
            bus_settings(),
            slaves("serial.ports")
        ),
    );
    agent.wait_connected("bus", 1);
    assert_meter_values(&hub);

    // Live values: a change in the device reaches the lake.
    sim.set(1, "hr", 0, 111);
    wait_until("the new u16 value", Duration::from_secs(30), || {
        latest(
            &hub,
            "SELECT u16 FROM plant.meter ORDER BY time DESC LIMIT 1",
        ) == json!([111])
    });

    assert_dead_slave_does_not_stall_the_bus(&agent, &sim, "bus");

    if let Some(pair) = pair.as_mut() {
        // Unplug in the middle of the poll cycle, and plug back in.
        pair.kill();
        wait_until("the agent sees the unplug", Duration::from_secs(20), || {
            agent.port_status("bus")["connected"] == false
        });
        pair.restart();
        agent.wait_connected("bus", 2);
        let before = latest(&hub, "SELECT count(*) FROM plant.meter")[0]
            .as_u64()
            .unwrap_or(0);
        sim.set(1, "hr", 0, 222);
        wait_until(
            "polling resumes after the replug",
            Duration::from_secs(30),
            || {
                latest(
                    &hub,
                    "SELECT u16 FROM plant.meter ORDER BY time DESC LIMIT 1",
                ) == json!([222])
                    && latest(&hub, "SELECT count(*) FROM plant.meter")[0]
                        .as_u64()
                        .unwrap_or(0)
                        > before
            },
        );
    }
    let status = agent.port_status("bus");
    assert_eq!(status["slaves"]["1"]["units"]["u16"], "V", "{status}");
    assert!(status["slaves"]["1"]["last_value_ms"].is_i64(), "{status}");
}

#[test]
fn crc_noise_is_counted_and_never_becomes_a_value() {
    if hardware_ports().is_some() {
        eprintln!("SKIPPED: noise injection needs the virtual bus");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(agent_side) = SocatPair::start(dir.path(), "ttyBus", "ttyRelayA") else {
        return;
    };
    let Some(sim_side) = SocatPair::start(dir.path(), "ttyRelayB", "ttySim") else {
        return;
    };
    let Some(sim) = ModbusSim::rtu(sim_side.path_b(), 19200, &sim_map()) else {
        return;
    };
    let Some(relay) = NoiseRelay::start(agent_side.path_b(), sim_side.path_a(), 0.25, 0.05) else {
        return;
    };
    let hub = start_hub(dir.path(), false);
    let agent = serial_agent(
        dir.path(),
        hub.addr,
        &format!(
            "[[serial.ports]]\nname = \"noisy\"\npath = \"{}\"\nmode = \"modbus-rtu\"\ndatabase = \"plant\"\nbaud = 19200\n{}{}",
            agent_side.path_a().display(),
            bus_settings().replace("dead_after = 2", "dead_after = 50"),
            slaves("serial.ports")
        ),
    );
    agent.wait_connected("noisy", 1);
    wait_until(
        "CRC errors counted and rows stored",
        Duration::from_secs(60),
        || {
            let s = agent.port_status("noisy");
            let crc: u64 = ["1", "2", "3"]
                .iter()
                .map(|id| s["slaves"][id]["requests"]["crc"].as_u64().unwrap_or(0))
                .sum();
            let rows = latest(&hub, "SELECT count(*) FROM plant.meter")[0]
                .as_u64()
                .unwrap_or(0);
            crc >= 3 && rows >= 10
        },
    );
    let stats = relay.stats();
    assert!(stats["corrupted"].as_u64().unwrap_or(0) > 0, "{stats}");
    // Not one corrupted value got through: every stored row is exact.
    let wrong = latest(
        &hub,
        "SELECT count(*) FROM plant.meter WHERE u16 <> 54321 OR i16 <> -1234 \
         OR u32_big <> 305419896 OR f32_big <> 21.5 OR f64_big <> 1234.5678",
    );
    assert_eq!(wrong, json!([0]), "corrupted values reached the lake");
    drop(sim);
}

#[test]
fn modbus_tcp_uses_the_same_register_maps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let Some(sim) = ModbusSim::tcp(port, &sim_map()) else {
        return;
    };
    let hub = start_hub(dir.path(), false);
    let agent = serial_agent(
        dir.path(),
        hub.addr,
        &format!(
            "[[modbus_tcp]]\nname = \"plc\"\naddress = \"127.0.0.1:{port}\"\ndatabase = \"plant\"\n{}{}",
            bus_settings(),
            slaves("modbus_tcp")
        ),
    );
    agent.wait_connected("plc", 1);
    assert_meter_values(&hub);
    assert_dead_slave_does_not_stall_the_bus(&agent, &sim, "plc");
    let status = agent.port_status("plc");
    assert_eq!(status["kind"], "modbus-tcp", "{status}");
}
