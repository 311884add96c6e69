//! Crash-only: a panic anywhere ends the process at once, and the next start
//! knows how the previous run ended.
//!
//! # The panic hook
//!
//! [`install_panic_hook`] replaces Rust's hook for the whole process. On a
//! panic in any thread or task (the broker's threads, the buffer's writer,
//! the segmenter, the uplink, a serial poller, a connection) it
//!
//! 1. prints the standard panic message (and backtrace, if `RUST_BACKTRACE`
//!    asks for one) and logs one ERROR line naming the component;
//! 2. writes the panic into the lifecycle record;
//! 3. calls [`std::process::abort`]: SIGABRT, exit status 134.
//!
//! No thread is left half alive: a poisoned lock, a dead task whose channel
//! others still wait on, a broker thread that no longer accepts. Whatever
//! was acknowledged is already committed to the buffer (the kill -9
//! guarantee), so the restart that systemd (`Restart=on-failure`) or the
//! container runtime performs loses nothing. The hook behaves the same
//! whether the binary was built with `panic = "unwind"` or `"abort"`.
//!
//! # The lifecycle record
//!
//! `<data_dir>/lifecycle.json` counts starts, unclean exits, panics and
//! stalls, and keeps the last exit. It is marked `running` at start and
//! cleared by a clean stop; a start that finds it still `running` and no
//! recorded exit counts an unclean exit of unknown cause (SIGKILL, the OOM
//! killer, power loss). `/health`, `/api/v1/status` and `/metrics` show it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

tokio::task_local! {
    /// The component a task belongs to, for the panic record.
    static COMPONENT: &'static str;
}

/// Runs `fut` as part of `component`: a panic inside it names it.
pub async fn in_component<F: std::future::Future>(component: &'static str, fut: F) -> F::Output {
    COMPONENT.scope(component, fut).await
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// SIGTERM/SIGINT and an orderly stop.
    Clean,
    /// A panic; the agent aborted itself.
    Panic,
    /// A component stalled past `supervisor.stall_timeout`; the agent
    /// aborted itself.
    Stall,
    /// The run ended without saying how: SIGKILL, the OOM killer, the
    /// systemd watchdog, power loss.
    Unknown,
}

/// The last exit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExitRecord {
    pub kind: ExitKind,
    /// RFC 3339; for `unknown`, when the next start noticed it.
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// `lifecycle.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LifecycleRecord {
    pub starts: u64,
    pub unclean_exits: u64,
    pub panics: u64,
    pub stalls: u64,
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitRecord>,
}

