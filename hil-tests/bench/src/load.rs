//! The MQTT load generator (rumqttc): a burst of messages from several
//! connections as fast as the broker takes them, or a paced load at a fixed
//! rate. The same code drives `ferry-agent` and Mosquitto.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS};

/// Publishes in flight per connection (QoS 1), the same for every broker.
pub const INFLIGHT: u16 = 100;

/// What a burst measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Messages the broker took (acknowledged at QoS 1; at QoS 0, sent
    /// before a closing QoS 1 publish was acknowledged).
    pub messages: u64,
    pub seconds: f64,
    /// Publish-to-ack latencies (QoS 1), ms.
    pub latencies_ms: Vec<f64>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// A JSON payload of about `size` bytes the agent's default JSON route
/// decodes into one float field and one string field.
pub fn payload(size: usize) -> Vec<u8> {
    let head = "{\"celsius\": 21.5, \"pad\": \"";
    let tail = "\"}";
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad)).into_bytes()
}

fn options(id: String, port: u16) -> MqttOptions {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(60));
    opts.set_inflight(INFLIGHT);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    opts
}

/// Runs `one(c)` for each of `clients` connections on its own thread; what
/// they took together, over the wall time of the slowest.
fn run_clients(clients: usize, one: impl Fn(usize) -> (u64, Vec<f64>) + Sync) -> Outcome {
    let start = Instant::now();
    let results: Vec<(u64, Vec<f64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let one = &one;
                s.spawn(move || one(c))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    Outcome {
        messages: results.iter().map(|r| r.0).sum(),
        seconds: start.elapsed().as_secs_f64(),
        latencies_ms: results.into_iter().flat_map(|r| r.1).collect(),
    }
}

/// What one connection's event loop saw.
struct Acks {
    written: usize,
    acked: usize,
    latencies_ms: Vec<f64>,
}

/// Drives `conn` until `per_client` PUBACKs (QoS 1) or PUBCOMPs (QoS 2)
/// arrived, or with `fence` until the first PUBACK (the closing QoS 1
/// publish of a QoS 0 burst). With `timed`, records each publish→PUBACK or
/// publish→PUBREC latency (the acknowledgement that says the broker has
/// the message).
fn drive(conn: &mut Connection, what: &str, per_client: usize, timed: bool, fence: bool) -> Acks {
    let mut sent: HashMap<u16, Instant> = HashMap::new();
    let mut acks = Acks {
        written: 0,
        acked: 0,
        latencies_ms: Vec::with_capacity(per_client),
    };
    for event in conn.iter() {
        match event {
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                acks.written += 1;
                if timed {
                    sent.insert(pkid, Instant::now());
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(t) = sent.remove(&ack.pkid) {
                    acks.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                acks.acked += 1;
                if fence {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::PubRec(rec))) => {
                if let Some(t) = sent.remove(&rec.pkid) {
                    acks.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            Ok(Event::Incoming(Packet::PubComp(_))) => acks.acked += 1,
            Ok(_) => {}
            Err(e) => panic!("{what}: {e}"),
        }
        if !fence && acks.acked >= per_client {
            break;
        }
    }
    acks
}

/// One connection to `port` as `id` (`cap` requests queued in the client):
/// `send` publishes on a thread of its own while `wait` drives the
/// connection here (see [`drive`]); the client disconnects once both are
/// done.
fn connection(
    port: u16,
    id: String,
    cap: usize,
    send: impl FnOnce(&Client) + Send + 'static,
    wait: impl FnOnce(&mut Connection) -> Acks,
) -> Acks {
    let (client, mut conn) = Client::new(options(id, port), cap);
    let sender = std::thread::spawn(move || {
        send(&client);
        client
    });
    let acks = wait(&mut conn);
    let client = sender.join().expect("sender thread");
    let _ = client.disconnect();
    acks
}

/// `clients` connections each publish `per_client` messages of `size` bytes
/// at `qos` as fast as the broker acknowledges them (topic
/// `bench/dev<c>/temperature`). At QoS 0 each connection ends with one QoS 1
/// publish and waits for its PUBACK, so the clock stops when the broker has
/// read everything, not when the client has written it.
pub fn burst(port: u16, clients: usize, per_client: usize, size: usize, qos: QoS) -> Outcome {
    let body = payload(size);
    run_clients(clients, |c| {
        let id = format!("bench-{c}-{}", std::process::id());
        let topic = format!("bench/dev{c}/temperature");
        let fence = qos == QoS::AtMostOnce;
        let body = body.clone();
        let send = move |client: &Client| {
            for _ in 0..per_client {
                if client.publish(&topic, qos, false, body.clone()).is_err() {
                    break;
                }
            }
            if fence {
                let _ = client.publish(&topic, QoS::AtLeastOnce, false, body);
            }
        };
        let what = format!("MQTT client {c} on port {port}");
        let acks = connection(port, id, 200, send, |conn| {
            drive(conn, &what, per_client, !fence, fence)
        });
        let took = if fence {
            acks.written.saturating_sub(1).min(per_client)
        } else {
            acks.acked
        };
        (took as u64, acks.latencies_ms)
    })
}

/// A paced QoS 1 load: `clients` connections together publish `rate`
/// messages/s of `size` bytes for `seconds`; returns the messages
/// acknowledged and the latencies. Runs on the calling thread.
pub fn paced(port: u16, clients: usize, rate: f64, seconds: f64, size: usize) -> Outcome {
    let per_client_rate = rate / clients as f64;
    let per_client = (per_client_rate * seconds).round() as usize;
    let body = payload(size);
    run_clients(clients, |c| {
        let id = format!("paced-{c}-{}", std::process::id());
        let topic = format!("bench/pace{c}/temperature");
        let body = body.clone();
        let send = move |client: &Client| {
            let t0 = Instant::now();
            for i in 0..per_client {
                let due = Duration::from_secs_f64(i as f64 / per_client_rate);
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(wait);
                }
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, body.clone())
                    .is_err()
                {
                    break;
                }
            }
        };
        let what = format!("paced MQTT client {c}");
        let acks = connection(port, id, 1000, send, |conn| {
            drive(conn, &what, per_client, true, false)
        });
        (acks.acked as u64, acks.latencies_ms)
    })
}

/// `clients` connections publish one QoS 1 message of `size` bytes to each
/// of `topics` topics, `bench/dev-<i>/<leaf>` with `distinct` (a device id
/// per topic), else all to `bench/dev-0/<leaf>`; waits for every PUBACK.
pub fn topics(
    port: u16,
    clients: usize,
    topics: usize,
    size: usize,
    distinct: bool,
    leaf: &str,
) -> Outcome {
    let body = payload(size);
    run_clients(clients, |c| {
        let id = format!("topics-{c}-{}", std::process::id());
        let mine: Vec<usize> = (c..topics).step_by(clients).collect();
        let count = mine.len();
        let body = body.clone();
        let leaf = leaf.to_owned();
        let send = move |client: &Client| {
            for i in mine {
                let device = if distinct { i } else { 0 };
                let topic = format!("bench/dev-{device}/{leaf}");
                if client
                    .publish(&topic, QoS::AtLeastOnce, false, body.clone())
                    .is_err()
                {
                    break;
                }
            }
        };
        let what = format!("topics MQTT client {c}");
        let acks = connection(port, id, 1000, send, |conn| {
            drive(conn, &what, count, false, false)
        });
        (acks.acked as u64, Vec::new())
    })
}
