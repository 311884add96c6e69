//! The monitor: a plain OS thread (so that a wedged async runtime cannot
//! silence it) that reads the liveness registry four times a second,
//! publishes it as metrics, pings systemd's watchdog only while every
//! component is healthy, and ends the process when a component has stalled
//! past `supervisor.stall_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::crash::{ExitKind, ExitRecord, Lifecycle};
use super::liveness::{Liveness, Report, State};
use super::metrics as m;

const TICK: Duration = Duration::from_millis(250);

/// What the monitor does besides reporting.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Send `WATCHDOG=1` this often while healthy (half of `WatchdogSec`).
    pub watchdog: Option<Duration>,
    /// Abort after a component has been faulty this long; zero: never.
    pub stall_timeout: Duration,
}

/// A running monitor; [`Monitor::stop`] ends it.
#[derive(Debug)]
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Starts the monitor thread.
    pub fn spawn(
        liveness: Liveness,
        options: MonitorOptions,
        lifecycle: Option<Arc<Lifecycle>>,
        notify: fn(&str),
    ) -> std::io::Result<Monitor> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-supervisor".into())
            .spawn(move || run(liveness, options, lifecycle, notify, flag))?;
        Ok(Monitor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    liveness: Liveness,
    options: MonitorOptions,
    lifecycle: Option<Arc<Lifecycle>>,
    notify: fn(&str),
    stop: Arc<AtomicBool>,
) {
    // The first ping comes one interval after the start, never before the
    // caller's READY=1 (which follows the spawn).
    let mut last_ping: Option<Instant> = Some(Instant::now());
    let mut was_healthy = true;
    while !stop.load(Ordering::SeqCst) {
        let report = liveness.report();
        publish(&report);
        if report.healthy {
            if !was_healthy {
                tracing::info!("every component is healthy again");
            }
            if let Some(every) = options.watchdog
                && last_ping.is_none_or(|t| t.elapsed() >= every)
            {
                notify("WATCHDOG=1");
                metrics::counter!(m::WATCHDOG_PINGS).increment(1);
                last_ping = Some(Instant::now());
            }
        } else if let Some(worst) = report.worst() {
            if was_healthy {
                tracing::error!(
                    component = %worst.name,
                    state = ?worst.state,
                    note = worst.note.as_deref().unwrap_or("-"),
                    "a component is not making progress; /health answers 503 and the watchdog is no longer pinged"
                );
            }
            let overdue = Duration::from_millis(worst.overdue_ms.unwrap_or(0));
            if !options.stall_timeout.is_zero() && overdue >= options.stall_timeout {
                let what = match worst.state {
                    State::Exited => "ended",
                    _ => "stalled",
                };
                // A part waiting on a stalled one stalls too: name them all.
                let others: Vec<&str> = report
                    .components
                    .iter()
                    .filter(|c| c.state.is_fault() && c.name != worst.name)
                    .map(|c| c.name.as_str())
                    .collect();
                let message = format!(
                    "{} {what} {:.1}s ago{}{}",
                    worst.name,
                    overdue.as_secs_f64(),
                    worst
                        .note
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!("; also faulty: {}", others.join(", "))
                    }
                );
                tracing::error!(
                    component = %worst.name,
                    %message,
                    "internal fault: a component stalled past supervisor.stall_timeout; the agent exits now so that it is restarted (crash-only)"
                );
                if let Some(lifecycle) = &lifecycle {
                    lifecycle.finish(ExitRecord {
                        kind: ExitKind::Stall,
                        at: humantime::format_rfc3339_millis(std::time::SystemTime::now())
                            .to_string(),
                        component: Some(worst.name.clone()),
                        thread: None,
                        message: Some(message),
                        location: None,
                    });
                }
                std::process::abort();
            }
        }
        was_healthy = report.healthy;
        std::thread::sleep(TICK);
    }
}

fn publish(report: &Report) {
    metrics::gauge!(m::HEALTHY).set(if report.healthy { 1.0 } else { 0.0 });
    metrics::gauge!(m::READY).set(if report.ready { 1.0 } else { 0.0 });
    for c in &report.components {
        let up = if c.state.is_fault() { 0.0 } else { 1.0 };
        metrics::gauge!(m::COMPONENT_UP, "component" => c.name.clone()).set(up);
    }
}
