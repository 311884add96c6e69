//! Running one import job: its file, chunk by chunk, into the tables.

use std::path::PathBuf;
use std::time::Duration;

use deltalake::arrow::array::RecordBatch;
use ferry_protocols::AgentId;
use ferry_protocols::segment::SegmentSeq;

use super::Inner;
use super::options::ImportOptions;
use super::source::{self, Chunk};
use crate::ingest::write::{Locator, MAX_DETAILS, Prepared};
use crate::meta::imports::{CANCELLED, COMPLETED, FAILED, ImportJob, ImportProgress, RejectedRow};
use crate::metrics as m;
use crate::table::{Origin, TableError, TableName, WriteOutcome, WriteRequest};

/// Storage failures of one chunk retried before the job fails.
const STORAGE_RETRIES: u32 = 8;

enum End {
    Completed,
    Failed(String),
    Cancelled,
    /// The hub is stopping: the job stays running, queued again at start.
    Stopped,
}

fn rejected_row(at: Locator, reason: String) -> RejectedRow {
    let (line, record) = match at {
        Locator::Line(n) => (Some(n), None),
        Locator::Record(n) => (None, Some(n)),
        Locator::Unknown => (None, None),
    };
    RejectedRow {
        line,
        record,
        reason,
    }
}

pub(super) async fn run(inner: &Inner, job: ImportJob) {
    let id = job.id.clone();
    let spool = PathBuf::from(&job.spool);
    tracing::info!(job = %id, format = %job.format, database = %job.database, bytes = job.bytes_total, resumed_at_chunk = job.chunks_done, "import job running");
    let end = match serde_json::from_value::<ImportOptions>(job.options.clone()) {
        Ok(options) => run_chunks(inner, &job, options, spool.clone()).await,
        Err(e) => End::Failed(format!("stored options unreadable: {e}")),
    };
    let (state, error) = match end {
        End::Stopped => {
            tracing::info!(job = %id, "import job paused by shutdown; it resumes at the next start");
            return;
        }
        End::Completed => (COMPLETED, None),
        End::Cancelled => (CANCELLED, None),
        End::Failed(e) => (FAILED, Some(e)),
    };
    metrics::counter!(m::IMPORT_JOBS, "state" => state).increment(1);
    if let Err(e) = inner
        .meta
        .finish_import_job(&id, state, error.clone())
        .await
    {
        tracing::warn!(job = %id, error = %e, "cannot record the end of an import job");
    }
    if let Ok(mut c) = inner.cancelled.lock() {
        c.remove(&id);
    }
    let _ = tokio::fs::remove_file(&spool).await;
    match error {
        Some(e) => tracing::warn!(job = %id, error = %e, "import job failed"),
        None => tracing::info!(job = %id, state, "import job ended"),
    }
}

async fn run_chunks(inner: &Inner, job: &ImportJob, options: ImportOptions, path: PathBuf) -> End {
    let agent = match AgentId::new(job.key.as_str()) {
        Ok(a) => a,
        Err(e) => return End::Failed(format!("job key {:?}: {e}", job.key)),
    };
    let database = match options.database_name() {
        Ok(d) => d,
        Err(e) => return End::Failed(e.message().to_owned()),
    };
    let rows = options.chunk_rows.max(1);
    let max_record = usize::try_from(inner.config.max_record_size.as_u64()).unwrap_or(usize::MAX);
    let now_ns = job.created_at_ms.saturating_mul(1_000_000);
    // The parser runs ahead by one chunk while the previous one commits.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Chunk, String>>(1);
    let parser = tokio::task::spawn_blocking(move || {
        let mut source = match source::open(&path, &options, max_record, now_ns) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let next = source.next_chunk(rows);
            let last = !matches!(next, Ok(Some(_)));
            let Some(next) = next.transpose() else { return };
            if tx.blocking_send(next).is_err() || last {
                return;
            }
        }
    });
    let mut progress = ImportProgress {
        bytes_done: job.bytes_done,
        chunks_done: job.chunks_done,
        rows_imported: job.rows_imported,
        rows_rejected: job.rows_rejected,
        rejections: job.rejections.clone(),
        measurements: job.measurements.clone(),
        time_min_ns: job.time_min_ns,
        time_max_ns: job.time_max_ns,
    };
    let mut seq = 0u64;
    let end = loop {
        let next = tokio::select! {
            () = inner.stop.cancelled() => break End::Stopped,
            next = rx.recv() => next,
        };
        let Some(next) = next else {
            break End::Completed;
        };
        if inner.cancelled.lock().is_ok_and(|c| c.contains(&job.id)) {
            break End::Cancelled;
        }
        let chunk = match next {
            Ok(c) => c,
            Err(e) => break End::Failed(e),
        };
        seq += 1;
        if seq <= job.chunks_done {
            continue;
        }
        if let Err(end) =
            commit_chunk(inner, job, &database, &agent, seq, chunk, &mut progress).await
        {
            break end;
        }
        progress.chunks_done = seq;
        if let Err(e) = inner.meta.import_progress(&job.id, progress.clone()).await {
            tracing::warn!(job = %job.id, error = %e, "cannot record import progress");
        }
    };
    drop(rx);
    // A reader that panicked (a file no parser expected) closed the channel
    // early: that is a failure, not the end of the file.
    if let Err(e) = parser.await
        && matches!(end, End::Completed)
    {
        crate::supervise::record("import", "file reader", &e.to_string());
        return End::Failed(format!(
            "the file could not be read past chunk {seq}: internal fault in its reader ({e})"
        ));
    }
    if matches!(end, End::Completed) && progress.rows_imported == 0 && progress.rows_rejected > 0 {
        return End::Failed(format!(
            "no row could be imported ({} rejected; see rejected)",
            progress.rows_rejected
        ));
    }
    end
}

