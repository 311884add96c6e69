//! Queries: a fixed set modelled on the TSBS IoT queries, in DataFusion SQL
//! through the hub's `POST /api/v1/query` (JSON answers, timed at the
//! client) and in DuckDB SQL on exactly the same Parquet files (the Delta
//! tables' active files), with every answer compared between the engines.
//! A second baseline runs the hub's SQL on DataFusion alone (its Python
//! bindings, same version, same files, the hub's Parquet session options):
//! what the hub adds to its engine, apart from what the engine costs.

use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Value, json};

use super::lake::{Lake, peer_engines};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::{Stats, Unit};

/// One query: the hub's SQL and DuckDB's (the same text except where the
/// dialects differ).
#[derive(Debug)]
pub struct Q {
    pub name: &'static str,
    pub what: &'static str,
    pub hub: String,
    pub duckdb: String,
}

/// `ns` (after 1970) as RFC 3339 in whole seconds, UTC.
fn rfc3339(ns: i64) -> String {
    let since_epoch = Duration::from_secs(u64::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0));
    humantime::format_rfc3339_seconds(UNIX_EPOCH + since_epoch).to_string()
}

const CAPACITY: &str =
    "CASE model WHEN 'F-150' THEN 2000.0 WHEN 'G-2000' THEN 5000.0 ELSE 1500.0 END";
const NOMINAL: &str = "CASE model WHEN 'F-150' THEN 15.0 WHEN 'G-2000' THEN 19.0 ELSE 12.0 END";

/// How one engine picks a column's last value (`last_value` or `arg_max`).
type Picker<'a> = &'a dyn Fn(&str) -> String;

