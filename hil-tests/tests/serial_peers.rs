//! The serial peers themselves (`ferry_hil_tests::serial`): the socat pair,
//! the pymodbus slave simulator and the noisy relay. The agent's serial and
//! Modbus tests trust them, so these check them with hand-made bytes: a
//! Modbus frame here is built byte by byte, not by a Modbus library.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ferry_hil_tests::free_port;
use ferry_hil_tests::serial::{ModbusSim, NoiseRelay, RawPort, SocatPair};
use serde_json::json;

/// Modbus CRC-16: reflected polynomial 0xA001, initial value 0xFFFF; sent
/// low byte first.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// An RTU frame: id, PDU, CRC (low byte first).
fn rtu(id: u8, pdu: &[u8]) -> Vec<u8> {
    let mut frame = vec![id];
    frame.extend_from_slice(pdu);
    let crc = crc16(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame
}

/// A read request PDU (functions 1 to 4): function, start, count.
fn read_pdu(function: u8, start: u16, count: u16) -> Vec<u8> {
    let mut pdu = vec![function];
    pdu.extend_from_slice(&start.to_be_bytes());
    pdu.extend_from_slice(&count.to_be_bytes());
    pdu
}

/// The registers of a function 3/4 RTU answer, after checking its id,
/// function, byte count and CRC.
fn registers(answer: &[u8], id: u8, function: u8) -> Vec<u16> {
    assert!(answer.len() >= 5, "short answer {answer:02x?}");
    let (body, crc) = answer.split_at(answer.len() - 2);
    assert_eq!(
        crc,
        crc16(body).to_le_bytes(),
        "bad CRC in answer {answer:02x?}"
    );
    assert_eq!(body[0], id, "answer from another id: {answer:02x?}");
    assert_eq!(body[1], function, "not a normal answer: {answer:02x?}");
    assert_eq!(usize::from(body[2]), body.len() - 3, "byte count");
    body[3..]
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect()
}

const WAIT: Duration = Duration::from_secs(3);

fn map() -> serde_json::Value {
    json!({"slaves": {
        "1": {"hr": [100, 200, 300, 0xFFFF, 0x4148, 0x0000],
              "ir": [7, 8, 9],
              "co": [1, 0, 1, 1, 0, 0, 0, 0, 1, 1],
              "di": [0, 1]},
        "2": {"hr": [42], "ir": [4242]}
    }})
}

#[test]
fn crc16_matches_the_modbus_reference() {
    // Read 1 holding register at 0 from slave 1, from the Modbus spec tables.
    assert_eq!(rtu(1, &read_pdu(3, 0, 1)), [1, 3, 0, 0, 0, 1, 0x84, 0x0A]);
}

#[test]
fn socat_pair_carries_bytes_both_ways_and_comes_back_after_an_unplug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut pair) = SocatPair::start(dir.path(), "ttyA", "ttyB") else {
        return;
    };
    let all: Vec<u8> = (0..=255).collect();
    let mut a = RawPort::open(pair.path_a());
    let mut b = RawPort::open(pair.path_b());
    a.write(&all);
    assert_eq!(b.read_n(256, WAIT), all, "a -> b is not transparent");
    b.write(b"\r\n\x03\x11\x13\x7f\x00ok");
    assert_eq!(a.read_n(9, WAIT), b"\r\n\x03\x11\x13\x7f\x00ok", "b -> a");
    assert!(a.read_for(Duration::from_millis(100)).is_empty(), "no echo");

    pair.kill();
    assert!(!pair.is_running());
    for p in [pair.path_a(), pair.path_b()] {
        assert!(
            std::fs::symlink_metadata(p).is_err(),
            "{} is still there after the unplug",
            p.display()
        );
    }
    drop((a, b));

    pair.restart();
    assert!(pair.is_running());
    let mut a = RawPort::open(pair.path_a());
    let mut b = RawPort::open(pair.path_b());
    b.write(b"again");
    assert_eq!(a.read_n(5, WAIT), b"again");
    a.write(&all);
    assert_eq!(b.read_n(256, WAIT), all);
}

