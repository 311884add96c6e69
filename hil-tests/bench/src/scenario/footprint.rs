//! Footprint: binary sizes (the host build here; cross builds if
//! `cross/build.sh` left them), and the agent's RSS idle, at 1k and at 10k
//! QoS 1 msg/s, and its CPU at those rates (from `/proc/<pid>/stat`),
//! against Mosquitto (no persistence) under the same paced load.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_hil_tests::Peer;
use serde_json::{Value, json};

use super::{BENCH_ROUTE, NO_HUB};
use crate::load::paced;
use crate::procs::{cpu_secs, rss_kib, start_agent, start_mosquitto};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Unit, percentile};

/// Paced publisher connections.
const CLIENTS: usize = 4;
const PAYLOAD: usize = 100;

/// What one paced window measured on one process.
#[derive(Debug, Clone, Copy)]
struct Window {
    rss_max_kib: f64,
    cpu_pct: f64,
    achieved: f64,
    p99_ms: f64,
}

fn window(pid: u32, port: u16, rate: f64, seconds: f64) -> Window {
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let (outcome, rss_max) = std::thread::scope(|s| {
        let load = s.spawn(move || paced(port, CLIENTS, rate, seconds, PAYLOAD));
        let mut rss_max = 0;
        while !load.is_finished() {
            rss_max = rss_max.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(100));
        }
        (load.join().expect("paced load"), rss_max)
    });
    let wall = t0.elapsed().as_secs_f64();
    Window {
        rss_max_kib: rss_max as f64,
        cpu_pct: (cpu_secs(pid) - cpu0) / wall * 100.0,
        achieved: outcome.messages as f64 / wall,
        p99_ms: percentile(&outcome.latencies_ms, 0.99),
    }
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// The size of `bin` stripped: the file itself when the profile strips
/// (release), else a stripped copy (the debug build keeps its symbols).
fn stripped_size(bin: &Path, scratch: &Path) -> Option<u64> {
    let strip = ferry_hil_tests::find_tool("strip");
    let copy = scratch.join(format!("{}.stripped", bin.file_name()?.to_string_lossy()));
    std::fs::copy(bin, &copy).ok()?;
    if let Some(strip) = strip {
        let _ = Command::new(strip).arg(&copy).status();
    }
    file_size(&copy)
}

/// Cross-built agents `cross/build.sh` left behind, if any.
fn cross_artifacts() -> Vec<(String, PathBuf)> {
    let mut roots: Vec<PathBuf> = vec![PathBuf::from(
        std::env::var("FERRY_CROSS_TARGET_DIR")
            .unwrap_or_else(|_| "/var/tmp/ferry-cross-target".to_owned()),
    )];
    if let Some(t) = ferry_hil_tests::bin_dir().parent() {
        roots.push(t.to_owned());
    }
    let mut out = Vec::new();
    for root in roots {
        for triple in [
            "aarch64-unknown-linux-gnu",
            "aarch64-unknown-linux-musl",
            "armv7-unknown-linux-gnueabihf",
            "x86_64-unknown-linux-musl",
        ] {
            for profile in ["gateway", "cross-ci"] {
                let p = root.join(triple).join(profile).join("ferry-agent");
                if p.is_file()
                    && !out
                        .iter()
                        .any(|(l, _): &(String, PathBuf)| l == &format!("{triple} ({profile})"))
                {
                    out.push((format!("{triple} ({profile})"), p));
                }
            }
        }
    }
    out
}

