//! Scenario 6: power cuts under the agent's SQLite buffer.
//!
//! The agent's data directory is on [`LossyFs`], a FUSE layer that keeps
//! every write in memory until it is fsynced, like a disk's write cache.
//! Under QoS 1 load (group commits every few ms, segments cut every
//! 200 ms), the agent is SIGKILLed at a random moment and the power is cut
//! at once: every unsynced byte is lost, and with `--keep-fraction` some
//! dirty pages reach the disk anyway (torn writes). After each cut the
//! buffer must pass SQLite's full `integrity_check`, and at the end every
//! acknowledged reading must be in the lake exactly once.

use std::process::Command;
use std::time::Duration;

use super::Setup;
use crate::faults::rig::Storage;
use crate::faults::{Rng, Scale, Summary};
use crate::lossy_fs::LossyFs;

pub fn power_cut(scale: Scale) -> Summary {
    let work = tempfile::tempdir().expect("tempdir");
    let backing = work.path().join("disk");
    let mnt = work.path().join("mnt");
    std::fs::create_dir_all(&backing).expect("backing dir");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let mut s = Setup::prepare("power-cut", Storage::Fs, |o| {
        o.data_dir = Some(mnt.join("agent"));
        o.integrity_check = "full";
    });
    let mut rng = Rng::from_env("power-cut");
    let python = crate::find_tool("python3").unwrap_or_else(|| "python3".into());
    let cuts = scale.count(6, 6);
    let end = std::time::Instant::now() + scale.duration(Duration::ZERO);
    let mut load = None;
    let mut done = 0u64;
    while done < cuts || std::time::Instant::now() < end {
        let keep = format!("{:.2}", (rng.next_u64() % 100) as f64 / 100.0);
        let seed = (rng.next_u64() % 1_000_000).to_string();
        let Some(mut fs) =
            LossyFs::mount_with(&backing, &mnt, &["--keep-fraction", &keep, "--seed", &seed])
        else {
            panic!("power-cut needs FUSE (see hil-tests/src/lossy_fs.rs)");
        };
        s.start_agent();
        assert!(
            s.agent.log_lines("corrupt").is_empty(),
            "the buffer was found corrupt after cut {done}: {:?}",
            s.agent.log_lines("corrupt")
        );
        let l = load.get_or_insert_with(|| s.load(2, 250));
        let before = l.acked();
        std::thread::sleep(rng.between(Duration::from_millis(700), Duration::from_millis(2500)));
        assert!(l.acked() > before, "nothing acknowledged in round {done}");
        s.agent.kill();
        fs.power_cut();
        done += 1;
        let db = backing.join("agent").join("buffer.db");
        let check = Command::new(&python)
            .arg("-c")
            .arg("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])")
            .arg(&db)
            .output()
            .expect("run python");
        let verdict = String::from_utf8_lossy(&check.stdout).trim().to_owned();
        assert_eq!(
            verdict,
            "ok",
            "integrity_check after cut {done} (keep-fraction {keep}): {verdict} {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    // Power back for good: the agent drains what survived.
    let _fs = LossyFs::mount(&backing, &mnt).expect("remount");
    s.start_agent();
    let load = load.expect("load started");
    let notes = vec![
        format!("power_cuts={done}"),
        "integrity_check=ok".to_owned(),
    ];
    let summary = s.finish(load, done, 0, notes);
    assert!(
        s.agent.log_lines("corrupt").is_empty(),
        "the buffer was found corrupt: {:?}",
        s.agent.log_lines("corrupt")
    );
    summary.assert_exact();
    summary
}
