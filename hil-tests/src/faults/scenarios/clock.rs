//! Scenario 9: clock trouble on the gateway.
//!
//! * Devices with wrong clocks: a third of the readings carry a timestamp
//!   13 years in the past, a third one 2 years in the future. They are
//!   stored with exactly the time the device sent.
//! * The gateway's clock steps back one hour, then forward again, under
//!   load (libfaketime, with `FAKETIME_DONT_FAKE_MONOTONIC=1` so only the
//!   wall clock jumps, as with an NTP step or a dead RTC battery). Readings
//!   the agent stamps take the stepped clock; segments must still be cut
//!   on time, so readings keep reaching the lake within seconds; nothing is
//!   lost or doubled.

use std::path::Path;
use std::time::{Duration, Instant};

use super::Setup;
use crate::faults::load::Timestamps;
use crate::faults::oracle::scalar;
use crate::faults::rig::Storage;
use crate::faults::{Scale, Summary};

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// 2013-01-01 and 2028-11-26 (ms).
const PAST_MS: i64 = 1_356_998_400_000;
const FUTURE_MS: i64 = 1_858_636_800_000;

pub fn clock_jumps(scale: Scale) -> Summary {
    let lib = Path::new(LIBFAKETIME);
    assert!(
        lib.is_file() || !crate::peers_required(),
        "clock-jumps needs libfaketime (apt-get install faketime)"
    );
    // Low load: segments must be cut by age, not by size.
    let mut s = Setup::prepare("clock-jumps", Storage::Fs, |o| o.segment_max_age = "300ms");
    let clock_file = s.dir.path().join("faketime");
    std::fs::write(&clock_file, "+0\n").expect("faketime file");
    s.agent_env = vec![
        ("LD_PRELOAD".into(), LIBFAKETIME.into()),
        (
            "FAKETIME_TIMESTAMP_FILE".into(),
            clock_file.display().to_string(),
        ),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
    s.start_agent();
    let timestamps = Timestamps::Mixed {
        past_ms: PAST_MS,
        future_ms: FUTURE_MS,
    };
    let load = s.load_with(2, 20, timestamps);
    let phase = scale.duration(Duration::from_secs(4)) / if scale.long { 4 } else { 1 };
    let table = s.table();
    let agent_stamped_max = |s: &Setup| {
        scalar(
            s.hub.addr,
            &format!(
                "SELECT CAST(max(time) AS BIGINT) FROM {table} WHERE CAST(seq AS BIGINT) % 3 = 2"
            ),
        )
    };
    std::thread::sleep(phase);
    let mut notes = Vec::new();
    let mut steps = 0;
    for (label, offset) in [("back_1h", "-3600"), ("forward_again", "+0")] {
        std::fs::write(&clock_file, format!("{offset}\n")).expect("step the clock");
        steps += 1;
        let stepped = Instant::now();
        // A reading published after the step must reach the lake within
        // seconds: segments are still cut by age.
        std::thread::sleep(Duration::from_millis(200));
        let after = load.last_seq();
        crate::wait_until(
            &format!("a reading published after the clock stepped {label} in the lake"),
            Duration::from_secs(5),
            || {
                scalar(
                    s.hub.addr,
                    &format!("SELECT CAST(max(seq) AS BIGINT) FROM {table}"),
                )
                .is_some_and(|m| m >= after)
            },
        );
        notes.push(format!(
            "{label}_fresh_after={}ms",
            stepped.elapsed().as_millis()
        ));
        std::thread::sleep(phase);
    }
    let newest = agent_stamped_max(&s);
    let summary = s.finish(load, steps, 0, notes);
    summary.assert_exact();
    let check = timestamps
        .mismatch_sql(&table)
        .and_then(|sql| scalar(s.hub.addr, &sql));
    assert_eq!(check, Some(0), "device timestamps were changed ({summary})");
    // The agent stamped readings with the stepped clock: some are about an
    // hour older than the newest.
    let newest = newest.unwrap_or_else(|| panic!("no agent-stamped readings ({summary})"));
    let stepped = scalar(
        s.hub.addr,
        &format!(
            "SELECT count(*) FROM {table} WHERE CAST(seq AS BIGINT) % 3 = 2 AND CAST(time AS BIGINT) < {}",
            newest as i64 - 3_000_000_000
        ),
    );
    assert!(
        stepped.is_some_and(|n| n > 0),
        "no reading carries the stepped-back clock ({summary})"
    );
    let past = scalar(
        s.hub.addr,
        &format!("SELECT count(*) FROM {table} WHERE time < '2014-01-01T00:00:00Z'"),
    );
    assert!(past.is_some_and(|n| n > 0), "no past-dated readings stored");
    summary
}
