//! `ferry-faults`: runs the fault scenarios one after another and writes
//! their summary table.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/ferry-faults --long --minutes 5 [SCENARIO ...] [--report FILE]
//! ```
//!
//! Without `--long` it runs the CI scale. With `--long`, each scenario runs
//! about `--minutes` (default 30) of soak. It uses the `ferry-agent` and
//! `ferry-hub` built next to it (or `$FERRY_BIN_DIR`). Exits non-zero if
//! any scenario failed.

use std::io::Write;

use ferry_hil_tests::faults::{Scale, scenarios};

fn main() {
    let mut long = false;
    let mut minutes = 30.0;
    let mut report = std::path::PathBuf::from("ferry-faults-report.jsonl");
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--long" => long = true,
            "--minutes" => {
                minutes = args
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or_else(|| usage("--minutes needs a number"));
            }
            "--report" => {
                report = args
                    .next()
                    .map(Into::into)
                    .unwrap_or_else(|| usage("--report needs a path"));
            }
            "-h" | "--help" => usage(""),
            name if scenarios::ALL.iter().any(|(n, _)| *n == name) => only.push(name.to_owned()),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let scale = if long {
        Scale::long(minutes)
    } else {
        Scale::ci()
    };
    // The scenarios append their JSON lines here.
    let _ = std::fs::remove_file(&report);
    ferry_hil_tests::faults::set_report_path(&report);
    let mut failed = Vec::new();
    let mut table = vec![
        "| scenario | acknowledged | delivered | duplicates | lost | documented drops | faults | max agent RSS | duration |".to_owned(),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned(),
    ];
    for (name, run) in scenarios::ALL {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("== {name} ({})", if long { "long" } else { "ci" });
        let started = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(|| run(scale));
        if let Ok(s) = &outcome {
            let v = &s.verdict;
            table.push(format!(
                "| `{name}` | {} | {} | {} | {} | {} | {} | {:.1} MB | {:.0} s |",
                v.acked,
                v.delivered,
                v.duplicates,
                v.lost,
                v.documented_drops,
                s.faults,
                s.max_agent_rss_mb,
                s.duration.as_secs_f64()
            ));
        }
        if outcome.is_err() {
            table.push(format!("| `{name}` | FAILED | | | | | | | |"));
            eprintln!(
                "FAILED {name} after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            failed.push(*name);
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&report)
            {
                let _ = writeln!(
                    f,
                    "{}",
                    serde_json::json!({"scenario": name, "failed": true})
                );
            }
        }
    }
    let markdown = table.join("\n") + "\n";
    println!("{markdown}");
    let _ = std::fs::write(report.with_extension("md"), markdown);
    eprintln!("report: {} (and .md)", report.display());
    if !failed.is_empty() {
        eprintln!("failed: {}", failed.join(", "));
        std::process::exit(1);
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("ferry-faults: {problem}");
    }
    let names: Vec<&str> = scenarios::ALL.iter().map(|(n, _)| *n).collect();
    eprintln!(
        "usage: ferry-faults [--long] [--minutes M] [--report FILE] [SCENARIO ...]\nscenarios: {}",
        names.join(" ")
    );
    std::process::exit(2);
}
