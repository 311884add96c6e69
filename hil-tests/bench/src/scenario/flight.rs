//! Flight SQL: the same statements through Arrow Flight SQL (ADBC, the
//! driver most Flight clients use) and through `POST /api/v1/query/arrow`
//! (Arrow IPC over HTTP, the hub's other Arrow answer), on the same hub in
//! the same run, one Python client each with its connection kept open. A
//! scan of `query.max_rows` rows shows the transfer; `SELECT count(*)` the
//! fixed cost of a call (Flight SQL needs two round trips: GetFlightInfo,
//! or a prepared statement, then DoGet).

use serde_json::json;

use crate::procs::{HubOptions, fresh_addr, start_hub};
use crate::report::{Comparison, Section};
use crate::scale::Scale;
use crate::stats::Unit;

const SMALL: &str = "SELECT count(*) FROM fl.m";
const SCAN: &str = "SELECT * FROM fl.m";

/// Runs the scenario.
pub fn run(scale: &Scale, dir: &std::path::Path) -> Section {
    // The default query.max_rows: the largest answer a client gets.
    let rows: usize = if scale.quick { 20_000 } else { 100_000 };
    let mut section = Section::new(
        "flight",
        &format!("Flight SQL: a {rows}-row scan and count(*) over Flight SQL and HTTP Arrow"),
    );
    let flight_port = ferry_hil_tests::free_port();
    let hub = start_hub(
        dir,
        fresh_addr(),
        &HubOptions {
            flight_port,
            ..HubOptions::default()
        },
    );
    for chunk in (0..rows).collect::<Vec<_>>().chunks(50_000) {
        let body: String = chunk
            .iter()
            .map(|i| {
                format!(
                    "m,device=d{:04} temp={}.5,load={}i,ok=true {}\n",
                    i % 1000,
                    i % 90,
                    i % 7,
                    1_700_000_000_000_000_000u64 + *i as u64 * 1_000_000
                )
            })
            .collect();
        hub.post_lp("fl", body.as_bytes());
    }
    let compacted = hub.compact();
    let repeats = if scale.quick { 8 } else { 40 };
    let job = json!({
        "flight_port": flight_port,
        "http_port": hub.addr.port(),
        "token": hub.token.clone().unwrap_or_default(),
        "runs": scale.runs,
        "repeats": repeats,
        "scan": SCAN,
        "small": SMALL,
    });
    let out = crate::procs::python_job("flight_peer.py", include_str!("flight_peer.py"), &job);
    for kind in ["scan", "small"] {
        assert_eq!(
            out["rows"][format!("flight_{kind}")],
            out["rows"][format!("http_{kind}")],
            "Flight SQL and HTTP answered different row counts for the {kind}: {}",
            out["rows"]
        );
    }
    assert_eq!(out["rows"]["flight_scan"], json!(rows));
    let ms = |k: &str| -> Vec<f64> {
        out[k]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    };
    section.intro = format!(
        "`fl.m`: {rows} rows (1,000 devices, 3 fields), written as line protocol and compacted ({} \
         files removed). Ferry: ADBC (adbc-driver-flightsql) `cursor.execute` + \
         `fetch_arrow_table`; baseline: the same hub's `POST /api/v1/query/arrow` read with \
         pyarrow through a kept-alive requests session. {repeats} count(*) and {} scans per client \
         per run, {} run(s), timed at the client; both return the same rows.",
        compacted["files_removed"],
        (repeats / 4).max(1),
        scale.runs,
    );
    section.compare(Comparison::new(
        format!("`{SCAN}` ({rows} rows) over Flight SQL"),
        Unit::Ms,
        &ms("flight_scan_ms"),
        "HTTP Arrow",
        &ms("http_scan_ms"),
    ));
    section.compare(Comparison::new(
        format!("`{SMALL}` over Flight SQL"),
        Unit::Ms,
        &ms("flight_small_ms"),
        "HTTP Arrow",
        &ms("http_small_ms"),
    ));
    section.details = json!({"rows": rows, "repeats": repeats});
    section
}
