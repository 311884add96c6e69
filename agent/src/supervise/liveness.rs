//! The liveness registry: every long-running part of the agent holds a
//! [`Beat`] and says, each time it makes progress, by when it will next do
//! so. A part whose deadline has passed is *stalled*; one whose task ended
//! while the agent was not stopping has *exited*. Either makes the agent
//! unhealthy.
//!
//! Deadlines are declared by the part itself, next to the wait it is about
//! to do ("an upload: at most `request_timeout`", "idle until the next
//! tick"), so a long but legitimate wait is never mistaken for a stall, and
//! a wait for the outside world (a serial device that prints once an hour)
//! is [`Beat::idle`], which cannot stall.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// No deadline: waiting for the outside world.
const IDLE: u64 = u64::MAX;

/// Where a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Registered, within its start-up allowance, no progress yet.
    Starting,
    /// Made progress and its next deadline has not passed.
    Ok,
    /// Waiting for the outside world; cannot stall.
    Idle,
    /// Its deadline has passed.
    Stalled,
    /// Its task ended while the agent was not stopping.
    Exited,
    /// Its task ended because the agent is stopping.
    Stopped,
}

impl State {
    /// Whether this state makes the agent unhealthy.
    pub fn is_fault(self) -> bool {
        matches!(self, State::Stalled | State::Exited)
    }
}

#[derive(Debug)]
struct Slot {
    name: String,
    /// Milliseconds since the registry's epoch.
    last: AtomicU64,
    due: AtomicU64,
    progressed: AtomicBool,
    ended: AtomicBool,
    /// Probes clear this while the thing they probe refuses service for a
    /// reason that is not a fault (a listener at its connection limit).
    ready: AtomicBool,
    /// Counts towards `/ready` (listeners, the buffer).
    gates_ready: bool,
    note: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    /// Added to every declared wait: the internal work around it.
    work: Duration,
    slots: Mutex<Vec<Arc<Slot>>>,
    stopping: AtomicBool,
}

/// The registry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness::new(Duration::from_secs(60))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(IDLE - 1)
}

impl Liveness {
    /// `work`: how long a part may spend on internal work (a buffer query,
    /// cutting a segment) between two beats, on top of the waits it
    /// declares (`supervisor.work_timeout`).
    pub fn new(work: Duration) -> Self {
        Liveness {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                work,
                slots: Mutex::new(Vec::new()),
                stopping: AtomicBool::new(false),
            }),
        }
    }

    fn now_ms(&self, at: Instant) -> u64 {
        millis(at.saturating_duration_since(self.inner.epoch))
    }

    /// Registers a component that must show progress within `start_within`.
    /// `gates_ready`: `/ready` fails while it is not `ok`.
    pub fn register(
        &self,
        name: impl Into<String>,
        start_within: Duration,
        gates_ready: bool,
    ) -> Beat {
        let now = self.now_ms(Instant::now());
        let slot = Arc::new(Slot {
            name: name.into(),
            last: AtomicU64::new(now),
            due: AtomicU64::new(now.saturating_add(millis(start_within))),
            progressed: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            ready: AtomicBool::new(true),
            gates_ready,
            note: Mutex::new(None),
        });
        self.inner
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot.clone());
        Beat {
            slot,
            registry: self.clone(),
        }
    }

    /// The agent is stopping: components that end now have `Stopped`, and
    /// deadlines no longer count.
    pub fn set_stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// Every component's state now.
    pub fn report(&self) -> Report {
        self.report_at(Instant::now())
    }

    /// Every component's state at `at` (tests pass a later instant instead
    /// of sleeping).
    pub fn report_at(&self, at: Instant) -> Report {
        let now = self.now_ms(at);
        let stopping = self.is_stopping();
        let slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut components = Vec::with_capacity(slots.len());
        let mut ready = !stopping;
        for slot in &slots {
            let last = slot.last.load(Ordering::SeqCst);
            let due = slot.due.load(Ordering::SeqCst);
            let progressed = slot.progressed.load(Ordering::SeqCst);
            let state = if slot.ended.load(Ordering::SeqCst) {
                if stopping {
                    State::Stopped
                } else {
                    State::Exited
                }
            } else if stopping {
                // Deadlines do not count while stopping.
                if due == IDLE { State::Idle } else { State::Ok }
            } else if due != IDLE && now > due {
                State::Stalled
            } else if !progressed {
                State::Starting
            } else if due == IDLE {
                State::Idle
            } else {
                State::Ok
            };
            let overdue_ms = match state {
                State::Stalled => Some(now - due),
                State::Exited => Some(now.saturating_sub(last)),
                _ => None,
            };
            let slot_ready = slot.ready.load(Ordering::SeqCst);
            if slot.gates_ready && (!matches!(state, State::Ok | State::Idle) || !slot_ready) {
                ready = false;
            }
            components.push(ComponentReport {
                name: slot.name.clone(),
                state,
                last_progress_ms_ago: now.saturating_sub(last),
                overdue_ms,
                ready: slot_ready,
                note: slot.note.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            });
        }
        let healthy = !components.iter().any(|c| c.state.is_fault());
        Report {
            healthy,
            ready: ready && healthy,
            components,
        }
    }
}

/// One component's handle. Dropping it marks the component ended: `Stopped`
/// while the agent stops, `Exited` (a fault) otherwise.
#[derive(Debug)]
pub struct Beat {
    slot: Arc<Slot>,
    registry: Liveness,
}

