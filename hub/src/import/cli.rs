//! `ferry-hub import FILE --url … --token …`: uploads a file as a
//! resumable upload with a progress bar, starts its job, and follows it.
//!
//! 1. The file is hashed (SHA-256): the upload's name.
//! 2. `GET /api/v1/import/uploads/{sha256}` says how much the hub already
//!    has (an interrupted run left it there); the rest is sent in pieces of
//!    `--piece-size` with `PUT ...?offset=`. A piece that fails is retried
//!    from what the hub says it has, so the command resumes by itself
//!    through network errors and, run again, after it was killed.
//! 3. `POST /api/v1/import/{format}?upload={sha256}&async=true` starts the
//!    job; `GET /api/v1/import/jobs/{id}` is followed until it ends.
//!
//! The same file imported the same way twice is answered by its first job
//! and writes nothing.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What to import and how (the options are the API's query parameters).
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The file: `.csv`/`.tsv`, `.parquet`, or line protocol (`.lp`, `.txt`).
    pub file: PathBuf,
    /// The hub's base URL.
    #[arg(long, env = "FERRY_HUB_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// A token with the `write` role.
    #[arg(long, env = "FERRY_TOKEN")]
    pub token: Option<String>,
    /// `csv`, `parquet` or `lp` (default: from the file's extension).
    #[arg(long)]
    pub format: Option<String>,
    /// The database.
    #[arg(long, alias = "db")]
    pub database: String,
    /// The table (CSV, Parquet); only this measurement (line protocol).
    #[arg(long)]
    pub measurement: Option<String>,
    #[arg(long)]
    pub time_column: Option<String>,
    /// `epoch_s`, `epoch_ms`, `epoch_us`, `epoch_ns`, `rfc3339` (default: auto).
    #[arg(long)]
    pub time_format: Option<String>,
    #[arg(long)]
    pub delimiter: Option<String>,
    #[arg(long)]
    pub skip_rows: Option<usize>,
    /// Line protocol timestamps: `ns` (default), `us`, `ms`, `s`.
    #[arg(long)]
    pub precision: Option<String>,
    /// Comma-separated columns stored as tags.
    #[arg(long)]
    pub tag_columns: Option<String>,
    /// Field types that override inference: `count:i64,ok:bool`.
    #[arg(long)]
    pub types: Option<String>,
    /// Comma-separated columns to leave out.
    #[arg(long)]
    pub ignore_columns: Option<String>,
    /// Bytes per upload request.
    #[arg(long, default_value = "8MiB")]
    pub piece_size: bytesize::ByteSize,
    /// A CA bundle (PEM) to trust for an `https` hub.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Start the job and exit without following it.
    #[arg(long)]
    pub no_wait: bool,
}

fn format_of(args: &ImportArgs) -> Result<&'static str, String> {
    let from = args.format.clone().unwrap_or_else(|| {
        args.file
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default()
    });
    match from.as_str() {
        "csv" | "tsv" => Ok("csv"),
        "parquet" | "pq" => Ok("parquet"),
        "lp" | "txt" | "line" | "influx" => Ok("lp"),
        other => Err(format!(
            "cannot tell the format from {other:?}; pass --format csv, parquet or lp"
        )),
    }
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{msg:10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_owned());
    pb
}

