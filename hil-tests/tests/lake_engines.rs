//! Other engines read the lake where it lives: a hub writes a table to a
//! bucket on moto (S3) and to a container on Azurite (Azure Blob), and
//! delta-rs (the `deltalake` package) and Polars, configured as
//! docs/scale-out.md shows, read it there. Both see exactly the rows the
//! hub's SQL sees (count, distinct devices, sum, time range in
//! microseconds), the table is
//! partitioned by `day`, and every `add` action carries min/max statistics
//! (the file skipping of every other engine depends on them).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::shared_hubs::{Lake, Role};
use ferry_hil_tests::stores::{self, Store};
use ferry_hil_tests::{free_port, http, query};
use serde_json::Value;

const DEVICES: usize = 5;
const COMMITS: usize = 4;
const PER_DEVICE: usize = 50;

#[test]
fn delta_rs_and_polars_read_the_lake_on_moto() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::moto(dir.path(), "lake") else {
        return;
    };
    engines_read(dir.path(), &store);
}

#[test]
fn delta_rs_and_polars_read_the_lake_on_azurite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(store) = stores::azurite(dir.path(), "lake") else {
        return;
    };
    engines_read(dir.path(), &store);
}

/// Writes `plant.sensor` in several commits over two days and checks what
/// the engines read against the hub.
fn engines_read(dir: &Path, store: &Store) {
    let Some(python) = python_with(&["deltalake", "polars"]) else {
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _hub = Lake::on(dir, store).launch("hub", addr, Role::Writer, 0);
    // Two days apart, so that the table has two partitions.
    let day0: i64 = 1_764_892_800; // 2025-12-05T00:00:00Z
    for commit in 0..COMMITS {
        let mut body = String::new();
        for device in 0..DEVICES {
            for i in 0..PER_DEVICE {
                let n = commit * PER_DEVICE + i;
                let t = day0 + (commit as i64 / 2) * 86_400 + n as i64;
                body.push_str(&format!(
                    "sensor,device=d{device},site=north temp={}.5 {t}\n",
                    device * 10 + i % 7
                ));
            }
        }
        let (status, text) = http(
            "POST",
            addr,
            "/api/v1/write/line-protocol?db=plant&precision=s",
            &[],
            body.as_bytes(),
        );
        assert_eq!(status, 204, "{text}");
    }
    let hub = query(
        addr,
        None,
        "SELECT count(*), count(DISTINCT device), sum(temp), \
         CAST(CAST(min(time) AS TIMESTAMP(6)) AS BIGINT), CAST(CAST(max(time) AS TIMESTAMP(6)) AS BIGINT) FROM plant.sensor",
    )
    .expect("the hub answers");
    let row = &hub["data"][0];
    let rows = (DEVICES * COMMITS * PER_DEVICE) as u64;
    assert_eq!(row[0].as_u64(), Some(rows), "{hub}");

    let options: serde_json::Map<String, Value> = store
        .reader_options
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/delta_engines.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(format!("{}/plant/sensor", store.lake_url))
        .arg(Value::Object(options).to_string())
        .envs(store.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "delta_engines.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: Value = serde_json::from_slice(&out.stdout).expect("json");
    for engine in ["deltalake", "polars"] {
        let e = &read[engine];
        assert_eq!(e["rows"].as_u64(), Some(rows), "{engine}: {read}");
        assert_eq!(e["devices"].as_u64(), row[1].as_u64(), "{engine}: {read}");
        assert_eq!(e["sum_temp"].as_f64(), row[2].as_f64(), "{engine}: {read}");
        assert_eq!(e["min_time"].as_i64(), row[3].as_i64(), "{engine}: {read}");
        assert_eq!(e["max_time"].as_i64(), row[4].as_i64(), "{engine}: {read}");
    }
    let delta = &read["deltalake"];
    assert_eq!(delta["partitions"], serde_json::json!(["day"]), "{read}");
    let files = delta["files"].as_u64().expect("files");
    assert!(files >= 2, "one file per day at least: {read}");
    assert_eq!(
        delta["files_with_temp_stats"].as_u64(),
        Some(files),
        "every add action has min/max statistics: {read}"
    );
    eprintln!("lake engines on {}: {read}", store.lake_url);
}
