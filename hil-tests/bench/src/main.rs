//! `ferry-bench`: Ferry against its peers, side by side, in one run.
//!
//! ```sh
//! export CARGO_TARGET_DIR=/var/tmp/ferry-bench-target   # any; the binaries are found next to this one
//! cargo build --release --locked -p ferry-agent -p ferry-hub -p ferry-bench
//! cargo run --release --locked -p ferry-bench -- all                 # default scale, < 20 min on 2 cores
//! cargo run --locked -p ferry-bench -- all --quick --out /tmp/fb    # CI: debug build, < 3 min
//! cargo run --release -p ferry-bench -- mqtt queries                 # some scenarios
//! cargo run --release -p ferry-bench -- ingest-long                  # the hour-long ingest run
//! ```
//!
//! Writes `bench-report.md` and `bench-report.json` into `--out`
//! (default `target/ferry-bench/`). Exits non-zero when a scenario failed
//! (including DuckDB and the hub disagreeing on an answer).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use ferry_bench::report::Section;
use ferry_bench::scenario::{self, lake};
use ferry_bench::{Report, Scale};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Scenario {
    Mqtt,
    Store,
    Footprint,
    Freshness,
    HubIngest,
    Drain,
    Storage,
    Queries,
    Recovery,
    NoisyNeighbour,
    Catalog,
    CommitGrowth,
    IngestLong,
    Topics,
    Delete,
    LastCache,
    Import,
    Encryption,
    Flight,
    Replicas,
    All,
}

/// Ferry against its peers (Mosquitto, SQLite, DuckDB), measured side by side.
#[derive(Debug, Parser)]
#[command(name = "ferry-bench", version)]
struct Cli {
    /// Scenarios to run, in this order: mqtt store footprint freshness hub-ingest drain storage queries recovery noisy-neighbour catalog commit-growth ingest-long topics delete last-cache import encryption flight replicas, or all (ingest-long only with --long or --quick).
    #[arg(value_enum, required = true)]
    scenarios: Vec<Scenario>,
    /// Small counts, one run each: every scenario end to end in under 3 minutes (CI).
    #[arg(long)]
    quick: bool,
    /// Runs per measurement (default 3; 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Where the reports go.
    #[arg(long, default_value = "target/ferry-bench")]
    out: PathBuf,
    /// Where the scenarios keep their data (a temporary directory inside it; default: the system's).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory (the truck lake's Delta tables, each scenario's directory and logs) for inspection.
    #[arg(long)]
    keep: bool,
    /// With `all`, also `ingest-long` (an hour at default scale).
    #[arg(long)]
    long: bool,
}

/// Lines of each log [`print_log_tails`] shows.
const LOG_TAIL_LINES: usize = 40;

