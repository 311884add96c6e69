//! Scenario 2: the hub unreachable for a long stretch, in every way a link
//! fails — connection refused, no route to host, SYN blackhole, a proxy
//! that accepts and then stalls, resets — then slow (latency plus a
//! bandwidth cap), then back. The backlog must drain, exactly once, and
//! while the link is fully down nothing may reach the lake.

use std::time::Duration;

use super::Setup;
use crate::faults::rig::Storage;
use crate::faults::{Block, Fault, PortBlock, Scale, Summary};

/// One way the link is down.
#[derive(Debug, Clone, Copy)]
enum Down {
    Proxy(Fault),
    Netfilter(Block),
}

pub fn hub_unreachable(scale: Scale) -> Summary {
    let mut s = Setup::new("hub-unreachable", Storage::Fs, |o| {
        // A stalled upload must time out well inside a phase.
        o.uplink_timeout = "2s";
    });
    let load = s.load(2, 200);
    let phase = scale.duration(Duration::from_secs(5)) / if scale.long { 7 } else { 1 };
    let downs = [
        ("refused", Down::Proxy(Fault::Refuse)),
        ("no-route", Down::Netfilter(Block::NoRoute)),
        ("syn-blackhole", Down::Netfilter(Block::Blackhole)),
        ("stall", Down::Proxy(Fault::Stall)),
        ("reset", Down::Proxy(Fault::Reset)),
    ];
    let mut notes = Vec::new();
    let mut faults = 0;
    wait_flowing(&s);
    for (label, down) in downs {
        let _block = match down {
            Down::Proxy(f) => {
                s.proxy.set(f);
                None
            }
            Down::Netfilter(b) => {
                // Cut open connections too: a route does not vanish
                // politely, but the agent's keep-alive connection would
                // otherwise ride it out.
                s.proxy.set(Fault::Reset);
                let block = PortBlock::new(s.proxy.addr().port(), b);
                s.proxy.set(Fault::Pass);
                Some(block)
            }
        };
        faults += 1;
        // An upload the hub had fully received may still commit: settle.
        std::thread::sleep(Duration::from_millis(1500));
        let before = s.lake_rows();
        std::thread::sleep(phase);
        let after = s.lake_rows();
        assert_eq!(
            before, after,
            "{label}: rows reached the lake while the link was down"
        );
        let backlog = s.agent.status()["buffer"]["pending_segments"]
            .as_u64()
            .unwrap_or(0);
        assert!(backlog > 0, "{label}: the agent shows no backlog");
        notes.push(format!("{label}_backlog_segments={backlog}"));
        s.proxy.set(Fault::Pass);
        drop(_block);
        wait_flowing(&s);
    }
    // Slow but up: every reading still arrives.
    s.proxy.set(Fault::Latency(Duration::from_millis(150)));
    std::thread::sleep(phase);
    s.proxy.set(Fault::Bandwidth(16 * 1024));
    std::thread::sleep(phase);
    s.proxy.set(Fault::Pass);
    faults += 2;
    let summary = s.finish(load, faults, 0, notes);
    summary.assert_exact();
    summary
}

/// Waits until rows reach the lake again.
fn wait_flowing(s: &Setup) {
    let before = s.lake_rows();
    crate::wait_until("rows reaching the lake", Duration::from_secs(60), || {
        s.lake_rows() > before
    });
}
