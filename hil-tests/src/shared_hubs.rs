//! Several `ferry-hub` processes over one table directory: writers with
//! `storage.multi_writer = true` and read replicas (`replica.role =
//! "reader"`), each with its own metadata store, no auth (each hub would
//! have its own tokens; see docs/scale-out.md).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::{Peer, wait_for_port, workspace_bin};

/// What a shared hub is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Writer,
    /// A writer that aborts right after its first segment commit is
    /// durable, before it answers (`FERRY_HUB_FAILPOINT=abort_after_commit`).
    WriterAbortingAfterCommit,
    /// A read replica with this `replica.max_staleness`.
    Reader(Duration),
}

/// Starts hub `name` on `addr` over `dir/tables`, with metadata
/// `dir/<name>.db` and log `dir/<name>-<run>.log`, and waits until it
/// listens.
pub fn launch(dir: &Path, name: &str, addr: SocketAddr, role: Role, run: u32) -> Peer {
    let config = dir.join(format!("{name}.toml"));
    let replica = match role {
        Role::Reader(staleness) => format!(
            "[replica]\nrole = \"reader\"\nmax_staleness = \"{}ms\"\n",
            staleness.as_millis()
        ),
        _ => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\nbackend = \"fs\"\npath = \"{}\"\nmulti_writer = true\n\
             [tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n\
             [auth]\nenabled = false\n{replica}",
            dir.join("tables").display(),
            dir.join(format!("{name}.db")).display()
        ),
    )
    .expect("write the hub's config");
    let mut cmd = Command::new(workspace_bin("ferry-hub"));
    cmd.args(["serve", "--config"]).arg(&config);
    if role == Role::WriterAbortingAfterCommit {
        cmd.env("FERRY_HUB_FAILPOINT", "abort_after_commit");
    } else {
        cmd.env_remove("FERRY_HUB_FAILPOINT");
    }
    let peer = Peer::spawn(
        "ferry-hub",
        &mut cmd,
        &dir.join(format!("{name}-{run}.log")),
    );
    wait_for_port(addr, Duration::from_secs(60));
    peer
}