/// The last lines of every `*.log` under a failed scenario's directory (the
/// hubs' and agents' own logs), on stderr: the directory is removed next,
/// and a failure in CI is otherwise seen only from the client's side.
fn print_log_tails(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            print_log_tails(&path);
        } else if path.extension().is_some_and(|x| x == "log") {
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(LOG_TAIL_LINES);
            eprintln!(
                "--- {} (last {} of {} lines)",
                path.display(),
                lines.len() - from,
                lines.len()
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic".to_owned())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut wanted: Vec<Scenario> = if cli.scenarios.contains(&Scenario::All) {
        vec![
            Scenario::Mqtt,
            Scenario::Store,
            Scenario::Footprint,
            Scenario::Freshness,
            Scenario::HubIngest,
            Scenario::Drain,
            Scenario::Storage,
            Scenario::Queries,
            Scenario::Recovery,
            Scenario::NoisyNeighbour,
            Scenario::Catalog,
            Scenario::CommitGrowth,
            Scenario::Topics,
            Scenario::Delete,
            Scenario::LastCache,
            Scenario::Import,
            Scenario::Encryption,
            Scenario::Flight,
            Scenario::Replicas,
        ]
        .into_iter()
        .chain((cli.long || cli.quick).then_some(Scenario::IngestLong))
        .collect()
    } else {
        cli.scenarios.clone()
    };
    wanted.sort();
    wanted.dedup();
    let scale = Scale::new(cli.quick, cli.runs);
    let bin = ferry_hil_tests::bin_dir();
    eprintln!(
        "ferry-bench: {wanted:?}, binaries from {}, {scale:?}",
        bin.display()
    );
    let work = match &cli.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let mut report = Report::new(serde_json::json!({
        "scenarios": wanted.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
        "scale": scale.json(),
    }));
    let started = Instant::now();
    let mut the_lake: Option<lake::Lake> = None;
    for sc in wanted {
        let name = format!("{sc:?}").to_lowercase();
        eprintln!(
            "\n== {name} ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
        let dir = work.path().join(&name);
        std::fs::create_dir_all(&dir)?;
        let t = Instant::now();
        let needs_lake = matches!(sc, Scenario::Storage | Scenario::Queries);
        if needs_lake && the_lake.is_none() {
            let lake_dir = work.path().join("lake");
            std::fs::create_dir_all(&lake_dir)?;
            match std::panic::catch_unwind(AssertUnwindSafe(|| lake::build(&scale, &lake_dir))) {
                Ok(l) => the_lake = Some(l),
                Err(e) => {
                    let mut s = Section::new(
                        &name,
                        &format!("{name} (the truck data set could not be built)"),
                    );
                    s.failed = Some(panic_message(e.as_ref()));
                    s.seconds = t.elapsed().as_secs_f64();
                    report.sections.push(s);
                    continue;
                }
            }
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| match sc {
            Scenario::Mqtt => scenario::mqtt::run(&scale, &dir),
            Scenario::Store => scenario::store::run(&scale, &dir),
            Scenario::Footprint => scenario::footprint::run(&scale, &dir),
            Scenario::Freshness => scenario::freshness::run(&scale, &dir),
            Scenario::HubIngest => scenario::hub_ingest::run(&scale, &dir),
            Scenario::Drain => scenario::drain::run(&scale, &dir),
            Scenario::Storage => scenario::storage::run(the_lake.as_ref().expect("the lake"), &dir),
            Scenario::Queries => {
                scenario::queries::run(&scale, the_lake.as_ref().expect("the lake"))
            }
            Scenario::Recovery => scenario::recovery::run(&scale, &dir),
            Scenario::NoisyNeighbour => scenario::noisy::run(&scale, &dir),
            Scenario::Catalog => scenario::catalog::run(&scale, &dir),
            Scenario::Topics => scenario::topics::run(&scale, &dir),
            Scenario::Delete => scenario::delete::run(&scale, &dir),
            Scenario::LastCache => scenario::last_cache::run(&scale, &dir),
            Scenario::Import => scenario::import::run(&scale, &dir),
            Scenario::Encryption => scenario::encryption::run(&scale, &dir),
            Scenario::Flight => scenario::flight::run(&scale, &dir),
            Scenario::CommitGrowth => scenario::commit_growth::run(&scale, &dir),
            Scenario::IngestLong => scenario::ingest_long::run(&scale, &dir),
            Scenario::Replicas => scenario::replicas::run(&scale, &dir),
            Scenario::All => unreachable!("expanded above"),
        }));
        let mut section = match result {
            Ok(s) => s,
            Err(e) => {
                let mut s = Section::new(&name, &format!("{name}: FAILED"));
                s.failed = Some(panic_message(e.as_ref()));
                s
            }
        };
        section.seconds = t.elapsed().as_secs_f64();
        if let Some(e) = &section.failed {
            eprintln!("== {name} FAILED: {e}");
            print_log_tails(&dir);
        }
        report.sections.push(section);
        if !cli.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    drop(the_lake);
    if cli.keep {
        eprintln!("ferry-bench: kept {}", work.keep().display());
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.write(&cli.out)?;
    eprintln!(
        "\nferry-bench: {:.0} s; wrote {} and bench-report.json",
        report.seconds,
        cli.out.join("bench-report.md").display()
    );
    if report.failed() {
        anyhow::bail!(
            "failed scenarios: {}",
            report
                .sections
                .iter()
                .filter(|s| s.failed.is_some())
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