/// The query set over a data set that ends at `end_ns`.
pub fn queries(end_ns: i64) -> Vec<Q> {
    let end = rfc3339(end_ns);
    let ten_min_ago = rfc3339(end_ns - 600 * 1_000_000_000);
    let four_h_ago = rfc3339(end_ns - 4 * 3600 * 1_000_000_000);
    let bucket_df = "date_bin(INTERVAL '10 minutes', time)";
    let bucket_duck = "time_bucket(INTERVAL '10 minutes', time)";
    let last = |engine_last: &dyn Fn(&str) -> String,
                cols: &[&str],
                table: &str,
                extra_group: &str| {
        let picks: Vec<String> = cols
            .iter()
            .map(|c| format!("{} AS {c}", engine_last(c)))
            .collect();
        format!(
            "SELECT name, driver{extra_group}, {} FROM iot.{table} WHERE fleet = 'South' GROUP BY name, driver{extra_group}",
            picks.join(", ")
        )
    };
    let df_last = |c: &str| format!("last_value({c} ORDER BY time)");
    let duck_last = |c: &str| format!("arg_max({c}, time)");
    let both = |f: &dyn Fn(Picker<'_>) -> String| (f(&df_last), f(&duck_last));
    let long_driving = |bucket: &str| {
        format!(
            "SELECT name, driver FROM (SELECT name, driver, {bucket} AS ten_minutes FROM iot.readings \
             WHERE fleet = 'West' AND time >= '{four_h_ago}' AND time < '{end}' \
             GROUP BY name, driver, ten_minutes HAVING avg(velocity) > 1) t \
             GROUP BY name, driver HAVING count(*) > 22 ORDER BY name"
        )
    };
    let daily = |bucket: &str| {
        format!(
            "SELECT day, fleet, model, count(*) / 144.0 AS active_share FROM (SELECT day, fleet, model, {bucket} AS ten_minutes \
             FROM iot.diagnostics GROUP BY day, fleet, model, ten_minutes HAVING avg(status) < 1) t \
             GROUP BY day, fleet, model ORDER BY day, fleet, model"
        )
    };
    let breakdowns = |bucket: &str| {
        format!(
            "SELECT model, count(*) AS breakdowns FROM (SELECT model, name, broken, \
             lag(broken) OVER (PARTITION BY name ORDER BY ten_minutes) AS was_broken FROM \
             (SELECT model, name, {bucket} AS ten_minutes, avg(status) >= 0.5 AS broken FROM iot.diagnostics \
             GROUP BY model, name, ten_minutes) b) w WHERE broken AND NOT was_broken GROUP BY model ORDER BY model"
        )
    };
    let (q1h, q1d) = both(&|l| {
        format!(
            "{} ORDER BY name",
            last(l, &["latitude", "longitude"], "readings", "")
        )
    });
    let (q2h, q2d) = both(&|l| {
        format!(
            "SELECT name, driver, fuel_state FROM ({}) t WHERE fuel_state < 0.1 ORDER BY name",
            last(l, &["fuel_state"], "diagnostics", "")
        )
    });
    let (q3h, q3d) = both(&|l| {
        format!(
            "SELECT name, driver, current_load, {CAPACITY} AS load_capacity FROM ({}) t \
             WHERE current_load >= 0.9 * {CAPACITY} ORDER BY name",
            last(l, &["current_load"], "diagnostics", ", model")
        )
    });
    let stationary = format!(
        "SELECT name, driver FROM iot.readings WHERE fleet = 'West' AND time >= '{ten_min_ago}' AND time < '{end}' \
         GROUP BY name, driver HAVING avg(velocity) < 1 ORDER BY name"
    );
    let fuel = format!(
        "SELECT fleet, avg(fuel_consumption) AS avg_fuel_consumption, avg({NOMINAL}) AS projected_fuel_consumption \
         FROM iot.readings WHERE velocity > 1 GROUP BY fleet ORDER BY fleet"
    );
    let count = "SELECT count(*) AS n FROM iot.readings".to_owned();
    let last_point = "SELECT time, latitude, longitude, velocity FROM iot.readings \
                      WHERE name = 'truck_7' ORDER BY time DESC LIMIT 1"
        .to_owned();
    vec![
        Q {
            name: "count",
            what: "rows in a table",
            hub: count.clone(),
            duckdb: count,
        },
        Q {
            name: "last-point",
            what: "the latest reading of one truck",
            hub: last_point.clone(),
            duckdb: last_point,
        },
        Q {
            name: "last-loc",
            what: "last location of each truck in a fleet",
            hub: q1h,
            duckdb: q1d,
        },
        Q {
            name: "low-fuel",
            what: "trucks in a fleet whose last fuel state is below 10 %",
            hub: q2h,
            duckdb: q2d,
        },
        Q {
            name: "high-load",
            what: "trucks in a fleet whose last load is at least 90 % of capacity",
            hub: q3h,
            duckdb: q3d,
        },
        Q {
            name: "stationary-trucks",
            what: "trucks in a fleet with average velocity below 1 over the last 10 minutes",
            hub: stationary.clone(),
            duckdb: stationary,
        },
        Q {
            name: "long-driving-sessions",
            what: "trucks in a fleet that drove in more than 22 of the last 24 10-minute windows",
            hub: long_driving(bucket_df),
            duckdb: long_driving(bucket_duck),
        },
        Q {
            name: "avg-vs-projected-fuel",
            what: "average vs nominal fuel consumption per fleet while driving",
            hub: fuel.clone(),
            duckdb: fuel,
        },
        Q {
            name: "daily-activity",
            what: "share of 10-minute windows per day, fleet and model with average status below 1",
            hub: daily(bucket_df),
            duckdb: daily(bucket_duck),
        },
        Q {
            name: "breakdown-frequency",
            what: "breakdowns (a truck's 10-minute window turning to status ≥ 0.5) per model",
            hub: breakdowns(bucket_df),
            duckdb: breakdowns(bucket_duck),
        },
    ]
}

/// The hub's own Parquet scan options (`datafusion.execution.parquet.*`, as
/// its sessions report them), for the DataFusion-alone baseline.
fn hub_parquet_options(lake: &Lake) -> Value {
    let answer = lake
        .hub
        .query(
            "SELECT name, value FROM information_schema.df_settings \
             WHERE name LIKE 'datafusion.execution.parquet.%' AND value IS NOT NULL",
        )
        .unwrap_or_else(|e| panic!("the hub's session options: {e}"));
    let options: serde_json::Map<String, Value> = answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| Some((row[0].as_str()?.to_owned(), row[1].clone())))
        .collect();
    assert!(
        options.contains_key("datafusion.execution.parquet.pushdown_filters"),
        "the hub reports its Parquet options: {answer}"
    );
    Value::Object(options)
}

/// The geometric mean of the positive, finite values (NaN when none).
fn geometric_mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((0.0, 0u32), |(s, n), v| (s + v.ln(), n + 1));
    if n == 0 {
        f64::NAN
    } else {
        (sum / f64::from(n)).exp()
    }
}

