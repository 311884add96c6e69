//! Scenario 7: the link to the hub goes down and up every few seconds
//! (refused, reset, stalled, no route) for minutes. Nothing may be lost or
//! doubled, and the agent's memory must not grow with the flaps.

use std::time::{Duration, Instant};

use super::Setup;
use crate::faults::rig::Storage;
use crate::faults::{Block, Fault, PortBlock, Rng, Scale, Summary};

pub fn flapping(scale: Scale) -> Summary {
    let mut s = Setup::new("flapping", Storage::Fs, |o| {
        o.uplink_timeout = "2s";
        o.backoff_max = "500ms";
    });
    let mut rng = Rng::from_env("flapping");
    let load = s.load(2, 200);
    let end = Instant::now() + scale.duration(Duration::from_secs(40));
    let mut flaps = 0u64;
    while Instant::now() < end {
        let _block = match rng.next_u64() % 4 {
            0 => {
                s.proxy.set(Fault::Refuse);
                None
            }
            1 => {
                s.proxy.set(Fault::Reset);
                None
            }
            2 => {
                s.proxy.set(Fault::Stall);
                None
            }
            _ => {
                s.proxy.set(Fault::Reset);
                let b = PortBlock::new(s.proxy.addr().port(), Block::NoRoute);
                s.proxy.set(Fault::Pass);
                Some(b)
            }
        };
        std::thread::sleep(rng.between(Duration::from_millis(500), Duration::from_secs(3)));
        s.proxy.set(Fault::Pass);
        drop(_block);
        flaps += 1;
        std::thread::sleep(rng.between(Duration::from_millis(500), Duration::from_secs(3)));
    }
    let early = s.rss.median_mb(0.2, 0.4);
    let late = s.rss.median_mb(0.8, 1.0);
    let notes = vec![
        format!("flaps={flaps}"),
        format!("rss_early={early:.1}MB"),
        format!("rss_late={late:.1}MB"),
    ];
    let summary = s.finish(load, flaps, 0, notes);
    summary.assert_exact();
    // Growth would show as a steady climb; allow allocator noise.
    assert!(
        late <= early * 1.25 + 8.0,
        "agent memory grew with the flaps: {early:.1} MB -> {late:.1} MB ({summary})"
    );
    summary
}
