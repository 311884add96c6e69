//! Samples a process's resident memory (`VmRSS`) every 200 ms; the pid can
//! change (the agent is restarted), the series goes on.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Series {
    /// (seconds since start, kB)
    samples: Vec<(f64, u64)>,
}

/// A background sampler; [`RssSampler::watch`] points it at a pid.
#[derive(Debug)]
pub struct RssSampler {
    pid: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    series: Arc<Mutex<Series>>,
    handle: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start() -> RssSampler {
        let pid = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let series = Arc::new(Mutex::new(Series::default()));
        let (p, s, se) = (pid.clone(), stop.clone(), series.clone());
        let handle = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s.load(Ordering::SeqCst) {
                let id = p.load(Ordering::SeqCst);
                if let Some(kb) = (id != 0).then(|| rss_kb(id)).flatten() {
                    se.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .samples
                        .push((t0.elapsed().as_secs_f64(), kb));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        RssSampler {
            pid,
            stop,
            series,
            handle: Some(handle),
        }
    }

    /// Samples `pid` from now on (0: none).
    pub fn watch(&self, pid: u32) {
        self.pid.store(pid, Ordering::SeqCst);
    }

    /// The highest sample, in MB.
    pub fn max_mb(&self) -> f64 {
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.samples.iter().map(|&(_, kb)| kb).max().unwrap_or(0) as f64 / 1024.0
    }

    /// The median sample (MB) in the window `[from, to)` of the run, as
    /// fractions of its length (0.0–1.0).
    pub fn median_mb(&self, from: f64, to: f64) -> f64 {
        let s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let end = s.samples.last().map_or(0.0, |&(t, _)| t);
        let mut window: Vec<u64> = s
            .samples
            .iter()
            .filter(|&&(t, _)| t >= from * end && t < to * end)
            .map(|&(_, kb)| kb)
            .collect();
        window.sort_unstable();
        window.get(window.len() / 2).copied().unwrap_or(0) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A process's resident set in kB, from `/proc/<pid>/status`.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}