#[test]
fn modbus_sim_answers_rtu_reads_with_what_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pair) = SocatPair::start(dir.path(), "master", "slave") else {
        return;
    };
    let mut port = RawPort::open(pair.path_a());
    let Some(sim) = ModbusSim::rtu(pair.path_b(), 19200, &map()) else {
        return;
    };

    // Function 3, holding registers 0..6 of slave 1: 01 03 00 00 00 06 CRC.
    let request = rtu(1, &read_pdu(3, 0, 6));
    assert_eq!(request[..6], [0x01, 0x03, 0x00, 0x00, 0x00, 0x06]);
    port.write(&request);
    let answer = port.read_n(5 + 12, WAIT);
    assert_eq!(registers(&answer, 1, 3), [100, 200, 300, 0xFFFF, 0x4148, 0]);
    // Byte for byte: 01 03 0C 00 64 00 C8 01 2C FF FF 41 48 00 00 CRC.
    assert_eq!(
        answer[..15],
        [
            0x01, 0x03, 0x0C, 0x00, 0x64, 0x00, 0xC8, 0x01, 0x2C, 0xFF, 0xFF, 0x41, 0x48, 0x00,
            0x00
        ]
    );

    // An address in the middle, and the input registers (function 4).
    port.write(&rtu(1, &read_pdu(3, 2, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 1, 3), [300]);
    port.write(&rtu(1, &read_pdu(4, 0, 3)));
    assert_eq!(registers(&port.read_n(11, WAIT), 1, 4), [7, 8, 9]);
    port.write(&rtu(2, &read_pdu(4, 0, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 2, 4), [4242]);

    // Coils 0..10 (function 1): 1,0,1,1,0,0,0,0 | 1,1 -> 0x0D 0x03.
    port.write(&rtu(1, &read_pdu(1, 0, 10)));
    assert_eq!(port.read_n(7, WAIT), rtu(1, &[0x01, 0x02, 0x0D, 0x03]));
    // Discrete inputs 0..2 (function 2): 0,1 -> 0x02.
    port.write(&rtu(1, &read_pdu(2, 0, 2)));
    assert_eq!(port.read_n(6, WAIT), rtu(1, &[0x02, 0x01, 0x02]));

    // Past the end of the table: exception 02, illegal data address.
    port.write(&rtu(1, &read_pdu(3, 5, 2)));
    assert_eq!(port.read_n(5, WAIT), rtu(1, &[0x83, 0x02]));
    // Slave 2 has no coils at all.
    port.write(&rtu(2, &read_pdu(1, 0, 1)));
    assert_eq!(port.read_n(5, WAIT), rtu(2, &[0x81, 0x02]));

    // Values changed by the test are what the next read sees.
    sim.set(1, "hr", 1, 0xBEEF);
    sim.set(1, "co", 1, 1);
    sim.set_many(2, "hr", 0, &[7]);
    assert_eq!(sim.get(1, "hr", 0, 3), [100, 0xBEEF, 300]);
    port.write(&rtu(1, &read_pdu(3, 1, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 1, 3), [0xBEEF]);
    port.write(&rtu(1, &read_pdu(1, 0, 4)));
    assert_eq!(port.read_n(6, WAIT), rtu(1, &[0x01, 0x01, 0x0F]));
    port.write(&rtu(2, &read_pdu(3, 0, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 2, 3), [7]);

    // A partial frame followed by silence is dropped, as a real slave's
    // receiver does after 3.5 character times: the next request is answered.
    port.write(&[0x01, 0x03, 0x55]);
    std::thread::sleep(Duration::from_millis(100));
    port.write(&rtu(2, &read_pdu(3, 0, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 2, 3), [7]);

    let stats = sim.stats();
    assert_eq!(stats["served"]["1"], 8, "{stats}");
    assert_eq!(stats["served"]["2"], 4, "{stats}");
    assert_eq!(stats["exceptions"]["1"], 1, "{stats}");
    assert!(port.read_for(Duration::from_millis(50)).is_empty());
}

#[test]
fn a_muted_slave_is_silent_while_the_others_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(pair) = SocatPair::start(dir.path(), "master", "slave") else {
        return;
    };
    let mut port = RawPort::open(pair.path_a());
    let Some(sim) = ModbusSim::rtu(pair.path_b(), 9600, &map()) else {
        return;
    };
    let silence = Duration::from_millis(400);

    sim.mute(1);
    port.write(&rtu(1, &read_pdu(3, 0, 1)));
    assert_eq!(port.read_for(silence), b"", "muted slave 1 answered");
    port.write(&rtu(2, &read_pdu(3, 0, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 2, 3), [42]);

    // An id that is not on the bus is silent too (pymodbus alone would
    // answer it with exception 04).
    port.write(&rtu(9, &read_pdu(3, 0, 1)));
    assert_eq!(port.read_for(silence), b"", "absent slave 9 answered");

    sim.unmute(1);
    port.write(&rtu(1, &read_pdu(3, 0, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 1, 3), [100]);

    let stats = sim.stats();
    assert_eq!(stats["dropped"]["1"], 1, "{stats}");
    assert_eq!(stats["unknown"]["9"], 1, "{stats}");
    assert_eq!(sim.served(1), 1);
    assert_eq!(sim.served(2), 1);
}

#[test]
fn modbus_sim_opens_its_port_again_after_an_unplug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut pair) = SocatPair::start(dir.path(), "master", "slave") else {
        return;
    };
    let mut port = RawPort::open(pair.path_a());
    let Some(sim) = ModbusSim::rtu(pair.path_b(), 19200, &map()) else {
        return;
    };
    port.write(&rtu(2, &read_pdu(3, 0, 1)));
    assert_eq!(registers(&port.read_n(7, WAIT), 2, 3), [42]);

    pair.kill();
    drop(port);
    std::thread::sleep(Duration::from_millis(300));
    pair.restart();
    let mut port = RawPort::open(pair.path_a());
    let mut answer = Vec::new();
    ferry_hil_tests::wait_until("the simulator back on the port", WAIT * 2, || {
        port.write(&rtu(2, &read_pdu(3, 0, 1)));
        answer = port.read_n(7, Duration::from_millis(200));
        answer.len() == 7
    });
    assert_eq!(registers(&answer, 2, 3), [42]);
    assert_eq!(sim.stats()["reopens"], 1, "{}", sim.stderr());
}

#[test]
fn modbus_sim_answers_an_mbap_request_over_tcp() {
    let port = free_port();
    let Some(sim) = ModbusSim::tcp(port, &map()) else {
        return;
    };
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the simulator");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");

    // MBAP: transaction 0x1234, protocol 0, length 6, unit 1; then the PDU.
    let mut request = vec![0x12, 0x34, 0x00, 0x00, 0x00, 0x06, 0x01];
    request.extend(read_pdu(3, 1, 2));
    conn.write_all(&request).expect("send");
    let mut answer = [0u8; 13];
    conn.read_exact(&mut answer).expect("answer");
    assert_eq!(
        answer,
        [
            0x12, 0x34, 0x00, 0x00, 0x00, 0x07, 0x01, 0x03, 0x04, 0x00, 0xC8, 0x01, 0x2C
        ]
    );

    // Unit 2, input registers.
    let mut request = vec![0x00, 0x02, 0x00, 0x00, 0x00, 0x06, 0x02];
    request.extend(read_pdu(4, 0, 1));
    conn.write_all(&request).expect("send");
    let mut answer = [0u8; 11];
    conn.read_exact(&mut answer).expect("answer");
    assert_eq!(
        answer,
        [
            0x00, 0x02, 0x00, 0x00, 0x00, 0x05, 0x02, 0x04, 0x02, 0x10, 0x92
        ]
    );

    // A muted unit leaves the request unanswered.
    sim.mute(2);
    conn.write_all(&request).expect("send");
    conn.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    assert!(conn.read(&mut byte).is_err(), "muted unit 2 answered");
    assert_eq!(sim.served(1), 1);
    assert_eq!(sim.served(2), 1);
}

/// Frames sent one at a time, each with time to cross the relay.
fn frames(n: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| rtu(1 + i % 7, &read_pdu(3, u16::from(i), 1)))
        .collect()
}

#[test]
fn the_noise_relay_is_transparent_at_zero_and_corrupts_every_chunk_at_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(near) = SocatPair::start(dir.path(), "agent", "relay-a") else {
        return;
    };
    let Some(far) = SocatPair::start(dir.path(), "relay-b", "device") else {
        return;
    };
    let mut agent = RawPort::open(near.path_a());
    let mut device = RawPort::open(far.path_b());
    let Some(relay) = NoiseRelay::start_seeded(near.path_b(), far.path_a(), 0.0, 0.0, Some(7))
    else {
        return;
    };
    let gap = Duration::from_millis(30);

    // p = 0: every byte both ways, unchanged.
    for frame in frames(10) {
        agent.write(&frame);
        assert_eq!(device.read_n(frame.len(), WAIT), frame);
        device.write(&frame);
        assert_eq!(agent.read_n(frame.len(), WAIT), frame);
    }
    let all: Vec<u8> = (0..=255).collect();
    agent.write(&all);
    assert_eq!(device.read_n(256, WAIT), all);
    assert!(device.read_for(gap).is_empty() && agent.read_for(gap).is_empty());
    let stats = relay.stats();
    assert_eq!(stats["corrupted"], 0, "{stats}");
    assert_eq!(stats["garbage"], 0, "{stats}");
    assert_eq!(stats["bytes"], 10 * 8 * 2 + 256, "{stats}");

    // p = 1: each chunk arrives with exactly one bit flipped.
    relay.set_corrupt(1.0);
    for frame in frames(10) {
        agent.write(&frame);
        let got = device.read_n(frame.len(), WAIT);
        assert_eq!(got.len(), frame.len());
        let flipped: u32 = got
            .iter()
            .zip(&frame)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum();
        assert_eq!(flipped, 1, "sent {frame:02x?}, got {got:02x?}");
        std::thread::sleep(gap);
    }
    assert_eq!(relay.stats()["a_to_b"]["corrupted"], 10);

    // Garbage only: 1..8 random bytes before each chunk, the chunk intact.
    relay.set_corrupt(0.0);
    relay.set_garbage(1.0);
    for frame in frames(5) {
        device.write(&frame);
        let got = agent.read_for(Duration::from_millis(150));
        assert!(
            got.len() > frame.len() && got.len() <= frame.len() + 8 && got.ends_with(&frame),
            "sent {frame:02x?}, got {got:02x?}"
        );
    }
    let stats = relay.stats();
    assert_eq!(stats["b_to_a"]["garbage"], 5, "{stats}");
    assert_eq!(stats["corrupted"], 10, "{stats}");

    // Back to clean: a Modbus slave behind the relay answers.
    relay.set_garbage(0.0);
    let Some(sim) = ModbusSim::rtu(far.path_b(), 19200, &map()) else {
        return;
    };
    drop(device); // the simulator opens the port exclusively
    agent.write(&rtu(1, &read_pdu(3, 0, 2)));
    assert_eq!(registers(&agent.read_n(9, WAIT), 1, 3), [100, 200]);
    assert_eq!(sim.served(1), 1);
}