pub fn run(scale: &Scale, dir: &Path) -> Section {
    let mut s = Section::new("footprint", "Footprint: binary size, memory and CPU");
    let secs = scale.footprint_seconds;
    s.intro = format!(
        "RSS from `/proc/<pid>/status` (the maximum sampled every 100 ms during each window), CPU from `/proc/<pid>/stat` \
         (user + system over the window's wall time; 100 % = one core). Paced load: {CLIENTS} rumqttc connections, QoS 1, \
         {PAYLOAD}-byte JSON payloads, {secs:.0} s per rate, {} run(s); the same load against Mosquitto without persistence. \
         The agent buffers only (hub unreachable), so its segmenter runs but its uplink does not.",
        scale.runs
    );
    let bin = ferry_hil_tests::bin_dir();
    let profile = bin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut sizes = Vec::new();
    s.note("| binary | file size | stripped |\n|---|---|---|");
    for name in ["ferry-agent", "ferry-hub"] {
        let p = bin.join(name);
        let (size, stripped) = (
            file_size(&p).unwrap_or(0),
            stripped_size(&p, dir).unwrap_or(0),
        );
        s.note(format!(
            "| {name} (host x86_64, {profile} profile) | {:.1} MB | {:.1} MB |",
            size as f64 / 1e6,
            stripped as f64 / 1e6
        ));
        sizes.push(
            json!({"binary": name, "profile": profile, "bytes": size, "stripped_bytes": stripped}),
        );
    }
    for (label, p) in cross_artifacts() {
        let size = file_size(&p).unwrap_or(0);
        s.note(format!(
            "| ferry-agent {label} (from `cross/build.sh`) | {:.1} MB | {:.1} MB |",
            size as f64 / 1e6,
            size as f64 / 1e6
        ));
        sizes.push(json!({"binary": "ferry-agent", "target": label, "bytes": size}));
    }
    if let Some(m) = ferry_hil_tests::find_tool("mosquitto") {
        let size = file_size(&m).unwrap_or(0);
        s.note(format!(
            "| mosquitto (Debian, dynamically linked: libssl, libcrypto, libc not counted) | {:.2} MB | {:.2} MB |",
            size as f64 / 1e6,
            size as f64 / 1e6
        ));
        sizes.push(json!({"binary": "mosquitto", "bytes": size}));
    }
    if cross_artifacts().is_empty() {
        s.note("\nNo cross-built agent was found (run `cross/build.sh <target>`; sizes per target are in docs/cross-build.md).");
    }

    let (mut idle_a, mut idle_m) = (Vec::new(), Vec::new());
    let mut windows: Vec<(f64, Vec<Window>, Vec<Window>)> = vec![
        (1000.0, Vec::new(), Vec::new()),
        (10_000.0, Vec::new(), Vec::new()),
    ];
    for run in 0..scale.runs {
        let rdir = dir.join(format!("run{run}"));
        std::fs::create_dir_all(&rdir).expect("run dir");
        let agent = start_agent(&rdir, NO_HUB.0, None, NO_HUB.1, BENCH_ROUTE);
        let (mut mosq, port): (Peer, u16) = start_mosquitto(&rdir, false);
        std::thread::sleep(Duration::from_secs(1));
        idle_a.push(rss_kib(agent.peer.id()) as f64);
        idle_m.push(rss_kib(mosq.id()) as f64);
        for (rate, a, m) in windows.iter_mut() {
            let wa = window(agent.peer.id(), agent.mqtt, *rate, secs);
            let wm = window(mosq.id(), port, *rate, secs);
            eprintln!(
                "  run {} at {rate} msg/s: agent {:.1} MiB, {:.1} % CPU ({:.0} msg/s); mosquitto {:.1} MiB, {:.1} % CPU",
                run + 1,
                wa.rss_max_kib / 1024.0,
                wa.cpu_pct,
                wa.achieved,
                wm.rss_max_kib / 1024.0,
                wm.cpu_pct
            );
            a.push(wa);
            m.push(wm);
        }
        drop(agent);
        mosq.kill();
    }
    s.compare(Comparison::new(
        "RSS, idle",
        Unit::KiB,
        &idle_a,
        "Mosquitto",
        &idle_m,
    ));
    let mut details = Vec::new();
    for (rate, a, m) in &windows {
        let f = |w: &[Window], get: fn(&Window) -> f64| -> Vec<f64> { w.iter().map(get).collect() };
        let r = format!("{}k msg/s", rate / 1000.0);
        s.compare(Comparison::new(
            format!("RSS at {r}"),
            Unit::KiB,
            &f(a, |w| w.rss_max_kib),
            "Mosquitto",
            &f(m, |w| w.rss_max_kib),
        ));
        s.compare(Comparison::new(
            format!("CPU at {r}"),
            Unit::CpuPercent,
            &f(a, |w| w.cpu_pct),
            "Mosquitto",
            &f(m, |w| w.cpu_pct),
        ));
        s.compare(Comparison::new(
            format!("rate achieved at {r} offered"),
            Unit::Rate("msg"),
            &f(a, |w| w.achieved),
            "Mosquitto",
            &f(m, |w| w.achieved),
        ));
        details.push(json!({
            "rate": rate,
            "agent": a.iter().map(|w| json!({"rss_max_kib": w.rss_max_kib, "cpu_pct": w.cpu_pct, "achieved": w.achieved, "p99_ms": w.p99_ms})).collect::<Vec<Value>>(),
            "mosquitto": m.iter().map(|w| json!({"rss_max_kib": w.rss_max_kib, "cpu_pct": w.cpu_pct, "achieved": w.achieved, "p99_ms": w.p99_ms})).collect::<Vec<Value>>(),
        }));
    }
    s.details = json!({"sizes": sizes, "idle_rss_kib": {"agent": idle_a, "mosquitto": idle_m}, "paced": details, "seconds_per_rate": secs});
    s
}
