//! Scenario 3: `kill -9` of the hub, repeatedly, while segments stream in
//! — at random moments (mid-upload, mid-commit) and, every third round,
//! exactly between a durable commit and its answer (the hub's test-only
//! failpoint `abort_after_commit`). Each time it restarts on the same data.

use std::time::{Duration, Instant};

use super::Setup;
use crate::faults::rig::Storage;
use crate::faults::{Rng, Scale, Summary};

pub fn hub_kill(scale: Scale) -> Summary {
    let mut s = Setup::new("hub-kill", Storage::Fs, |o| o.segment_max_age = "100ms");
    let mut rng = Rng::from_env("hub-kill");
    let load = s.load(2, 250);
    let kills = scale.count(10, 8);
    let end = Instant::now() + scale.duration(Duration::ZERO);
    let (mut random, mut aborted) = (0u64, 0u64);
    while random + aborted < kills || Instant::now() < end {
        if (random + aborted) % 3 == 2 {
            // Restart armed: the hub aborts right after its next commit.
            s.hub.kill();
            s.hub
                .start_with(&[("FERRY_HUB_FAILPOINT", "abort_after_commit")]);
            crate::wait_until("the armed hub to abort", Duration::from_secs(60), || {
                !s.hub.is_running()
            });
            aborted += 1;
        } else {
            std::thread::sleep(rng.between(Duration::from_millis(300), Duration::from_secs(2)));
            s.hub.kill();
            random += 1;
        }
        std::thread::sleep(rng.between(Duration::ZERO, Duration::from_millis(800)));
        s.hub.start();
    }
    let notes = vec![
        format!("random_kills={random}"),
        format!("aborts_after_commit={aborted}"),
    ];
    let summary = s.finish(load, random + aborted, 0, notes);
    summary.assert_exact();
    summary
}
