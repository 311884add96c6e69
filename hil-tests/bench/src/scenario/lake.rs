//! The truck lake shared by the queries and storage scenarios: the
//! TSBS-IoT-style data set written through a real hub as segments (four
//! writers, late points shipped a segment later), then compacted with
//! `POST /api/v1/compaction/run`; and the DuckDB side, run in the project's
//! Python venv on exactly the tables' active Parquet files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use crate::dataset::segment;
use crate::procs::{Hub, HubOptions, du, fresh_addr, start_hub};
use crate::scale::Scale;
use crate::truck::{DATABASE, Kind, Trucks};

const WRITERS: usize = 4;

/// The loaded, compacted lake and what building it measured.
#[derive(Debug)]
pub struct Lake {
    pub hub: Hub,
    pub data: Trucks,
    pub rows: Vec<(Kind, u64)>,
    pub load_seconds: f64,
    /// Table directories on disk before compaction (data files + log).
    pub bytes_before: Vec<(Kind, u64)>,
    pub compaction: Value,
    pub compaction_seconds: f64,
}

impl Lake {
    pub fn table_dir(&self, kind: Kind) -> PathBuf {
        self.hub
            .dir
            .join("tables")
            .join(DATABASE)
            .join(kind.measurement())
    }

    pub fn total_rows(&self) -> u64 {
        self.rows.iter().map(|r| r.1).sum()
    }
}

/// Generates the data set, writes it through a new hub in `dir`, checks
/// the row counts and compacts.
pub fn build(scale: &Scale, dir: &Path) -> Lake {
    let steps = scale.hours * 360;
    let data = Trucks {
        trucks: scale.trucks,
        steps,
        chunk_steps: (scale.query_segment_rows / scale.trucks).clamp(1, steps),
    };
    let hub = start_hub(dir, fresh_addr(), &HubOptions::default());
    let order = data.sorted_trucks();
    let jobs: Vec<(Kind, usize)> = (0..data.chunks())
        .flat_map(|c| [(Kind::Readings, c), (Kind::Diagnostics, c)])
        .collect();
    let next = AtomicUsize::new(0);
    eprintln!(
        "  lake: {} trucks × {} h at 10 s, {} segments of ~{} rows, {WRITERS} writers",
        data.trucks,
        scale.hours,
        jobs.len(),
        data.chunk_steps * data.trucks
    );
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (next, jobs, order, hub) = (&next, &jobs, &order, &hub);
            s.spawn(move || {
                let mut seqs = [0u64; 2];
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(kind, c)) = jobs.get(j) else { break };
                    let slot = usize::from(kind == Kind::Diagnostics);
                    seqs[slot] += 1;
                    let agent = format!("loader-{w}-{}", kind.measurement());
                    let batch = data.batch(kind, c, order);
                    let bytes = segment(&agent, seqs[slot], DATABASE, kind.measurement(), &batch);
                    hub.post_segment(&agent, seqs[slot], &bytes);
                }
            });
        }
    });
    let load_seconds = start.elapsed().as_secs_f64();
    let mut rows = Vec::new();
    let mut bytes_before = Vec::new();
    for kind in [Kind::Readings, Kind::Diagnostics] {
        let want = data.rows(kind);
        let table = format!("{DATABASE}.{}", kind.measurement());
        assert_eq!(hub.count(&table), want, "{table}: rows after the load");
        rows.push((kind, want));
        bytes_before.push((
            kind,
            du(&dir.join("tables").join(DATABASE).join(kind.measurement())),
        ));
    }
    eprintln!(
        "  lake: {} rows loaded in {load_seconds:.1} s; compacting",
        rows.iter().map(|r| r.1).sum::<u64>()
    );
    let t = Instant::now();
    let compaction = hub.compact();
    let compaction_seconds = t.elapsed().as_secs_f64();
    assert_eq!(
        compaction["failed_partitions"], 0,
        "compaction: {compaction}"
    );
    for (kind, want) in &rows {
        let table = format!("{DATABASE}.{}", kind.measurement());
        assert_eq!(hub.count(&table), *want, "{table}: rows after compaction");
    }
    Lake {
        hub,
        data,
        rows,
        load_seconds,
        bytes_before,
        compaction,
        compaction_seconds,
    }
}

/// Runs `peer_engines.py` (DuckDB, and DataFusion alone when the job asks)
/// on the lake's tables with `job` merged in.
pub fn peer_engines(lake: &Lake, mut job: Value) -> Value {
    job["tables"] = json!({
        "readings": lake.table_dir(Kind::Readings),
        "diagnostics": lake.table_dir(Kind::Diagnostics),
    });
    crate::procs::python_job("peer_engines.py", include_str!("peer_engines.py"), &job)
}
