//! The hub's tables are plain Delta Lake: rows written over line protocol in
//! several commits (over two days, with a later commit adding a tag and a
//! field) read back with the `deltalake` Python package (delta-rs) and
//! pyarrow, which know nothing of Ferry, equal exactly what the hub's SQL
//! returns and what was written. `time` is a UTC timestamp and `day` the
//! partition column.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_hil_tests::{HubProcess, http, query, require_tool, start_hub};
use serde_json::{Map, Value, json};

/// The venv's Python with every module in `modules`, or `None` (skip) when
/// one is missing and peers are not required.
fn python_with(modules: &str) -> Option<PathBuf> {
    let hint = "python3 -m venv .venv && .venv/bin/pip install deltalake pyarrow";
    let python = require_tool("python", hint)?;
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !ferry_hil_tests::peers_required(),
            "{modules} not installed in {} ({hint})",
            python.display()
        );
        eprintln!("SKIPPED: {modules} not installed in {}", python.display());
        return None;
    }
    Some(python)
}

fn write_lp(hub: &HubProcess, precision: &str, body: &str) {
    let path = format!("/api/v1/write/line-protocol?db=plant&precision={precision}");
    let (status, answer) = http("POST", hub.addr, &path, &[], body.as_bytes());
    assert_eq!(status, 204, "{answer}");
}

/// Rows as objects keyed by column name, sorted by (time, device).
fn sorted(mut rows: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
    rows.sort_by_key(|r| {
        (
            r["time"].as_i64().unwrap_or(i64::MIN),
            r["device"].as_str().unwrap_or_default().to_owned(),
        )
    });
    rows
}

fn hub_rows(hub: &HubProcess) -> Vec<Map<String, Value>> {
    let sql = "SELECT CAST(time AS BIGINT) AS time, CAST(day AS VARCHAR) AS day, device, site, zone, temp, level, ok, note, humidity FROM plant.sensor";
    let v = query(hub.addr, None, sql).expect("the hub answers the query");
    let columns: Vec<String> = v["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c.as_str().expect("column name").to_owned())
        .collect();
    let rows = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|row| {
            columns
                .iter()
                .cloned()
                .zip(row.as_array().expect("row").iter().cloned())
                .collect()
        })
        .collect();
    sorted(rows)
}

/// One expected row; `time` in µs since the epoch.
#[allow(clippy::too_many_arguments)]
fn row(
    time: i64,
    day: &str,
    device: &str,
    site: &str,
    zone: Value,
    temp: Value,
    level: Value,
    ok: Value,
    note: Value,
    humidity: Value,
) -> Map<String, Value> {
    let v = json!({
        "time": time, "day": day, "device": device, "site": site, "zone": zone,
        "temp": temp, "level": level, "ok": ok, "note": note, "humidity": humidity,
    });
    v.as_object().expect("object").clone()
}

fn expected() -> Vec<Map<String, Value>> {
    let n = Value::Null;
    let (d1, d2) = ("2025-11-26", "2025-11-27");
    #[rustfmt::skip]
    let rows = vec![
        row(1_764_158_400_000_000, d1, "a", "north", n.clone(), json!(20.5), json!(3), json!(true), json!("fine"), n.clone()),
        row(1_764_158_401_500_000, d1, "b", "north", n.clone(), json!(-1.25), json!(-7), json!(false), json!("a \"quoted\" note"), n.clone()),
        row(1_764_158_460_000_000, d1, "a", "south", n.clone(), json!(0.125), n.clone(), n.clone(), n.clone(), n.clone()),
        row(1_764_158_500_000_000, d1, "a", "north", json!("z1"), json!(22.5), n.clone(), n.clone(), n.clone(), json!(40.5)),
        row(1_764_244_800_000_000, d2, "a", "north", n.clone(), json!(21.75), json!(4), json!(true), n.clone(), n.clone()),
        row(1_764_244_860_000_000, d2, "c", "west", n.clone(), n.clone(), json!(9), n.clone(), json!("two"), n.clone()),
        row(1_764_244_900_123_456, d2, "b", "north", json!("z2"), n.clone(), n.clone(), json!(true), n.clone(), json!(55.25)),
    ];
    rows
}

#[test]
fn delta_rs_reads_what_the_hub_committed() {
    let Some(python) = python_with("deltalake, pyarrow") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path(), false);

    // Commit 0: day 1, µs precision.
    write_lp(
        &hub,
        "us",
        "sensor,device=a,site=north temp=20.5,level=3i,ok=true,note=\"fine\" 1764158400000000\n\
         sensor,device=b,site=north temp=-1.25,level=-7i,ok=false,note=\"a \\\"quoted\\\" note\" 1764158401500000\n\
         sensor,device=a,site=south temp=0.125 1764158460000000\n",
    );
    // Commit 1: day 2, s precision.
    write_lp(
        &hub,
        "s",
        "sensor,device=a,site=north temp=21.75,level=4i,ok=true 1764244800\n\
         sensor,device=c,site=west level=9i,note=\"two\" 1764244860\n",
    );
    // Commit 2: both days, a new tag (zone) and a new field (humidity).
    write_lp(
        &hub,
        "ns",
        "sensor,device=a,site=north,zone=z1 temp=22.5,humidity=40.5 1764158500000000000\n\
         sensor,device=b,site=north,zone=z2 humidity=55.25,ok=true 1764244900123456789\n",
    );

    let from_hub = hub_rows(&hub);
    assert_eq!(from_hub, expected(), "the hub's SQL");

    let table_dir: PathBuf = dir.path().join("tables/plant/sensor");
    for day in ["day=2025-11-26", "day=2025-11-27"] {
        assert!(
            table_dir.join(day).is_dir(),
            "no partition directory {day} in {}",
            table_dir.display()
        );
    }
    let report = read_delta(&python, &table_dir);
    let from_delta: Vec<Map<String, Value>> = report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r.as_object().expect("row object").clone())
        .collect();
    assert_eq!(
        sorted(from_delta),
        from_hub,
        "delta-rs/pyarrow and the hub disagree"
    );

    assert_eq!(report["time_unit"], "us", "{report}");
    assert_eq!(report["time_tz"], "UTC", "{report}");
    let delta_time = report["delta_types"]["time"].as_str().unwrap_or_default();
    assert!(
        delta_time.contains("timestamp") && !delta_time.contains("ntz"),
        "Delta type of time: {delta_time}"
    );
    assert_eq!(report["day_type"], "date32[day]", "{report}");
    assert!(
        report["delta_types"]["day"]
            .as_str()
            .is_some_and(|t| t.contains("date")),
        "{report}"
    );
    assert_eq!(report["partition_columns"], json!(["day"]), "{report}");
    assert_eq!(
        report["partitions"],
        json!(["2025-11-26", "2025-11-27"]),
        "{report}"
    );
    // One Delta commit per write; the first created the table without the
    // columns the last one added.
    assert_eq!(report["version"], 2, "{report}");
    let has = |key: &str, col: &str| {
        report[key]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c == col))
    };
    for col in [
        "time", "device", "site", "temp", "level", "ok", "note", "day",
    ] {
        assert!(has("columns_v0", col), "{col} at version 0: {report}");
    }
    for col in ["zone", "humidity"] {
        assert!(!has("columns_v0", col), "{col} at version 0: {report}");
        assert!(has("columns", col), "{col} now: {report}");
    }
}

fn read_delta(python: &Path, table_dir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/delta_read.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(table_dir)
        .output()
        .expect("run delta_read.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "delta_read.py failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("delta_read.py printed no JSON ({e}):\n{stderr}"))
}
