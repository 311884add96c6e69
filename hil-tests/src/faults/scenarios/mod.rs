//! The scenarios. Each is a function of a [`Scale`] that panics when a
//! guarantee breaks and returns its [`Summary`] otherwise.

mod agent_kill;
mod clock;
mod disk_budget;
mod flapping;
mod hub_kill;
mod hub_unreachable;
mod object_store;
mod power_cut;
mod serial_unplug;

pub use agent_kill::agent_kill;
pub use clock::clock_jumps;
pub use disk_budget::{disk_budget_drop_oldest, disk_budget_reject_new};
pub use flapping::flapping;
pub use hub_kill::hub_kill;
pub use hub_unreachable::hub_unreachable;
pub use object_store::object_store;
pub use power_cut::power_cut;
pub use serial_unplug::serial_unplug;

use std::path::Path;
use std::time::{Duration, Instant};

use super::load::{Load, LoadSpec, Timestamps, read_logs};
use super::oracle::{self, Expect};
use super::rig::{AgentCtl, AgentOpts, HubCtl, Storage};
use super::{FaultProxy, RssSampler, Scale, Summary};

/// A scenario: panics when a guarantee breaks.
pub type Scenario = fn(Scale) -> Summary;

/// Every scenario by name, for the runner.
pub const ALL: &[(&str, Scenario)] = &[
    ("agent-kill", agent_kill),
    ("hub-unreachable", hub_unreachable),
    ("hub-kill", hub_kill),
    ("object-store", object_store),
    ("disk-budget-reject-new", disk_budget_reject_new),
    ("disk-budget-drop-oldest", disk_budget_drop_oldest),
    ("power-cut", power_cut),
    ("flapping", flapping),
    ("serial-unplug", serial_unplug),
    ("clock-jumps", clock_jumps),
];

/// A hub, a fault proxy in front of it, an agent uploading through the
/// proxy, and an RSS sampler on the agent.
#[derive(Debug)]
pub struct Setup {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub hub: HubCtl,
    pub proxy: FaultProxy,
    pub agent: AgentCtl,
    pub rss: RssSampler,
    /// Extra environment for every agent start.
    pub agent_env: Vec<(String, String)>,
    started: Instant,
}

impl Setup {
    /// Starts everything; `tweak` adjusts the agent's config.
    pub fn new(name: &str, storage: Storage, tweak: impl FnOnce(&mut AgentOpts)) -> Setup {
        let mut setup = Setup::prepare(name, storage, tweak);
        setup.start_agent();
        setup
    }

    /// Starts the hub and the proxy; the agent is configured, not started.
    pub fn prepare(name: &str, storage: Storage, tweak: impl FnOnce(&mut AgentOpts)) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-faults-{name}-"))
            .tempdir()
            .expect("tempdir");
        let mut hub = HubCtl::new(&dir.path().join("hub"), storage);
        hub.start();
        let proxy = FaultProxy::start(hub.addr);
        let mut opts = AgentOpts::new(&format!("gw-{name}"), proxy.addr());
        tweak(&mut opts);
        let agent = AgentCtl::new(&dir.path().join("agent"), &measurement(name), &opts);
        Setup {
            name: name.to_owned(),
            dir,
            hub,
            proxy,
            agent,
            rss: RssSampler::start(),
            agent_env: Vec::new(),
            started: Instant::now(),
        }
    }

    /// (Re)starts the agent (with [`Setup::agent_env`]) and samples its
    /// memory.
    pub fn start_agent(&mut self) {
        let env: Vec<(&str, &str)> = self
            .agent_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let pid = self.agent.start_with(&env);
        self.rss.watch(pid);
    }

    /// `plant.<measurement>`.
    pub fn table(&self) -> String {
        format!("plant.{}", measurement(&self.name))
    }

    /// Starts QoS 1 publishers against the agent.
    pub fn load(&self, publishers: usize, rate: u32) -> Load {
        self.load_with(publishers, rate, Timestamps::Agent)
    }

    /// Like [`Setup::load`], with device timestamps.
    pub fn load_with(&self, publishers: usize, rate: u32, timestamps: Timestamps) -> Load {
        let spec = LoadSpec {
            port: self.agent.mqtt,
            publishers,
            rate,
            window: 20,
            topic_prefix: "faults".to_owned(),
            timestamps,
        };
        Load::start(&spec, &self.dir.path().join("load"))
    }

    /// Rows in the table now (0 before it exists).
    pub fn lake_rows(&self) -> u64 {
        oracle::scalar(
            self.hub.addr,
            &format!("SELECT count(*) FROM {}", self.table()),
        )
        .unwrap_or(0)
    }

    /// Stops the load, lets the agent drain, and runs the oracle.
    pub fn finish(
        &mut self,
        load: Load,
        faults: u64,
        documented_drops: u64,
        notes: Vec<String>,
    ) -> Summary {
        let logs = load.stop();
        let expect = expect_from(&logs, documented_drops);
        let drained = self.agent.wait_drained(Duration::from_secs(180));
        let verdict = oracle::check(
            self.hub.addr,
            &self.table(),
            &expect,
            Duration::from_secs(if drained { 30 } else { 5 }),
        );
        let summary = Summary {
            scenario: self.name.clone(),
            verdict,
            faults,
            max_agent_rss_mb: self.rss.max_mb(),
            duration: self.started.elapsed(),
            notes,
        };
        summary.report();
        assert!(drained, "the agent did not drain its buffer: {summary}");
        summary
    }
}

/// What the publishers' logs say the lake must hold.
pub fn expect_from(logs: &Path, documented_drops: u64) -> Expect {
    Expect {
        acked: read_logs(logs, "acked"),
        maybe: read_logs(logs, "unacked"),
        documented_drops,
    }
}

fn measurement(name: &str) -> String {
    name.replace('-', "_")
}

/// Sleeps `d`, in small steps, while `alive` holds (so a dead process is
/// noticed early).
pub fn sleep_while(d: Duration, mut alive: impl FnMut() -> bool) {
    let end = Instant::now() + d;
    while Instant::now() < end && alive() {
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
}
