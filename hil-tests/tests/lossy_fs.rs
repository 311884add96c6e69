//! The power-cut layer itself: `peers/test_lossy_fs.py` proves that
//! `lossy_fs` loses what was never fsynced (SQLite with `synchronous = OFF`
//! loses commits, a plain unsynced file is emptied) and keeps what was
//! (WAL with `synchronous = FULL` keeps every acknowledged commit, torn
//! pages included). Without this, the `power-cut` scenario could pass on a
//! layer that drops nothing.

use std::process::Command;

use ferry_hil_tests::serial::{peers_dir, python_with};

#[test]
fn lossy_fs_drops_unsynced_writes_and_keeps_synced_ones() {
    if !std::path::Path::new("/dev/fuse").exists() && !ferry_hil_tests::peers_required() {
        eprintln!("SKIPPED: no /dev/fuse");
        return;
    }
    let Some(python) = python_with(&["fuse"]) else {
        return;
    };
    let out = Command::new(python)
        .arg(peers_dir().join("test_lossy_fs.py"))
        .output()
        .expect("run test_lossy_fs.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "lossy_fs self-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
