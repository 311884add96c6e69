//! Several `ferry-hub` processes over one lake (a table directory, or a
//! bucket on moto or Azurite: [`crate::stores`]): writers with
//! `storage.multi_writer = true` and read replicas (`replica.role =
//! "reader"`), each with its own metadata store, following the lake's
//! shared metadata log; auth off unless [`Lake::with_auth`].

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::stores::Store;
use crate::{Peer, wait_for_port, workspace_bin};

/// Where the shared tables are, and the directory for each hub's metadata
/// and log.
#[derive(Debug, Clone)]
pub struct Lake<'a> {
    dir: &'a Path,
    /// `[storage]` keys, without `multi_writer`.
    storage: String,
    env: Vec<(String, String)>,
    auth: bool,
}

impl<'a> Lake<'a> {
    /// Tables in `dir/tables`.
    pub fn fs(dir: &'a Path) -> Lake<'a> {
        Lake {
            dir,
            storage: format!(
                "backend = \"fs\"\npath = \"{}\"\n",
                dir.join("tables").display()
            ),
            env: Vec::new(),
            auth: false,
        }
    }

    /// Tables in `store`'s bucket or container.
    pub fn on(dir: &'a Path, store: &Store) -> Lake<'a> {
        Lake {
            dir,
            storage: store.storage.clone(),
            env: store.env.clone(),
            auth: false,
        }
    }

    /// The hubs authenticate (`auth.enabled = true`): the first writer
    /// prints the bootstrap admin token ([`Lake::admin_token`]), the others
    /// get it through the shared metadata log.
    pub fn with_auth(mut self) -> Lake<'a> {
        self.auth = true;
        self
    }

    /// The bootstrap admin token hub `name` printed in run `run`.
    pub fn admin_token(&self, name: &str, run: u32) -> String {
        let log = self.dir.join(format!("{name}-{run}.log"));
        let mut token = None;
        crate::wait_until("the bootstrap admin token", Duration::from_secs(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            token = text
                .split_whitespace()
                .find(|w| w.starts_with("ferry_"))
                .map(str::to_owned);
            token.is_some()
        });
        token.unwrap_or_default()
    }

    /// Starts hub `name` on `addr` over this lake, with metadata
    /// `dir/<name>.db` and log `dir/<name>-<run>.log`, and waits until it
    /// listens.
    pub fn launch(&self, name: &str, addr: SocketAddr, role: Role, run: u32) -> Peer {
        launch_with(self, name, addr, role, run)
    }
}

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

fn launch_with(lake: &Lake<'_>, name: &str, addr: SocketAddr, role: Role, run: u32) -> Peer {
    let dir = lake.dir;
    let config = dir.join(format!("{name}.toml"));
    let replica = match role {
        Role::Reader(staleness) => format!(
            "[replica]\nrole = \"reader\"\nmax_staleness = \"{}ms\"\nfleet_interval = \"500ms\"\n",
            staleness.as_millis()
        ),
        // A short maintenance lease, so that a takeover fits in a test.
        _ => "[replica]\nlease_ttl = \"1s\"\nfleet_interval = \"500ms\"\n".to_owned(),
    };
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n\
             [storage]\n{}multi_writer = true\n\
             [tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n\
             [auth]\nenabled = {}\n{replica}",
            lake.storage,
            dir.join(format!("{name}.db")).display(),
            lake.auth
        ),
    )
    .expect("write the hub's config");
    let mut cmd = Command::new(workspace_bin("ferry-hub"));
    cmd.args(["serve", "--config"]).arg(&config);
    cmd.envs(lake.env.iter().map(|(k, v)| (k, v)));
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
