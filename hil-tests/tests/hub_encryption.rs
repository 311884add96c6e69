//! A real `ferry-hub` with `[encryption]` on and its keys in an environment
//! variable: the hub's SQL answers what was written, while pyarrow cannot
//! open any data file in its store, delta-rs (the `deltalake` Python
//! package) cannot open its tables, no written value appears in any file,
//! and neither the key nor a token appears in the hub's log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{Peer, free_port, http, query, wait_for_port, workspace_bin};

const KEY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const SECRET: &str = "omega-valve-7731";

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn encrypted_files_open_only_through_the_hub() {
    let Some(python) = python_with(&["pyarrow.parquet", "deltalake"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let tables = dir.path().join("tables");
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n[tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n[auth]\nenabled = false\n[encryption]\nenabled = true\nkey_env = \"FERRY_TEST_HUB_KEYS\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n",
            tables.display(),
            dir.path().join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let log = dir.path().join("hub.log");
    let hub = Peer::spawn(
        "ferry-hub",
        Command::new(workspace_bin("ferry-hub"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("FERRY_TEST_HUB_KEYS", format!("plant-2026:{KEY}")),
        &log,
    );
    wait_for_port(addr, Duration::from_secs(120));

    let body: String = (0..500)
        .map(|i| {
            format!(
                "valves,line=l{} opening={}.25,label=\"{SECRET}\" {}\n",
                i % 5,
                i,
                1_764_115_200_000_000_000i64 + i * 1_000_000_000
            )
        })
        .collect();
    let (status, answer) = http(
        "POST",
        addr,
        "/api/v1/write/line-protocol?db=plant",
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 204, "{answer}");
    let v = query(
        addr,
        None,
        "SELECT count(*) AS n, sum(opening) AS s, min(label) AS l FROM plant.valves",
    )
    .expect("the hub answers");
    assert_eq!(v["data"][0][0], 500, "{v}");
    assert_eq!(v["data"][0][1], 124_875.0, "{v}");
    assert_eq!(v["data"][0][2], SECRET, "{v}");

    // Rotation with keys from the environment: the hub cannot add one itself.
    let (status, answer) = http("POST", addr, "/api/v1/admin/keys/rotate", &[], b"");
    assert_eq!(status, 409, "{answer}");
    assert!(answer.contains("FERRY_TEST_HUB_KEYS"), "{answer}");

    let mut all = Vec::new();
    files(&tables, &mut all);
    let parquet: Vec<&PathBuf> = all
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!parquet.is_empty(), "{all:?}");
    for f in &all {
        let bytes = std::fs::read(f).expect("read");
        for plain in [SECRET, "opening", "valves"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "{} holds {plain:?} in plaintext",
                f.display()
            );
        }
    }
    // pyarrow, and delta-rs, without the key.
    let script = r#"
import sys, tempfile, os, pyarrow as pa, pyarrow.parquet as pq, deltalake
# The control: this pyarrow reads a plaintext file.
control = os.path.join(tempfile.mkdtemp(), "c.parquet")
pq.write_table(pa.table({"x": [1, 2]}), control)
assert pq.read_table(control).num_rows == 2
opened = []
for f in sys.argv[2:]:
    try:
        pq.read_table(f)
        opened.append(f)
    except Exception as e:
        pass
try:
    deltalake.DeltaTable(sys.argv[1]).to_pyarrow_table()
    opened.append(sys.argv[1])
except Exception:
    pass
print("OPENED" if opened else "NONE", *opened)
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(tables.join("plant/valves"))
        .args(&parquet)
        .output()
        .expect("run python");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "NONE", "opened without the key: {text}");

    drop(hub);
    let logged = std::fs::read_to_string(&log).expect("hub log");
    assert!(logged.contains("\"encrypted\":true"), "{logged}");
    assert!(!logged.contains(KEY), "the key is in the hub's log");
}