fn hash(path: &Path, pb: &ProgressBar) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        pb.inc(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

struct Hub {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Hub {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), String> {
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    async fn received(&self, sha: &str) -> Result<u64, String> {
        let (status, v) = self
            .json(self.request(
                reqwest::Method::GET,
                &format!("/api/v1/import/uploads/{sha}"),
            ))
            .await?;
        if status != 200 {
            return Err(describe(status, &v));
        }
        Ok(v["received"].as_u64().unwrap_or(0))
    }
}

fn describe(status: u16, v: &Value) -> String {
    match v.get("message").and_then(Value::as_str) {
        Some(m) => format!("{status}: {m}"),
        None => format!("{status}: {v}"),
    }
}

/// Runs the command; answers the job as the hub last showed it.
pub async fn run(args: ImportArgs) -> Result<Value, String> {
    let format = format_of(&args)?;
    let size = std::fs::metadata(&args.file)
        .map_err(|e| format!("{}: {e}", args.file.display()))?
        .len();
    let pb = bar(size, "hashing");
    let path = args.file.clone();
    let hash_pb = pb.clone();
    let sha = tokio::task::spawn_blocking(move || hash(&path, &hash_pb))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", args.file.display()))?;
    pb.finish_and_clear();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(300))
        .user_agent(concat!("ferry-hub-import/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &args.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
        builder = builder.tls_certs_only(certs);
    }
    let hub = Hub {
        http: builder.build().map_err(|e| e.to_string())?,
        base: args.url.trim_end_matches('/').to_owned(),
        token: args.token.clone(),
    };
    upload(
        &hub,
        &args.file,
        &sha,
        size,
        args.piece_size.as_u64().max(1),
    )
    .await?;

    let mut query: Vec<(&str, String)> = vec![
        ("upload", sha.clone()),
        ("async", "true".to_owned()),
        ("db", args.database.clone()),
    ];
    if let Some(name) = args.file.file_name() {
        query.push(("file_name", name.to_string_lossy().into_owned()));
    }
    let options = [
        ("measurement", &args.measurement),
        ("time_column", &args.time_column),
        ("time_format", &args.time_format),
        ("skip_rows", &args.skip_rows.map(|n| n.to_string())),
        ("precision", &args.precision),
        ("tag_columns", &args.tag_columns),
        ("types", &args.types),
        ("ignore_columns", &args.ignore_columns),
    ];
    for (k, v) in options {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let tsv = args.file.extension().is_some_and(|e| e == "tsv");
    match (&args.delimiter, tsv) {
        (Some(d), _) => query.push(("delimiter", d.clone())),
        (None, true) => query.push(("delimiter", "tab".to_owned())),
        (None, false) => {}
    }
    let (status, answer) = hub
        .json(
            hub.request(reqwest::Method::POST, &format!("/api/v1/import/{format}"))
                .query(&query),
        )
        .await?;
    if status != 200 && status != 202 {
        return Err(describe(status, &answer));
    }
    let mut job = answer["job"].clone();
    let duplicate = answer["duplicate"].as_bool() == Some(true);
    if duplicate {
        eprintln!(
            "already imported by job {} ({}); nothing written",
            job["id"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?")
        );
    }
    if !args.no_wait {
        job = follow(&hub, job).await?;
    }
    job["duplicate"] = Value::Bool(duplicate);
    Ok(job)
}

/// Sends what the hub does not have yet.
async fn upload(hub: &Hub, path: &Path, sha: &str, size: u64, piece: u64) -> Result<(), String> {
    let pb = bar(size, "uploading");
    let mut failures = 0u32;
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    loop {
        let have = match hub.received(sha).await {
            Ok(n) => n,
            Err(e) if failures < 10 => {
                failures += 1;
                pb.println(format!("hub unreachable ({e}); retrying"));
                tokio::time::sleep(Duration::from_secs(u64::from(failures).min(10))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        pb.set_position(have);
        if have >= size {
            pb.finish_and_clear();
            return Ok(());
        }
        let len = piece.min(size - have);
        let mut buf = vec![0u8; usize::try_from(len).map_err(|e| e.to_string())?];
        file.seek(SeekFrom::Start(have))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let sent = hub
            .json(
                hub.request(
                    reqwest::Method::PUT,
                    &format!("/api/v1/import/uploads/{sha}"),
                )
                .query(&[("offset", have)])
                .body(buf),
            )
            .await;
        match sent {
            Ok((200, _)) => failures = 0,
            // Another run sent more meanwhile: ask again.
            Ok((409, _)) => {}
            Ok((status, v)) if status < 500 => return Err(describe(status, &v)),
            Ok((status, v)) if failures >= 10 => return Err(describe(status, &v)),
            Err(e) if failures >= 10 => return Err(e),
            Ok(_) | Err(_) => {
                failures += 1;
                tokio::time::sleep(Duration::from_secs(u64::from(failures).min(10))).await;
            }
        }
    }
}

/// Shows the job's progress until it ends.
async fn follow(hub: &Hub, mut job: Value) -> Result<Value, String> {
    let total = job["bytes_total"].as_u64().unwrap_or(0);
    let pb = bar(total, "importing");
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    loop {
        pb.set_position(job["bytes_done"].as_u64().unwrap_or(0));
        pb.set_message(format!(
            "importing {} rows",
            job["rows_imported"].as_u64().unwrap_or(0)
        ));
        let state = job["state"].as_str().unwrap_or("");
        if state != "queued" && state != "running" {
            pb.finish_and_clear();
            return if state == "completed" {
                Ok(job)
            } else {
                Err(format!(
                    "job {id} {state}: {}",
                    job["error"].as_str().unwrap_or("")
                ))
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        match hub
            .json(hub.request(reqwest::Method::GET, &format!("/api/v1/import/jobs/{id}")))
            .await
        {
            Ok((200, v)) => job = v,
            Ok((status, v)) => pb.println(format!("job status: {}", describe(status, &v))),
            Err(e) => pb.println(format!("hub unreachable ({e}); still following")),
        }
    }
}
