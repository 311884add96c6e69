//! The `[supervisor]` section: how liveness is checked and when a stalled
//! agent gives up and exits so that it is restarted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[supervisor]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorConfig {
    /// How often the agent connects to each of its own MQTT listeners
    /// (MQTT 3.1.1 and 5, CONNECT → CONNACK → PINGREQ → PINGRESP) and asks
    /// the buffer's writer to answer.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub probe_interval: Duration,
    /// How long one probe may take before it counts as failed.
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// A component that has shown no progress for this long past its own
    /// deadline makes the agent exit (SIGABRT, recorded as a stall) so that
    /// systemd or the container runtime restarts it. `0s` only reports
    /// (`/health` answers 503, the systemd watchdog is no longer pinged).
    #[serde(default = "default_stall_timeout", with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// The longest a loop (the uplink, the segmenter) may spend on one
    /// internal step (a buffer query, cutting a segment) before it counts
    /// as stalled; added to every wait it declares. Generous: an SD card
    /// can stall for seconds, and a false stall restarts a working gateway.
    #[serde(default = "default_work_timeout", with = "humantime_serde")]
    pub work_timeout: Duration,
}

fn default_work_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(5)
}

fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_stall_timeout() -> Duration {
    Duration::from_secs(20)
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            probe_interval: default_probe_interval(),
            probe_timeout: default_probe_timeout(),
            stall_timeout: default_stall_timeout(),
            work_timeout: default_work_timeout(),
        }
    }
}

impl SupervisorConfig {
    /// Every problem, with its key path.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.probe_interval < Duration::from_millis(100) {
            errors.push("supervisor.probe_interval: must be at least 100ms".into());
        }
        if self.probe_timeout < Duration::from_millis(100) {
            errors.push("supervisor.probe_timeout: must be at least 100ms".into());
        }
        if self.work_timeout < Duration::from_secs(1) {
            errors.push("supervisor.work_timeout: must be at least 1s".into());
        }
        if self.probe_interval > Duration::from_secs(3600) {
            errors.push("supervisor.probe_interval: must be at most 1h".into());
        }
    }

    /// How long after a successful probe the next one must have succeeded.
    pub fn probe_deadline(&self) -> Duration {
        self.probe_interval + self.probe_timeout + Duration::from_secs(1)
    }
}