/// One engine's results by query name: (times in ms, rows).
fn engine_result(results: &Value, name: &str) -> (Vec<f64>, Vec<Vec<Value>>) {
    let d = results
        .as_array()
        .and_then(|r| r.iter().find(|x| x["name"] == name))
        .cloned()
        .unwrap_or_default();
    let ms = d["times_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    (
        ms,
        serde_json::from_value(d["rows"].clone()).unwrap_or_default(),
    )
}

/// Rows of a JSON answer, normalised like the Python side.
fn hub_rows(answer: &Value) -> Vec<Vec<Value>> {
    answer["data"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    r.as_array()
                        .map(|c| c.iter().map(norm).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 timestamps without trailing fraction zeros.
fn norm(v: &Value) -> Value {
    match v.as_str() {
        Some(s) if s.ends_with('Z') && s.contains('T') && s.contains('.') => {
            let body = s.trim_end_matches('Z').trim_end_matches('0');
            Value::from(format!("{}Z", body.trim_end_matches('.')))
        }
        _ => v.clone(),
    }
}

/// Same shape, strings equal, numbers within a relative 1e-9 (the engines
/// sum in different orders). The first difference.
pub fn compare(a: &[Vec<Value>], b: &[Vec<Value>]) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("row counts differ: {} vs {}", a.len(), b.len()));
    }
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        if ra.len() != rb.len() {
            return Err(format!("row {i}: {} vs {} columns", ra.len(), rb.len()));
        }
        for (j, (x, y)) in ra.iter().zip(rb).enumerate() {
            let same = match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
                _ => x == y,
            };
            if !same {
                return Err(format!("row {i} column {j}: {x} vs {y}"));
            }
        }
    }
    Ok(())
}