/// Commits one chunk into every table it touches, with `txn` version `seq`.
async fn commit_chunk(
    inner: &Inner,
    job: &ImportJob,
    database: &ferry_protocols::DatabaseName,
    agent: &AgentId,
    seq: u64,
    chunk: Chunk,
    progress: &mut ImportProgress,
) -> Result<(), End> {
    let mut prepared = Prepared::default();
    for (at, reason) in chunk.rejected {
        prepared.reject(at, reason);
    }
    for (_, r) in &chunk.readings {
        progress.time_min_ns = Some(progress.time_min_ns.map_or(r.time_ns, |t| t.min(r.time_ns)));
        progress.time_max_ns = Some(progress.time_max_ns.map_or(r.time_ns, |t| t.max(r.time_ns)));
    }
    let max_columns = inner.max_columns;
    let readings = chunk.readings;
    let grouped = tokio::task::spawn_blocking(move || {
        prepared.group(readings, max_columns);
        prepared
    })
    .await;
    let mut prepared = match grouped {
        Ok(p) => p,
        Err(e) => return Err(End::Failed(format!("grouping rows failed: {e}"))),
    };
    let mut pending = std::mem::take(&mut prepared.tables);
    let mut attempt = 0u32;
    let mut committed = 0u64;
    while !pending.is_empty() {
        let writes = pending.iter().map(|t| {
            inner.tables.write(WriteRequest {
                table: TableName::new(database.clone(), t.measurement.clone()),
                batches: vec![t.batch.clone()],
                origin: Origin::Segment {
                    agent: agent.clone(),
                    seq: SegmentSeq(seq),
                },
            })
        });
        let results = futures_util::future::join_all(writes).await;
        let mut retry = Vec::new();
        let mut failure: Option<TableError> = None;
        for (t, result) in pending.into_iter().zip(results) {
            match result {
                Ok(WriteOutcome::Committed { rows, .. }) => {
                    progress.rows_imported += rows;
                    committed += rows;
                    metrics::counter!(m::IMPORT_ROWS, "outcome" => "imported").increment(rows);
                    note_measurement(progress, t.measurement.as_str());
                }
                Ok(WriteOutcome::Duplicate { .. }) => {
                    progress.rows_imported += rows_of(&t.batch);
                    note_measurement(progress, t.measurement.as_str());
                }
                Err(e) if e.is_client_error() => {
                    let msg = format!("table {database}.{}: {e}", t.measurement);
                    for at in t.locators {
                        prepared.reject(at, msg.clone());
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                    retry.push(t);
                }
            }
        }
        pending = retry;
        if let Some(e) = failure {
            attempt += 1;
            if attempt > STORAGE_RETRIES {
                return Err(End::Failed(format!(
                    "storage: {e} (chunk {seq}, after {STORAGE_RETRIES} retries; import the file again to resume)"
                )));
            }
            let wait = Duration::from_millis(250u64 << attempt.min(6));
            tracing::warn!(chunk = seq, error = %e, retry_in = ?wait, "import chunk commit failed; retrying");
            tokio::select! {
                () = inner.stop.cancelled() => return Err(End::Stopped),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
    inner.quotas.imported(
        job.created_by_token,
        job.created_by.as_deref().unwrap_or(""),
        database.as_str(),
        committed,
        chunk.bytes_done.saturating_sub(progress.bytes_done),
    );
    progress.bytes_done = chunk.bytes_done;
    progress.rows_rejected += prepared.rejected_count as u64;
    metrics::counter!(m::IMPORT_ROWS, "outcome" => "rejected")
        .increment(prepared.rejected_count as u64);
    for r in prepared.rejected {
        if progress.rejections.len() >= MAX_DETAILS {
            break;
        }
        progress.rejections.push(rejected_row(r.at, r.message));
    }
    Ok(())
}

fn rows_of(batch: &RecordBatch) -> u64 {
    batch.num_rows() as u64
}

fn note_measurement(progress: &mut ImportProgress, m: &str) {
    if !progress.measurements.iter().any(|x| x == m) {
        progress.measurements.push(m.to_owned());
        progress.measurements.sort();
    }
}
