//! Scenario 1: `kill -9` of the agent at random moments under sustained
//! QoS 1 load, at least ten times, each time restarted on the same buffer.

use std::time::Duration;

use super::{Setup, sleep_while};
use crate::faults::rig::Storage;
use crate::faults::{Rng, Scale, Summary};

pub fn agent_kill(scale: Scale) -> Summary {
    let mut s = Setup::new("agent-kill", Storage::Fs, |_| {});
    let mut rng = Rng::from_env("agent-kill");
    let load = s.load(2, 250);
    let kills = scale.count(10, 8);
    let end = std::time::Instant::now() + scale.duration(Duration::ZERO);
    let mut done = 0;
    while done < kills || std::time::Instant::now() < end {
        let before = load.acked();
        let agent = &mut s.agent;
        sleep_while(
            rng.between(Duration::from_millis(400), Duration::from_millis(2500)),
            || agent.pid().is_some(),
        );
        s.agent.kill();
        done += 1;
        std::thread::sleep(rng.between(Duration::ZERO, Duration::from_millis(500)));
        s.start_agent();
        // The publishers must be getting through between kills.
        let waited = std::time::Instant::now();
        while load.acked() == before && waited.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            load.acked() > before,
            "nothing acknowledged after restart {done}"
        );
    }
    let summary = s.finish(load, done, 0, vec![format!("kills={done}")]);
    summary.assert_exact();
    summary
}
