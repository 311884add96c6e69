//! A power-cut simulator: a FUSE mount that loses every write not fsynced.
//!
//! [`LossyFs::mount`] starts `peers/lossy_fs.py` (fusepy on libfuse 2, in
//! the project's venv), which mounts a backing directory at a mount point.
//! File data written through the mount stays in that process's memory, as
//! in a disk's write cache, until the file is fsynced (or fdatasynced):
//! then it is written to the backing file and fsynced there. Metadata
//! (create, rename, unlink, mkdir) goes to the backing directory at once and
//! is never lost. Processes see their own writes as usual, SQLite's shared
//! mmap of `-shm` included.
//!
//! A crash test:
//!
//! 1. mount, and run the agent with its database under the mount point;
//! 2. record what the agent acknowledged;
//! 3. SIGKILL the agent ([`Peer::kill`]), then [`LossyFs::power_cut`]: every
//!    unsynced byte is dropped and the mount goes away. FUSE without
//!    writeback caching hands each write to the fs process inside the
//!    `write()` call, so once the writer is dead nothing of it is in flight,
//!    and killing it first is the same as a cut at the instant of the kill;
//! 4. mount the same backing directory again (or read it directly): it holds
//!    exactly what a disk would hold after the power came back.
//!
//! [`LossyFs::mount_with`] passes options to the script, e.g.
//! `["--keep-fraction", "0.5", "--seed", "7"]`: on the cut each dirty 4 KiB
//! page reaches the disk with that probability (torn writes).
//!
//! Needs root, `/dev/fuse`, libfuse2 and fusepy (`scripts/test.sh` installs
//! the last two). Without them the constructor says SKIPPED on stderr and
//! returns `None`, or panics when `FERRY_REQUIRE_PEERS=1`. Dropping a
//! `LossyFs` unmounts it (writing unsynced data back, as a clean unmount
//! does), so a failing test leaves no stale mount. `peers/test_lossy_fs.py`
//! proves the script loses what it should and keeps what it must.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serial::peers_dir;
use crate::{Peer, find_tool, peers_required, wait_until};

/// How long mounting and unmounting may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running `lossy_fs.py` mount; unmounted when dropped.
#[derive(Debug)]
pub struct LossyFs {
    peer: Option<Peer>,
    mountpoint: PathBuf,
    log: PathBuf,
}

impl LossyFs {
    /// Mounts `backing` at `mountpoint` (both existing directories) and
    /// waits until the mount serves requests. The script's log goes to
    /// `<mountpoint>.lossy_fs.log`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> Option<LossyFs> {
        Self::mount_with(backing, mountpoint, &[])
    }

    /// [`LossyFs::mount`] with extra `lossy_fs.py` options.
    pub fn mount_with(backing: &Path, mountpoint: &Path, options: &[&str]) -> Option<LossyFs> {
        if !Path::new("/dev/fuse").exists() {
            return skip_or_panic("/dev/fuse is missing (run as root in a container with FUSE)");
        }
        let python = fuse_python()?;
        let log = mountpoint.with_extension("lossy_fs.log");
        let peer = Peer::spawn(
            "lossy_fs.py",
            Command::new(python)
                .arg(peers_dir().join("lossy_fs.py"))
                .arg(backing)
                .arg(mountpoint)
                .args(options),
            &log,
        );
        let mut fs = LossyFs {
            peer: Some(peer),
            mountpoint: std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.into()),
            log,
        };
        let deadline = Instant::now() + DEADLINE;
        while !fs.log_text().lines().any(|l| l == "READY") {
            if !fs.running() || Instant::now() > deadline {
                let why = format!("lossy_fs.py could not mount: {}", fs.log_text().trim());
                return skip_or_panic(&why);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Some(fs)
    }

    /// Where the files are.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: drops every unsynced write, unmounts, and returns
    /// once the mount is gone. SIGKILL the processes writing through the
    /// mount first. Later calls do nothing.
    pub fn power_cut(&mut self) {
        self.stop("USR1");
    }

    /// A clean unmount: unsynced data is written back first (like `umount`
    /// on a real disk). Later calls do nothing.
    pub fn unmount(&mut self) {
        self.stop("TERM");
    }

    fn stop(&mut self, signal: &str) {
        let Some(mut peer) = self.peer.take() else {
            return;
        };
        // `kill` is a shell builtin: no extra tool and no libc binding needed.
        let sent = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {}", peer.id())])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "cannot signal lossy_fs.py (pid {})", peer.id());
        wait_until("lossy_fs.py to exit", DEADLINE, || !peer.is_running());
        wait_until("the lossy_fs unmount", DEADLINE, || {
            !is_mounted(&self.mountpoint)
        });
    }

    fn running(&mut self) -> bool {
        self.peer.as_mut().is_some_and(Peer::is_running)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LossyFs {
    /// Never panics: SIGTERM (clean unmount) with a deadline, then a lazy
    /// `umount -l` for whatever is left, then SIGKILL.
    fn drop(&mut self) {
        if let Some(mut peer) = self.peer.take() {
            let _ = Command::new("sh")
                .args(["-c", &format!("kill -TERM {}", peer.id())])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while peer.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        if is_mounted(&self.mountpoint) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// True while something is mounted at `path` (a canonical path).
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.to_string_lossy();
    // Field 5 is the mount point, with spaces escaped as \040.
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.replace("\\040", " ") == target)
}

/// The venv's Python when it can `import fuse` (fusepy, which also needs
/// libfuse2), else `python3` from `PATH` if it can.
fn fuse_python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("FERRY_VENV").map_or_else(|| root.join(".venv"), PathBuf::from);
    let candidates = [Some(venv.join("bin/python")), find_tool("python3")];
    let found = candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .args(["-c", "import fuse"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    found.or_else(|| {
        skip_or_panic("no Python can `import fuse` (pip install fusepy; apt-get install libfuse2)")
    })
}

fn skip_or_panic<T>(what: &str) -> Option<T> {
    assert!(
        !peers_required(),
        "{what}; scripts/test.sh installs it (scripts/lib/peers.sh)"
    );
    eprintln!("SKIPPED: {what}; run scripts/test.sh");
    None
}
