//! Bounded memory under load: 20,000 publishes (QoS 0 and 1) from rumqttc
//! through the gate while the sink is slow. The process RSS must stay under
//! a fixed bound above the baseline. This test is its own binary so that
//! RSS measures only this test.

mod broker_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use broker_support::{Mode, TestSink, start, test_config, wait_for};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet};

const MESSAGES: usize = 20_000;
/// Growth allowed over the baseline RSS. The sink itself keeps every
/// message (~20k × 300 B ≈ 6 MB); the rest is the gate and rumqttd.
const BOUND_MIB: u64 = 64;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_bounded_under_load() {
    let sink = TestSink::new(Mode::Delay(Duration::from_millis(2)));
    let broker = start(test_config(), sink.clone()).await;
    let baseline = rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };

    let addr = broker.addr();
    let mut opts = MqttOptions::new("load", addr.ip().to_string(), addr.port());
    opts.set_inflight(100)
        .set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let acks = Arc::new(AtomicU64::new(0));
    let poller = {
        let acks = acks.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => panic!("load client failed: {e}"),
                }
            }
        })
    };
    let payload = vec![b'x'; 200];
    for i in 0..MESSAGES {
        let qos = if i % 2 == 0 {
            rumqttc::QoS::AtMostOnce
        } else {
            rumqttc::QoS::AtLeastOnce
        };
        client
            .publish(format!("load/{}", i % 10), qos, false, payload.clone())
            .await
            .expect("publish");
    }
    wait_for("all QoS 1 acked", Duration::from_secs(120), || {
        acks.load(Ordering::Relaxed) as usize == MESSAGES / 2
    })
    .await;
    wait_for("all stored", Duration::from_secs(60), || {
        sink.count() == MESSAGES
    })
    .await;
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    poller.abort();

    let growth_mib = peak.load(Ordering::Relaxed).saturating_sub(baseline) / 1024;
    println!(
        "rss baseline {} MiB, growth {growth_mib} MiB",
        baseline / 1024
    );
    assert!(
        growth_mib < BOUND_MIB,
        "RSS grew by {growth_mib} MiB (bound {BOUND_MIB} MiB)"
    );
    broker.stop().await;
}
