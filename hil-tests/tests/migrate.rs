//! The data paths of `docs/migrate/`, each with the real source system and
//! its own export tool, into a hub with `ferry-hub import`, and the same
//! aggregate asked of both sides:
//!
//! * InfluxDB 1.x (Debian's `influxdb`): `influx -format csv` export;
//! * TimescaleDB's path, PostgreSQL (Debian's `postgresql`): `psql \copy`
//!   to CSV (TimescaleDB itself is not packaged here; its export is
//!   PostgreSQL's);
//! * ClickHouse (chdb, ClickHouse's engine from PyPI): `FORMAT Parquet`
//!   and `FORMAT CSVWithNames`.
//!
//! QuestDB cannot be installed from the registries this project uses; its
//! guide's path (CSV from `/exp`) is the generic CSV one tested here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_hil_tests::serial::python_with;
use ferry_hil_tests::{
    Peer, free_port, query, require_tool, spawn_hub, wait_for_port, workspace_bin,
};
use serde_json::Value;

struct Hub {
    _peer: Peer,
    addr: SocketAddr,
    token: String,
}

fn hub(dir: &Path) -> Hub {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("hub.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\n[flight]\nlisten = \"127.0.0.1:0\"\n[storage]\nbackend = \"fs\"\npath = \"{}\"\n\
             [tables]\ncommit_interval = \"50ms\"\n[metadata]\npath = \"{}\"\n",
            dir.join("tables").display(),
            dir.join("hub.db").display()
        ),
    )
    .expect("write hub.toml");
    let (peer, token) = spawn_hub(&config, addr, &dir.join("hub.log"), true);
    Hub {
        _peer: peer,
        addr,
        token: token.expect("admin token"),
    }
}

impl Hub {
    /// `ferry-hub import FILE --database DB ARGS...`; the CLI's output.
    fn import(&self, file: &Path, database: &str, args: &[&str]) -> String {
        let out = Command::new(workspace_bin("ferry-hub"))
            .arg("import")
            .arg(file)
            .args([
                "--url",
                &format!("http://{}", self.addr),
                "--token",
                &self.token,
            ])
            .args(["--database", database])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ferry-hub import");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "ferry-hub import failed: {text}");
        text
    }

