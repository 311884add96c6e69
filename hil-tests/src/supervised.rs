//! A stand-in for systemd's `Restart=on-failure` and `Type=notify`: runs a
//! process, restarts it shortly after it exits unsuccessfully, records every
//! exit, and plays the notification socket (`NOTIFY_SOCKET`,
//! `WATCHDOG_USEC`) so tests can see `READY=1` and the watchdog pings.

use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One exit of the supervised process.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub at: Instant,
    pub status: ExitStatus,
}

impl Exit {
    /// The signal that ended the process, if one did (6 = SIGABRT).
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

#[derive(Debug, Default)]
struct State {
    child: Option<Child>,
    exits: Vec<Exit>,
    starts: Vec<Instant>,
    notifications: Vec<(Instant, String)>,
}

/// A supervised process; dropping it kills the process and stops restarts.
#[derive(Debug)]
pub struct Supervised {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    _socket_dir: tempfile::TempDir,
}

impl Supervised {
    /// Starts `program args…` with output appended to `log`, restarting it
    /// `restart_after` after every unsuccessful exit (like `RestartSec`),
    /// with `NOTIFY_SOCKET` set and, if given, `WATCHDOG_USEC`.
    pub fn start(
        program: &Path,
        args: &[&str],
        log: &Path,
        restart_after: Duration,
        watchdog: Option<Duration>,
    ) -> Supervised {
        let socket_dir = tempfile::tempdir().expect("tempdir");
        let socket_path = socket_dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));

        let listener = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        lock(&state).notifications.push((Instant::now(), text));
                    }
                }
            })
        };

        let runner = {
            let (state, stop) = (state.clone(), stop.clone());
            let program = program.to_path_buf();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let log: PathBuf = log.to_path_buf();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let out = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .expect("open the log");
                    let err = out.try_clone().expect("clone the log handle");
                    let mut cmd = Command::new(&program);
                    cmd.args(&args)
                        .env("NOTIFY_SOCKET", &socket_path)
                        .stdin(Stdio::null())
                        .stdout(out)
                        .stderr(err);
                    if let Some(w) = watchdog {
                        cmd.env("WATCHDOG_USEC", w.as_micros().to_string());
                    }
                    let child = cmd.spawn().expect("start the supervised process");
                    {
                        let mut s = lock(&state);
                        s.starts.push(Instant::now());
                        s.child = Some(child);
                    }
                    let status = loop {
                        if let Some(status) = lock(&state)
                            .child
                            .as_mut()
                            .and_then(|c| c.try_wait().ok().flatten())
                        {
                            break status;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    };
                    {
                        let mut s = lock(&state);
                        s.child = None;
                        s.exits.push(Exit {
                            at: Instant::now(),
                            status,
                        });
                    }
                    if status.success() {
                        return;
                    }
                    std::thread::sleep(restart_after);
                }
            })
        };
        Supervised {
            state,
            stop,
            threads: vec![listener, runner],
            _socket_dir: socket_dir,
        }
    }

    /// Every exit so far.
    pub fn exits(&self) -> Vec<Exit> {
        lock(&self.state).exits.clone()
    }

    /// How many times the process was started.
    pub fn starts(&self) -> usize {
        lock(&self.state).starts.len()
    }

    /// The process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.state).child.as_ref().map(Child::id)
    }

    /// Every notification received so far, with when it arrived.
    pub fn notifications(&self) -> Vec<(Instant, String)> {
        lock(&self.state).notifications.clone()
    }

    /// Waits until the process has exited `count` times in all.
    pub fn wait_for_exits(&self, count: usize, timeout: Duration) -> Exit {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.exits().get(count - 1) {
                return *exit;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit {count} time(s) within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(child) = lock(&self.state).child.as_mut() {
            let _ = child.kill();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