pub fn run(scale: &Scale, lake: &Lake) -> Section {
    let mut s = Section::new(
        "queries",
        "Queries: the hub (DataFusion) vs DuckDB on the same files",
    );
    let qs = queries(lake.data.end_ns());
    let runs = scale.runs;
    let mut hub_side = Vec::new();
    for q in &qs {
        let mut answer = lake
            .hub
            .query(&q.hub)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", q.name, q.hub));
        let mut times = Vec::new();
        let mut server = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            answer = lake
                .hub
                .query(&q.hub)
                .unwrap_or_else(|e| panic!("{}: {e}", q.name));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            server.push(answer["execution_time_ms"].as_f64().unwrap_or(f64::NAN));
        }
        assert_ne!(answer["truncated"], true, "{}: answer truncated", q.name);
        eprintln!(
            "  hub {}: {:.1} ms, {} rows",
            q.name,
            Stats::of(&times).median,
            answer["row_count"]
        );
        hub_side.push((times, server, hub_rows(&answer)));
    }
    let job = json!({
        "runs": runs,
        "queries": qs.iter().map(|q| json!({"name": q.name, "sql": q.duckdb})).collect::<Vec<_>>(),
        "datafusion": {
            "queries": qs.iter().map(|q| json!({"name": q.name, "sql": q.hub})).collect::<Vec<_>>(),
            "options": hub_parquet_options(lake),
            "links_dir": lake.hub.dir.join("datafusion-links"),
        },
    });
    let duck = peer_engines(lake, job);
    let tables = &duck["tables"];
    s.intro = format!(
        "TSBS-IoT-style trucks ({} trucks × {} h at 10 s from 2026-01-01T00:00Z, ~2 % of points missing, 1 % shipped one \
         segment late): `iot.readings` {} rows and `iot.diagnostics` {} rows, written through the hub as segments \
         ({} writers, {:.1} s, {:.0} rows/s) and compacted ({} and {} active files). Ferry: `POST /api/v1/query`, JSON \
         answer, timed at the client (HTTP, resolving the tables the statement names, planning, \
         execution, encoding). Baseline: DuckDB {} (Python, {} threads, Arrow results, in-process, file list \
         prepared once) on the same active Parquet files with `hive_partitioning = true`. Second baseline, in the \
         table below: the hub's SQL on DataFusion {} alone (Python, as many target partitions as DuckDB's threads, the \
         hub's Parquet session options, listing tables over links to the same files). One warm-up, then {runs} timed \
         run(s) per query and engine. Each query's SQL is in `bench-report.json`.",
        lake.data.trucks,
        lake.data.steps / 360,
        lake.rows[0].1,
        lake.rows[1].1,
        4,
        lake.load_seconds,
        lake.total_rows() as f64 / lake.load_seconds,
        tables["readings"]["files"],
        tables["diagnostics"]["files"],
        duck["duckdb_version"].as_str().unwrap_or("?"),
        duck["threads"],
        duck["datafusion_version"].as_str().unwrap_or("?"),
    );
    let mut details = Vec::new();
    let mut differences = Vec::new();
    let mut empty = Vec::new();
    let df_version = duck["datafusion_version"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    s.note(format!(
        "| query | what | rows out | hub `execution_time_ms` | DataFusion {df_version} alone, ms | same answer |\n|---|---|---|---|---|---|"
    ));
    let mut medians = Vec::new();
    for (q, (times, server, rows)) in qs.iter().zip(&hub_side) {
        let (duck_ms, duck_rows) = engine_result(&duck["results"], q.name);
        let (df_ms, df_rows) = engine_result(&duck["datafusion_results"], q.name);
        let check = compare(rows, &duck_rows)
            .map_err(|e| format!("hub vs DuckDB: {e}"))
            .and_then(|()| {
                compare(&df_rows, &duck_rows)
                    .map_err(|e| format!("DataFusion alone vs DuckDB: {e}"))
            });
        if let Err(e) = &check {
            differences.push(format!("{}: {e}", q.name));
        }
        medians.push((
            Stats::of(times).median,
            Stats::of(&duck_ms).median,
            Stats::of(&df_ms).median,
        ));
        if rows.is_empty() {
            empty.push(q.name);
        }
        s.compare(Comparison::new(
            format!("`{}`", q.name),
            Unit::Ms,
            times,
            "DuckDB",
            &duck_ms,
        ));
        s.note(format!(
            "| `{}` | {} | {} | {:.1} | {:.1} | {} |",
            q.name,
            q.what,
            rows.len(),
            Stats::of(server).median,
            Stats::of(&df_ms).median,
            match &check {
                Ok(()) => "yes".to_owned(),
                Err(e) => format!("**no**: {e}"),
            }
        ));
        details.push(json!({
            "name": q.name, "what": q.what, "hub_sql": q.hub, "duckdb_sql": q.duckdb, "rows_out": rows.len(),
            "hub_ms": times, "hub_execution_ms": server, "duckdb_ms": duck_ms, "datafusion_ms": df_ms,
            "same_answer": check.is_ok(), "difference": check.err(),
        }));
    }
    let vs_duckdb = geometric_mean(medians.iter().map(|(h, d, _)| h / d));
    let vs_datafusion = geometric_mean(medians.iter().map(|(h, _, f)| h / f));
    let df_vs_duckdb = geometric_mean(medians.iter().map(|(_, d, f)| f / d));
    let worst = medians
        .iter()
        .zip(&qs)
        .map(|((h, d, _), q)| (h / d, q.name))
        .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
    s.note(format!(
        "\nGeometric mean of the per-query median ratios: hub / DuckDB **{vs_duckdb:.2}×** (worst `{}` {:.2}×); \
         hub / DataFusion {df_version} alone **{vs_datafusion:.2}×**; DataFusion alone / DuckDB {df_vs_duckdb:.2}×.",
        worst.1, worst.0
    ));
    if !empty.is_empty() {
        s.note(format!(
            "\nEmpty on both engines at this scale (equal, but a weak check): {}.",
            empty.join(", ")
        ));
    }
    s.details = json!({"queries": details, "tables": tables, "duckdb_version": duck["duckdb_version"],
        "datafusion_version": df_version, "geomean_hub_vs_duckdb": vs_duckdb,
        "geomean_hub_vs_datafusion": vs_datafusion, "geomean_datafusion_vs_duckdb": df_vs_duckdb, "runs": runs,
        "load_seconds": lake.load_seconds, "rows": lake.total_rows()});
    if !differences.is_empty() {
        s.failed = Some(format!("the engines disagree: {}", differences.join("; ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::T0_NS;

    #[test]
    fn rfc3339_of_the_data_set_start() {
        assert_eq!(rfc3339(T0_NS), "2026-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(T0_NS + 86_399 * 1_000_000_000),
            "2026-01-01T23:59:59Z"
        );
        assert_eq!(
            rfc3339(T0_NS + 59 * 86_400 * 1_000_000_000),
            "2026-03-01T00:00:00Z"
        );
    }
}