    fn row(&self, sql: &str) -> Vec<Value> {
        let v = query(self.addr, Some(&self.token), sql).unwrap_or_else(|| panic!("{sql}"));
        v["data"][0].as_array().cloned().unwrap_or_default()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

fn num(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[test]
fn from_influxdb_1x_through_its_csv_export() {
    let (Some(influxd), Some(influx)) = (
        require_tool("influxd", "apt-get install influxdb"),
        require_tool("influx", "apt-get install influxdb-client"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = free_port();
    let _influx = Peer::spawn(
        "influxd",
        Command::new(influxd)
            .args(["run", "-config", "/dev/null"])
            .env("INFLUXDB_META_DIR", d.join("meta"))
            .env("INFLUXDB_DATA_DIR", d.join("data"))
            .env("INFLUXDB_DATA_WAL_DIR", d.join("wal"))
            .env("INFLUXDB_HTTP_BIND_ADDRESS", format!("127.0.0.1:{port}"))
            .env(
                "INFLUXDB_BIND_ADDRESS",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("INFLUXDB_REPORTING_DISABLED", "true"),
        &d.join("influxd.log"),
    );
    let at = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(at, Duration::from_secs(30));
    let influxql = |q: &str| -> Value {
        let body = format!("q={}", q.replace(' ', "+").replace('=', "%3D"));
        let (status, text) = ferry_hil_tests::http(
            "POST",
            at,
            "/query?db=plant",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{q}: {text}");
        serde_json::from_str(&text).expect("json")
    };
    influxql("CREATE DATABASE plant");
    // Tags site and line, a float, an integer, a bool, a string; a point
    // without some fields.
    let mut lp = String::new();
    for i in 0..5000i64 {
        let t = 1_704_067_200_000_000_000 + i * 1_000_000_000;
        if i % 10 == 0 {
            lp.push_str(&format!("boiler,site=s{} temp={}.5 {t}\n", i % 4, i % 90));
        } else {
            lp.push_str(&format!(
                "boiler,site=s{},line=l{} temp={}.5,count={}i,ok={},note=\"n {i}\" {t}\n",
                i % 4,
                i % 3,
                i % 90,
                i,
                i % 2 == 0
            ));
        }
    }
    let (status, text) = ferry_hil_tests::http("POST", at, "/write?db=plant", &[], lp.as_bytes());
    assert_eq!(status, 204, "{text}");

    // The guide's export: the influx CLI, CSV, RFC 3339 times.
    let csv = d.join("boiler.csv");
    let out = Command::new(influx)
        .args([
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-database",
            "plant",
        ])
        .args([
            "-execute",
            "SELECT * FROM boiler",
            "-format",
            "csv",
            "-precision",
            "rfc3339",
        ])
        .output()
        .expect("influx");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&csv, &out.stdout).expect("write export");

    let hub = hub(d);
    let text = hub.import(
        &csv,
        "plant",
        &[
            "--measurement",
            "boiler",
            "--tag-columns",
            "site,line",
            "--ignore-columns",
            "name",
            "--types",
            "count:i64",
        ],
    );
    assert!(text.contains("5000 rows imported, 0 rejected"), "{text}");
    let theirs = influxql("SELECT count(temp), sum(temp), sum(count), count(note) FROM boiler");
    let theirs = &theirs["results"][0]["series"][0]["values"][0];
    let ours = hub.row(
        "SELECT count(temp), sum(temp), sum(count), count(note), arrow_typeof(max(count)), \
         count(DISTINCT site), min(time) FROM plant.boiler",
    );
    assert_eq!(ours[0], theirs[1], "count");
    assert!(
        close(num(&ours[1]), num(&theirs[2])),
        "sum(temp) {ours:?} {theirs}"
    );
    assert_eq!(ours[2], theirs[3], "sum(count)");
    assert_eq!(ours[3], theirs[4], "count(note)");
    assert_eq!(ours[4], "Int64");
    assert_eq!(ours[5], 4);
    assert!(
        ours[6]
            .as_str()
            .is_some_and(|t| t.starts_with("2024-01-01T00:00:00")),
        "{ours:?}"
    );
    // A tag stays a tag: the site filter is a tag filter in both.
    let theirs = influxql("SELECT count(temp) FROM boiler WHERE site='s1' AND line='l2'");
    let ours = hub.row("SELECT count(temp) FROM plant.boiler WHERE site = 's1' AND line = 'l2'");
    assert_eq!(ours[0], theirs["results"][0]["series"][0]["values"][0][1]);
}

/// The newest PostgreSQL's binaries (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Runs `cmd` as `nobody` (PostgreSQL refuses to run as root).
fn as_nobody(program: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(program);
    c
}

#[test]
fn from_timescaledb_through_postgresqls_copy() {
    let bin = match postgres_bin() {
        Some(b) => b,
        None if ferry_hil_tests::peers_required() => {
            panic!("PostgreSQL is not installed (apt-get install postgresql)")
        }
        None => {
            eprintln!("SKIPPED: PostgreSQL is not installed");
            return;
        }
    };
    let Some(psql) = require_tool("psql", "apt-get install postgresql-client") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pg = d.join("pg");
    std::fs::create_dir(&pg).expect("mkdir");
    std::os::unix::fs::chown(&pg, Some(65534), Some(65534)).expect("chown");
    let status = as_nobody(&bin.join("initdb"))
        .args(["-D"])
        .arg(pg.join("data"))
        .args(["-U", "postgres", "--auth=trust"])
        .stdout(Stdio::null())
        .status()
        .expect("initdb");
    assert!(status.success(), "initdb");
    let port = free_port();
    let _server = Peer::spawn(
        "postgres",
        as_nobody(&bin.join("postgres"))
            .arg("-D")
            .arg(pg.join("data"))
            .arg("-k")
            .arg(&pg)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"]),
        &d.join("postgres.log"),
    );
    wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(30),
    );
    let sql = |q: &str| -> String {
        let out = Command::new(&psql)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", q])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "{q}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // A hypertable's shape: time, a sensor id, values; rows every 10 s.
    sql(
        "CREATE TABLE conditions (time timestamptz NOT NULL, sensor text, temperature double precision, \
         humidity real, ok boolean, samples integer)",
    );
    sql(
        "INSERT INTO conditions SELECT '2024-01-01 00:00:00+00'::timestamptz + i * interval '10 seconds', \
         'sensor-' || (i % 5), 20 + (i % 100) / 8.0, (i % 70) / 2.0, i % 3 <> 0, i \
         FROM generate_series(0, 9999) AS i",
    );
    let csv = d.join("conditions.csv");
    sql(&format!(
        "\\copy (SELECT * FROM conditions ORDER BY time) TO '{}' WITH (FORMAT csv, HEADER)",
        csv.display()
    ));

    let hub = hub(d);
    let text = hub.import(
        &csv,
        "weather",
        &[
            "--measurement",
            "conditions",
            "--tag-columns",
            "sensor",
            "--types",
            "samples:i64",
        ],
    );
    assert!(text.contains("10000 rows imported, 0 rejected"), "{text}");
    // Timescale's time_bucket is date_bin here; the guide's translation.
    let theirs = sql(
        "SELECT count(*), sum(temperature), sum(samples), count(*) FILTER (WHERE ok), \
         (SELECT avg(temperature) FROM conditions WHERE sensor = 'sensor-3' \
            AND time >= '2024-01-01 01:00:00+00' AND time < '2024-01-01 02:00:00+00') FROM conditions",
    );
    let theirs: Vec<f64> = theirs
        .split('|')
        .map(|s| s.parse().unwrap_or(f64::NAN))
        .collect();
    let ours = hub.row(
        "SELECT count(*), sum(temperature), sum(samples), sum(CASE WHEN ok THEN 1 ELSE 0 END) \
         FROM weather.conditions",
    );
    let bucket = hub.row(
        "SELECT avg(temperature) FROM weather.conditions WHERE sensor = 'sensor-3' \
         AND date_bin(INTERVAL '1 hour', time) = TIMESTAMP '2024-01-01T01:00:00Z'",
    );
    assert_eq!(num(&ours[0]), theirs[0], "count");
    assert!(
        close(num(&ours[1]), theirs[1]),
        "sum(temperature) {ours:?} {theirs:?}"
    );
    assert_eq!(num(&ours[2]), theirs[2], "sum(samples)");
    assert_eq!(num(&ours[3]), theirs[3], "ok rows");
    assert!(
        close(num(&bucket[0]), theirs[4]),
        "hourly bucket {bucket:?} {theirs:?}"
    );
    let types = hub.row(
        "SELECT arrow_typeof(samples), arrow_typeof(ok), arrow_typeof(humidity), min(time) \
         FROM weather.conditions GROUP BY 1, 2, 3",
    );
    assert_eq!(types[0], "Int64");
    assert_eq!(types[1], "Boolean");
    assert_eq!(types[2], "Float64");
    assert!(
        types[3]
            .as_str()
            .is_some_and(|t| t.starts_with("2024-01-01T00:00:00")),
        "{types:?}"
    );
}

const CLICKHOUSE: &str = r#"
import json, sys
from chdb import session
out = sys.argv[1]
s = session.Session(out + "/chdb")
s.query("CREATE DATABASE IF NOT EXISTS plant")
s.query("""CREATE TABLE plant.readings (time DateTime64(3, 'UTC'), sensor LowCardinality(String),
           value Float64, ok Bool, n Int64, note Nullable(String))
           ENGINE = MergeTree ORDER BY (sensor, time)""")
s.query("""INSERT INTO plant.readings SELECT
           toDateTime64('2024-01-01 00:00:00', 3, 'UTC') + toIntervalMillisecond(number * 250),
           concat('s', toString(number % 7)), number / 8, number % 2 = 0, number,
           if(number % 5 = 0, NULL, concat('n', toString(number))) FROM numbers(20000)""")
s.query(f"SELECT * FROM plant.readings ORDER BY time INTO OUTFILE '{out}/readings.parquet' TRUNCATE FORMAT Parquet")
s.query(f"SELECT * FROM plant.readings ORDER BY time INTO OUTFILE '{out}/readings.csv' TRUNCATE FORMAT CSVWithNames SETTINGS format_csv_null_representation = ''")
agg = s.query("SELECT count(), sum(value), sum(n), countIf(ok), count(note), toString(min(time)) FROM plant.readings FORMAT JSONCompact")
print(json.dumps(json.loads(str(agg))["data"][0]))
"#;

#[test]
fn from_clickhouse_through_parquet_and_csv() {
    let Some(python) = python_with(&["chdb"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let out = Command::new(python)
        .args(["-c", CLICKHOUSE])
        .arg(d)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("aggregates");

    let hub = hub(d);
    let text = hub.import(
        &d.join("readings.parquet"),
        "plant",
        &["--measurement", "readings", "--tag-columns", "sensor"],
    );
    assert!(text.contains("20000 rows imported, 0 rejected"), "{text}");
    let text = hub.import(
        &d.join("readings.csv"),
        "plant",
        &[
            "--measurement",
            "readings_csv",
            "--tag-columns",
            "sensor",
            "--types",
            "n:i64",
        ],
    );
    assert!(text.contains("20000 rows imported, 0 rejected"), "{text}");
    for table in ["plant.readings", "plant.readings_csv"] {
        let ours = hub.row(&format!(
            "SELECT count(*), sum(value), sum(n), sum(CASE WHEN ok THEN 1 ELSE 0 END), count(note), \
             min(time), arrow_typeof(max(n)) FROM {table}"
        ));
        assert_eq!(num(&ours[0]), num(&theirs[0]), "{table} count");
        assert!(
            close(num(&ours[1]), num(&theirs[1])),
            "{table} sum(value) {ours:?} {theirs:?}"
        );
        assert_eq!(num(&ours[2]), num(&theirs[2]), "{table} sum(n)");
        assert_eq!(num(&ours[3]), num(&theirs[3]), "{table} ok rows");
        // NULL: null in Parquet, an empty value in the CSV (the guide's
        // format_csv_null_representation = ''; ClickHouse writes \N by default).
        assert_eq!(num(&ours[4]), num(&theirs[4]), "{table} count(note)");
        assert!(
            ours[5]
                .as_str()
                .is_some_and(|t| t.starts_with("2024-01-01T00:00:00")),
            "{table} {ours:?}"
        );
        assert_eq!(ours[6], "Int64", "{table}");
    }
}
