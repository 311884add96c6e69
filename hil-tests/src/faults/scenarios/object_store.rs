//! Scenario 4: the hub's object store misbehaves. The hub writes its Delta
//! tables to a real S3 server (moto) through a fault proxy that answers
//! 503 and 500, resets connections, stalls (each request outlives the
//! hub's 2 s `request_timeout` and is retried), and accepts slowly
//! (latency plus a bandwidth cap). The hub must never
//! acknowledge a segment it did not commit, must keep running, and once
//! the store heals every reading must be in the table exactly once.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::Setup;
use crate::faults::rig::Storage;
use crate::faults::{Fault, FaultProxy, Scale, Summary};
use crate::{Peer, free_port, http, require_tool, wait_for_port};

pub fn object_store(scale: Scale) -> Summary {
    let moto = require_tool("moto_server", "pip install 'moto[server]'")
        .unwrap_or_else(|| panic!("object-store needs moto_server"));
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let moto_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _moto = Peer::spawn(
        "moto",
        Command::new(moto).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        &work.path().join("moto.log"),
    );
    wait_for_port(moto_addr, Duration::from_secs(30));
    let (status, body) = http("PUT", moto_addr, "/ferry", &[], b"");
    assert_eq!(status, 200, "create bucket: {body}");
    let s3_proxy = FaultProxy::start(moto_addr);
    let storage = Storage::S3 {
        endpoint: s3_proxy.addr(),
        bucket: "ferry".to_owned(),
    };
    let mut s = Setup::new("object-store", storage, |_| {});
    let load = s.load(2, 150);
    let phase = scale.duration(Duration::from_secs(6)) / if scale.long { 6 } else { 1 };
    let faults = [
        ("503", Fault::HttpError(503)),
        ("500", Fault::HttpError(500)),
        ("reset", Fault::Reset),
        ("stall", Fault::Stall),
        ("latency", Fault::Latency(Duration::from_millis(300))),
        ("bandwidth", Fault::Bandwidth(64 * 1024)),
    ];
    let mut notes = Vec::new();
    for (label, fault) in faults {
        let rows = s.lake_rows();
        let connections = s3_proxy.accepted();
        s3_proxy.set(fault);
        std::thread::sleep(phase);
        s3_proxy.set(Fault::Pass);
        // New connections during the phase: retries (and, when stalled,
        // requests abandoned after the hub's 2 s request_timeout).
        let retried = s3_proxy.accepted() - connections;
        assert!(s.hub.is_running(), "the hub died during the {label} phase");
        // The store healed: rows flow again.
        crate::wait_until(
            &format!("rows after the {label} phase"),
            Duration::from_secs(120),
            || s.lake_rows() > rows,
        );
        notes.push(format!("{label}_connections={retried}"));
    }
    let errors = s.hub.log_lines("ERROR").len() + s.hub.log_lines("WARN").len();
    notes.push(format!("hub_log_warnings={errors}"));
    notes.push(format!("s3_connections={}", s3_proxy.accepted()));
    let summary = s.finish(load, faults.len() as u64, 0, notes);
    summary.assert_exact();
    summary
}
