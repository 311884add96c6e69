//! Last-value cache: "the latest reading of every device" from
//! `last_cache('lvc.m')` next to the equivalent window query over the
//! whole (compacted) table, both through `POST /api/v1/query` on the same
//! hub in the same run. Both must give the same rows.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::procs::{HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

/// Timed queries of each kind per run.
const REPEATS: usize = 20;

const FROM_CACHE: &str = "SELECT device, v, temp FROM last_cache('lvc.m') ORDER BY device";
const FROM_TABLE: &str = "SELECT device, v, temp FROM (SELECT device, v, temp, row_number() OVER \
    (PARTITION BY device ORDER BY time DESC) AS rn FROM lvc.m) WHERE rn = 1 ORDER BY device";

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &std::path::Path) -> Section {
    let (devices, readings) = (scale.lvc_devices, scale.lvc_readings);
    let rows = devices * readings;
    let mut section = Section::new(
        "last-cache",
        &format!("Last-value cache: the newest reading of {devices} devices out of {rows} rows"),
    );
    let hub = start_hub(dir, fresh_addr(), &HubOptions::default());
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Readings one second apart, the newest a second ago (inside the
    // default 4 h ttl), written reading by reading across devices.
    let started = Instant::now();
    let all: Vec<(usize, usize)> = (0..readings)
        .flat_map(|r| (0..devices).map(move |d| (r, d)))
        .collect();
    for chunk in all.chunks(100_000) {
        let body: String = chunk
            .iter()
            .map(|&(r, d)| {
                let t = now_ns - (readings - r) as u64 * 1_000_000_000;
                format!(
                    "m,device=d{d:05} v={r}i,temp={}.25 {t}\n",
                    (r * 7 + d) % 100
                )
            })
            .collect();
        hub.post_lp("lvc", body.as_bytes());
    }
    let loaded = started.elapsed().as_secs_f64();
    let compacted = hub.compact();
    let created = hub.call(
        "POST",
        "/api/v1/last_cache",
        &[("Content-Type", "application/json")],
        json!({"database": "lvc", "measurement": "m", "key_columns": ["device"]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(created.status, 201, "create the cache: {}", created.text());

    let mut cache_ms = Vec::new();
    let mut table_ms = Vec::new();
    let mut answers: Vec<Value> = Vec::new();
    for _ in 0..scale.runs {
        for _ in 0..REPEATS {
            for (sql, into) in [(FROM_CACHE, &mut cache_ms), (FROM_TABLE, &mut table_ms)] {
                let t = Instant::now();
                let v = hub.query(sql).expect("query");
                into.push(t.elapsed().as_secs_f64() * 1000.0);
                if answers.len() < 2 {
                    answers.push(v["data"].clone());
                }
            }
        }
    }
    assert_eq!(
        answers[0], answers[1],
        "last_cache() and the window query gave different rows"
    );
    let got = answers[0].as_array().map_or(0, Vec::len);
    assert_eq!(got, devices, "one row per device");
    section.intro = format!(
        "`lvc.m`: {devices} devices × {readings} readings = {rows} rows, written as line protocol \
         ({loaded:.1} s) and compacted ({} files removed, {} added). A cache keyed by `device` \
         (count 1, default ttl), created after the load (filled from the table). Ferry: \
         `{FROM_CACHE}`; baseline: the same hub answering `{FROM_TABLE}` over the whole table. \
         {REPEATS} queries of each kind per run, {} run(s), timed at the client; both give the same \
         {got} rows.",
        compacted["files_removed"], compacted["files_added"], scale.runs,
    );
    section.compare(Comparison::new(
        format!("latest reading of {devices} devices ({rows} rows in the table)"),
        Unit::Ms,
        &cache_ms,
        "window query over the table",
        &table_ms,
    ));
    section.details = json!({"devices": devices, "readings": readings, "rows": rows});
    section
}