impl Beat {
    /// Progress now; the next is due within `next_within`.
    pub fn progress(&self, next_within: Duration) {
        let now = self.registry.now_ms(Instant::now());
        self.slot.last.store(now, Ordering::SeqCst);
        self.slot
            .due
            .store(now.saturating_add(millis(next_within)), Ordering::SeqCst);
        self.slot.progressed.store(true, Ordering::SeqCst);
    }

    /// Progress now; next, internal work (at most `work_timeout`).
    pub fn working(&self) {
        self.progress(self.registry.inner.work);
    }

    /// Progress now; next, a wait of at most `wait` and internal work.
    pub fn waiting(&self, wait: Duration) {
        self.progress(wait.saturating_add(self.registry.inner.work));
    }

    /// Progress now; next, a wait for the outside world with no deadline.
    pub fn idle(&self) {
        let now = self.registry.now_ms(Instant::now());
        self.slot.last.store(now, Ordering::SeqCst);
        self.slot.due.store(IDLE, Ordering::SeqCst);
        self.slot.progressed.store(true, Ordering::SeqCst);
    }

    /// Whether `/ready` may count this component as serving (it may be
    /// alive yet refusing service, e.g. a listener at its connection limit).
    pub fn set_ready(&self, ready: bool) {
        self.slot.ready.store(ready, Ordering::SeqCst);
    }

    /// What the component last ran into, shown in `/health`.
    pub fn note(&self, note: Option<String>) {
        *self.slot.note.lock().unwrap_or_else(|e| e.into_inner()) = note;
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        &self.slot.name
    }
}

impl Drop for Beat {
    fn drop(&mut self) {
        let now = self.registry.now_ms(Instant::now());
        self.slot.last.store(now, Ordering::SeqCst);
        self.slot.ended.store(true, Ordering::SeqCst);
    }
}

/// One component in a [`Report`].
#[derive(Debug, Clone, Serialize)]
pub struct ComponentReport {
    pub name: String,
    pub state: State,
    pub last_progress_ms_ago: u64,
    /// How far past its deadline (stalled) or how long ago it ended (exited).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_ms: Option<u64>,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The state of every component.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No component is stalled or exited.
    pub healthy: bool,
    /// Healthy, not stopping, and every listener and the buffer serve.
    pub ready: bool,
    pub components: Vec<ComponentReport>,
}

impl Report {
    /// The faulty component that has been faulty longest.
    pub fn worst(&self) -> Option<&ComponentReport> {
        self.components
            .iter()
            .filter(|c| c.state.is_fault())
            .max_by_key(|c| c.overdue_ms.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(r: &Report, name: &str) -> State {
        r.components
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.state)
            .expect("component")
    }

    #[test]
    fn deadlines_idle_and_exit() {
        let live = Liveness::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let uplink = live.register("uplink", Duration::from_secs(5), false);
        let serial = live.register("serial", Duration::from_secs(5), false);
        let r = live.report_at(t0);
        assert_eq!(state(&r, "uplink"), State::Starting);
        assert!(r.healthy);

        uplink.progress(Duration::from_secs(10));
        serial.idle();
        let r = live.report_at(t0 + Duration::from_secs(8));
        assert_eq!(state(&r, "uplink"), State::Ok);
        // A declared wait gets the work allowance on top.
        let other = Liveness::new(Duration::from_secs(60));
        let cutter = other.register("segmenter", Duration::from_secs(5), false);
        cutter.waiting(Duration::from_secs(1));
        let at = |s: u64| state(&other.report_at(t0 + Duration::from_secs(s)), "segmenter");
        assert_eq!(at(60), State::Ok);
        assert_eq!(at(62), State::Stalled);
        assert_eq!(state(&r, "serial"), State::Idle);
        assert!(r.healthy && r.ready);

        // Past the deadline: stalled; idle never stalls.
        let r = live.report_at(t0 + Duration::from_secs(20));
        assert_eq!(state(&r, "uplink"), State::Stalled);
        assert_eq!(state(&r, "serial"), State::Idle);
        assert!(!r.healthy && !r.ready);
        let worst = r.worst().expect("a fault");
        assert_eq!(worst.name, "uplink");
        assert!(worst.overdue_ms.expect("overdue") >= 9_000);

        // A task that ends while the agent runs has exited: a fault.
        drop(serial);
        let r = live.report_at(t0 + Duration::from_secs(1));
        assert_eq!(state(&r, "serial"), State::Exited);
        assert!(!r.healthy);

        // While stopping, ends are expected and deadlines do not count.
        live.set_stopping();
        let r = live.report_at(t0 + Duration::from_secs(60));
        assert_eq!(state(&r, "serial"), State::Stopped);
        assert_eq!(state(&r, "uplink"), State::Ok);
        assert!(r.healthy && !r.ready);
    }

    #[test]
    fn readiness_follows_gating_components() {
        let live = Liveness::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let listener = live.register("broker.v4", Duration::from_secs(5), true);
        let _other = live.register("uplink", Duration::from_secs(5), false);
        assert!(
            !live.report_at(t0).ready,
            "not ready before the first probe"
        );
        listener.progress(Duration::from_secs(10));
        assert!(live.report_at(t0).ready);
        listener.set_ready(false);
        let r = live.report_at(t0);
        assert!(r.healthy && !r.ready, "alive but refusing service");
        listener.set_ready(true);
        listener.note(Some("connection refused".into()));
        let r = live.report_at(t0);
        assert!(r.ready);
        assert_eq!(r.components[0].note.as_deref(), Some("connection refused"));
    }
}