/// The lifecycle file of one data directory.
#[derive(Debug)]
pub struct Lifecycle {
    path: PathBuf,
    record: Mutex<LifecycleRecord>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl Lifecycle {
    /// Reads `<dir>/lifecycle.json` (a missing or unreadable file starts a
    /// new record) and records this start: the previous run, if it never
    /// recorded its end, counts as an unclean exit of unknown cause.
    pub fn start(dir: &Path) -> Lifecycle {
        let path = dir.join("lifecycle.json");
        let mut record: LifecycleRecord = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable lifecycle record; starting a new one");
                LifecycleRecord::default()
            }),
            Err(_) => LifecycleRecord::default(),
        };
        if record.running {
            record.unclean_exits += 1;
            record.last_exit = Some(ExitRecord {
                kind: ExitKind::Unknown,
                at: now_rfc3339(),
                component: None,
                thread: None,
                message: Some("the previous run ended without a clean stop (SIGKILL, OOM killer, systemd watchdog or power loss)".into()),
                location: None,
            });
        }
        if let Some(exit) = &record.last_exit
            && exit.kind != ExitKind::Clean
        {
            tracing::warn!(
                kind = ?exit.kind,
                at = %exit.at,
                component = exit.component.as_deref().unwrap_or("-"),
                message = exit.message.as_deref().unwrap_or("-"),
                "the previous run ended abnormally"
            );
        }
        record.starts += 1;
        record.running = true;
        record.last_start = Some(now_rfc3339());
        let lifecycle = Lifecycle {
            path,
            record: Mutex::new(record),
        };
        lifecycle.save();
        lifecycle
    }

    /// A copy of the record.
    pub fn record(&self) -> LifecycleRecord {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records an orderly stop.
    pub fn clean_stop(&self) {
        self.finish(ExitRecord {
            kind: ExitKind::Clean,
            at: now_rfc3339(),
            component: None,
            thread: None,
            message: None,
            location: None,
        });
    }

    /// Records how this run ends (panic, stall or clean).
    pub fn finish(&self, exit: ExitRecord) {
        {
            // A panic while the record is locked must still be able to
            // record itself: take the lock even if poisoned, and never
            // block on it from the panic hook (try_lock there).
            let mut record = match self.record.try_lock() {
                Ok(r) => r,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            match exit.kind {
                ExitKind::Panic => {
                    record.panics += 1;
                    record.unclean_exits += 1;
                }
                ExitKind::Stall => {
                    record.stalls += 1;
                    record.unclean_exits += 1;
                }
                ExitKind::Unknown => record.unclean_exits += 1,
                ExitKind::Clean => {}
            }
            record.running = false;
            record.last_exit = Some(exit);
        }
        self.save();
    }

    /// Writes the record (temporary file, fsync, rename). Failures are
    /// logged: the record is for operators, not for correctness.
    fn save(&self) {
        let record = match self.record.try_lock() {
            Ok(r) => r.clone(),
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().clone(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let Ok(bytes) = serde_json::to_vec_pretty(&record) else {
            return;
        };
        let tmp = self.path.with_extension("json.tmp");
        let written = (|| -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the lifecycle record");
        }
    }
}

static LIFECYCLE: OnceLock<std::sync::Arc<Lifecycle>> = OnceLock::new();

/// The component a thread belongs to, from its name.
fn component_of_thread(thread: &str) -> &'static str {
    match thread {
        t if t.starts_with("rumqttd") || t.starts_with("ferry-rumqttd") => "broker",
        "ferry-store" => "store",
        "ferry-supervisor" => "supervisor",
        _ => "unknown",
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Installs the crash-only panic hook for the whole process (see the module
/// docs). Call once, early in `main`, after logging is set up.
pub fn install_panic_hook(lifecycle: std::sync::Arc<Lifecycle>) {
    let _ = LIFECYCLE.set(lifecycle);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        let component = COMPONENT
            .try_with(|c| *c)
            .unwrap_or_else(|_| component_of_thread(&thread));
        let message = payload_text(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        tracing::error!(
            component,
            thread = %thread,
            location = location.as_deref().unwrap_or("-"),
            %message,
            "internal fault: a panic; the agent exits now so that it is restarted (crash-only)"
        );
        if let Some(lifecycle) = LIFECYCLE.get() {
            lifecycle.finish(ExitRecord {
                kind: ExitKind::Panic,
                at: now_rfc3339(),
                component: Some(component.to_owned()),
                thread: Some(thread),
                message: Some(message),
                location,
            });
        }
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclean_exits_are_noticed_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Lifecycle::start(dir.path());
        assert_eq!(first.record().starts, 1);
        assert!(first.record().running);
        drop(first); // as if killed: nothing recorded

        let second = Lifecycle::start(dir.path());
        let r = second.record();
        assert_eq!((r.starts, r.unclean_exits), (2, 1));
        assert_eq!(
            r.last_exit.as_ref().map(|e| e.kind),
            Some(ExitKind::Unknown)
        );
        second.finish(ExitRecord {
            kind: ExitKind::Panic,
            at: now_rfc3339(),
            component: Some("uplink".into()),
            thread: None,
            message: Some("boom".into()),
            location: None,
        });

        let third = Lifecycle::start(dir.path());
        let r = third.record();
        assert_eq!((r.starts, r.unclean_exits, r.panics), (3, 2, 1));
        let exit = r.last_exit.expect("last exit");
        assert_eq!(exit.kind, ExitKind::Panic);
        assert_eq!(exit.component.as_deref(), Some("uplink"));
        third.clean_stop();

        let fourth = Lifecycle::start(dir.path());
        let r = fourth.record();
        assert_eq!((r.starts, r.unclean_exits), (4, 2));
        assert_eq!(r.last_exit.map(|e| e.kind), Some(ExitKind::Clean));
    }

    #[test]
    fn a_corrupt_record_starts_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("lifecycle.json"), b"{not json").expect("write");
        let l = Lifecycle::start(dir.path());
        assert_eq!(l.record().starts, 1);
    }

    #[test]
    fn threads_map_to_components() {
        assert_eq!(component_of_thread("rumqttd-v5"), "broker");
        assert_eq!(component_of_thread("ferry-store"), "store");
        assert_eq!(component_of_thread("ferry-agent"), "unknown");
    }
}
