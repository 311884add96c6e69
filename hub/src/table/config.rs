//! The `[storage]` and `[tables]` config sections, and how they become a
//! Delta table URL plus object_store options.
//!
//! ```toml
//! [storage]
//! backend = "fs"                    # "fs" (default) | "s3" | "azure"
//! path = "./ferry-data/tables"      # fs only
//!
//! # backend = "s3"
//! # bucket = "lake"                 # required
//! # prefix = "ferry"                # optional key prefix
//! # endpoint = "http://127.0.0.1:9000"   # S3-compatible servers; omit for AWS
//! # region = "us-east-1"
//! # access_key_id = "..."           # omit both keys to use the AWS credential chain
//! # secret_access_key = "..."
//! # allow_http = false
//! # addressing = "path"             # "path" | "virtual_hosted" (default: virtual_hosted without endpoint, path with one)
//! # conditional_put = "etag"        # "etag" (default) | "disabled"
//! # multi_writer = false
//!
//! # backend = "azure"
//! # account = "myaccount"
//! # container = "lake"              # required
//! # prefix = "ferry"
//! # access_key = "..."              # or sas_token, or connection_string
//! # use_emulator = false            # Azurite: endpoint from env AZURITE_BLOB_STORAGE_URL
//! # endpoint = "https://myaccount.blob.core.windows.net"
//! # multi_writer = false
//!
//! [tables]
//! commit_interval = "0s"
//! early_commit_rows = 10000
//! max_commit_rows = 1000000
//! queue_depth = 1024
//! ```
//!
//! # Writers and conditional put
//!
//! A Delta commit is "create `_delta_log/<version>.json` if it does not
//! exist". That is only a safe commit protocol when the store's conditional
//! create (`If-None-Match: *`) is **atomic**: AWS S3, Azure Blob and the
//! local filesystem are; s3s-fs is not (it lost 4 of 61 concurrent commits in
//! our test) and garage ignores the header. So:
//!
//! - `multi_writer = false` (the default): this hub assumes it is the only
//!   writer of its tables. It keeps each table's snapshot and the agents'
//!   last committed segment numbers in memory between commits.
//! - `multi_writer = true`: several hubs may commit to the same tables. The
//!   hub reloads the table log before every commit and relies on Delta's
//!   conflict detection. Requires `conditional_put = "etag"` and a store whose
//!   conditional put is atomic (AWS S3, Azure, a local file system: the
//!   commit file is created with `link`, which fails if it exists; not NFS
//!   before v3 or a file system without hard links). Nothing can check
//!   atomicity from the client side; choosing the store is the operator's job.
//! - `conditional_put = "disabled"` (S3-compatible servers that reject
//!   `If-None-Match`) is refused by the hub's config check: deltalake 1.1
//!   and the kernel commit every version with a put-if-absent, which such a
//!   store cannot do (object_store: "PutMode::Create when conditional put
//!   is disabled not yet implemented").

use std::collections::HashMap;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::TableError;
use super::name::TableName;

/// The `[storage]` section: where the Delta tables live. `backend`
/// selects the variant (default `"fs"`); each variant rejects keys it does
/// not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A local directory.
    Fs(FsConfig),
    /// AWS S3 or an S3-compatible server.
    S3(S3Config),
    /// Azure Blob Storage (or Azurite).
    Azure(AzureConfig),
}

impl StorageConfig {
    /// An S3-compatible store configured without conditional put
    /// (`conditional_put = "disabled"`).
    pub fn lacks_conditional_put(&self) -> bool {
        matches!(self, StorageConfig::S3(s3) if s3.conditional_put == ConditionalPut::Disabled)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Fs(FsConfig::default())
    }
}

impl<'de> Deserialize<'de> for StorageConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(d)?;
        let backend = match table.remove("backend") {
            None => "fs".to_owned(),
            Some(toml::Value::String(s)) => s,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "backend must be a string, found {}",
                    other.type_str()
                )));
            }
        };
        let rest = toml::Value::Table(table);
        match backend.as_str() {
            "fs" => FsConfig::deserialize(rest).map(StorageConfig::Fs),
            "s3" => S3Config::deserialize(rest).map(StorageConfig::S3),
            "azure" => AzureConfig::deserialize(rest).map(StorageConfig::Azure),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown backend {other:?}, expected one of \"fs\", \"s3\", \"azure\""
                )));
            }
        }
        .map_err(D::Error::custom)
    }
}

/// `[storage]` with `backend = "fs"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsConfig {
    /// The directory that holds the tables; created if missing.
    #[serde(default = "default_fs_path")]
    pub path: PathBuf,
    /// Other hubs on this machine (or on a shared file system whose
    /// exclusive create is atomic) write the same directory.
    #[serde(default)]
    pub multi_writer: bool,
}

impl Default for FsConfig {
    fn default() -> Self {
        FsConfig {
            path: default_fs_path(),
            multi_writer: false,
        }
    }
}

fn default_fs_path() -> PathBuf {
    PathBuf::from("./ferry-data/tables")
}

/// S3 addressing style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Addressing {
    /// `https://endpoint/bucket/key`.
    Path,
    /// `https://bucket.endpoint/key`.
    VirtualHosted,
}

/// How commits are made exclusive on S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionalPut {
    /// `If-None-Match: *` on log entries (object_store's `etag` mode).
    #[default]
    Etag,
    /// No conditional put: copy-based rename, single writer only.
    Disabled,
}

/// `[storage]` with `backend = "s3"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub allow_http: bool,
    /// Default: virtual-hosted without `endpoint`, path-style with one.
    #[serde(default)]
    pub addressing: Option<Addressing>,
    #[serde(default)]
    pub conditional_put: ConditionalPut,
    #[serde(default)]
    pub multi_writer: bool,
    /// Per request to the store; a request past it is retried (object_store's
    /// backoff). Default: object_store's 30 s.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
}

/// `[storage]` with `backend = "azure"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    #[serde(default)]
    pub account: Option<String>,
    pub container: String,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub sas_token: Option<String>,
    /// `AccountName=..;AccountKey=..` / `BlobEndpoint=..;SharedAccessSignature=..` /
    /// `UseDevelopmentStorage=true`.
    #[serde(default)]
    pub connection_string: Option<String>,
    /// Azurite. object_store reads the emulator's URL only from the
    /// environment variable `AZURITE_BLOB_STORAGE_URL` (default
    /// `http://127.0.0.1:10000`); an `endpoint` set here must equal it.
    #[serde(default)]
    pub use_emulator: bool,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub multi_writer: bool,
    /// Per request to the store, as for S3.
    #[serde(default, with = "humantime_serde")]
    pub request_timeout: Option<Duration>,
}

/// The `[tables]` section: how the commit batcher behaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableConfig {
    /// The least time between two commits of one table. 0 (the default) is
    /// group commit: a write commits as soon as the table's previous commit
    /// has finished, together with every write that arrived meanwhile, so
    /// a write to an idle table is never held and commits grow with the
    /// load. Above 0, a write to a table that has not committed for this
    /// long commits at once and writes arriving sooner wait for the rest of
    /// the interval and share one commit (fewer, bigger commits).
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// A batch with this many rows does not wait for `commit_interval`: it
    /// takes the writes already queued behind it and commits at once. One
    /// agent segment (`segment.max_rows`, default 10,000) is big enough for
    /// a good Parquet file, so a draining agent is not held back a whole
    /// interval per segment; small writes still wait for company.
    pub early_commit_rows: NonZeroUsize,
    /// The most rows one commit takes; a batch this big commits at once.
    pub max_commit_rows: NonZeroUsize,
    /// Writes queued per table before `write` waits (backpressure).
    pub queue_depth: NonZeroUsize,
    /// Most columns (time, tags and fields) a table may have. A line or
    /// record that would add one more is rejected (400, naming the table
    /// and column) before any batch is built for it.
    pub max_columns: NonZeroUsize,
    /// Most new columns one write may add to an existing table.
    pub max_new_columns: NonZeroUsize,
    /// Most tables (measurements) one database may hold; a write that would
    /// create one more is rejected (400, naming the database).
    pub max_per_database: NonZeroUsize,
    /// A table's writer (and its cached query state) not used this long is
    /// released; the next write or query loads it again.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Arrow bytes of writes one table holds queued or committing; a write
    /// beyond it is answered 503 with `Retry-After` (a write alone in an
    /// empty queue is always taken, so a big body still lands). Bounds
    /// what one busy table holds; `ingest.max_inflight_bytes` bounds the
    /// sum over all.
    pub max_queued_bytes: bytesize::ByteSize,
    /// With `multi_writer` (other hubs write the same store), how old the
    /// hub's list of tables may be when `SHOW` or `information_schema`
    /// lists them. A query that names a table always finds it; a
    /// single-writer hub keeps the list true by itself.
    #[serde(with = "humantime_serde")]
    pub listing_staleness: Duration,
}

impl TableConfig {
    pub(crate) fn column_limits(&self) -> super::writer::ColumnLimits {
        super::writer::ColumnLimits {
            max_columns: self.max_columns.get(),
            max_new_columns: self.max_new_columns.get(),
        }
    }
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            commit_interval: Duration::ZERO,
            early_commit_rows: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            max_commit_rows: NonZeroUsize::new(1_000_000).unwrap_or(NonZeroUsize::MIN),
            queue_depth: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
            max_columns: NonZeroUsize::new(ferry_protocols::batch::DEFAULT_MAX_COLUMNS)
                .unwrap_or(NonZeroUsize::MIN),
            max_new_columns: NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN),
            max_per_database: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            idle_timeout: Duration::from_secs(600),
            max_queued_bytes: bytesize::ByteSize::mib(64),
            listing_staleness: Duration::from_secs(2),
        }
    }
}

/// The emulator's well-known account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// A `[storage]` section turned into what deltalake needs.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedStorage {
    /// The root URL, ending in `/`. Tables live at `<root><database>/<measurement>/`.
    pub(crate) root: String,
    pub(crate) options: HashMap<String, String>,
    pub(crate) multi_writer: bool,
    /// `[encryption]`, when on: every table's store encrypts.
    pub(crate) encryption: Option<std::sync::Arc<crate::encryption::Encryption>>,
}

impl ResolvedStorage {
    /// The URL of one table (directory names from [`encode_segment`]).
    pub(crate) fn table_url(&self, table: &TableName) -> String {
        format!(
            "{}{}/{}/",
            self.root,
            encode_segment(table.database.as_str()),
            encode_segment(table.measurement.as_str())
        )
    }
}

/// object_store's client option `timeout` (a humantime string).
fn request_timeout(map: &mut HashMap<String, String>, timeout: Option<Duration>) {
    if let Some(t) = timeout {
        map.insert(
            "timeout".to_owned(),
            humantime::format_duration(t).to_string(),
        );
    }
}

fn opt(map: &mut HashMap<String, String>, key: &str, value: Option<&String>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v.clone());
    }
}

/// `scheme://container/` plus the configured prefix, ending in `/`.
fn with_prefix(base: String, prefix: Option<&str>) -> Result<String, TableError> {
    let mut root = base;
    for part in prefix.unwrap_or("").split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." || !part.bytes().all(plain) {
            return Err(TableError::Config(format!(
                "storage.prefix segment {part:?}: use only ASCII letters, digits, '_', '-', '.'"
            )));
        }
        root.push_str(part);
        root.push('/');
    }
    Ok(root)
}

impl StorageConfig {
    /// Checks the section and builds the root URL and the object_store options.
    pub(crate) fn resolve(&self) -> Result<ResolvedStorage, TableError> {
        match self {
            StorageConfig::Fs(fs) => resolve_fs(&fs.path, fs.multi_writer),
            StorageConfig::S3(s3) => resolve_s3(s3),
            StorageConfig::Azure(az) => resolve_azure(az),
        }
    }
}

fn resolve_fs(path: &Path, multi_writer: bool) -> Result<ResolvedStorage, TableError> {
    std::fs::create_dir_all(path).map_err(|e| {
        TableError::Config(format!(
            "storage.path {}: cannot create: {e}",
            path.display()
        ))
    })?;
    let text = path.to_str().ok_or_else(|| {
        TableError::Config(format!("storage.path {} is not UTF-8", path.display()))
    })?;
    let url = deltalake::ensure_table_uri(text)
        .map_err(|e| TableError::Config(format!("storage.path {}: {e}", path.display())))?;
    let mut root = url.to_string();
    if !root.ends_with('/') {
        root.push('/');
    }
    Ok(ResolvedStorage {
        root,
        options: HashMap::new(),
        multi_writer,
        encryption: None,
    })
}

fn resolve_s3(s3: &S3Config) -> Result<ResolvedStorage, TableError> {
    let mut problems = Vec::new();
    if s3.bucket.is_empty() || !s3.bucket.bytes().all(plain) {
        problems.push(format!(
            "storage.bucket {:?} is not a bucket name",
            s3.bucket
        ));
    }
    if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
        problems.push(
            "storage.access_key_id and storage.secret_access_key must be set together".to_owned(),
        );
    }
    if s3.multi_writer && s3.conditional_put == ConditionalPut::Disabled {
        problems.push(
            "storage.multi_writer = true needs storage.conditional_put = \"etag\" on a store whose conditional put is atomic".to_owned(),
        );
    }
    if !problems.is_empty() {
        return Err(TableError::Config(problems.join("; ")));
    }
    let root = with_prefix(format!("s3://{}/", s3.bucket), s3.prefix.as_deref())?;
    let mut options = HashMap::new();
    opt(&mut options, "aws_endpoint", s3.endpoint.as_ref());
    opt(&mut options, "aws_region", s3.region.as_ref());
    opt(&mut options, "aws_access_key_id", s3.access_key_id.as_ref());
    opt(
        &mut options,
        "aws_secret_access_key",
        s3.secret_access_key.as_ref(),
    );
    options.insert("aws_allow_http".to_owned(), s3.allow_http.to_string());
    request_timeout(&mut options, s3.request_timeout);
    let addressing = s3.addressing.unwrap_or(if s3.endpoint.is_some() {
        Addressing::Path
    } else {
        Addressing::VirtualHosted
    });
    options.insert(
        "aws_virtual_hosted_style_request".to_owned(),
        (addressing == Addressing::VirtualHosted).to_string(),
    );
    match s3.conditional_put {
        ConditionalPut::Etag => {
            options.insert("aws_conditional_put".to_owned(), "etag".to_owned());
        }
        ConditionalPut::Disabled => {
            options.insert("aws_conditional_put".to_owned(), "disabled".to_owned());
            options.insert("aws_s3_allow_unsafe_rename".to_owned(), "true".to_owned());
        }
    }
    Ok(ResolvedStorage {
        root,
        options,
        multi_writer: s3.multi_writer,
        encryption: None,
    })
}

/// Key/value pairs of an Azure connection string (keys case-insensitive).
fn parse_connection_string(s: &str) -> Result<HashMap<String, String>, TableError> {
    let mut out = HashMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            TableError::Config(format!(
                "storage.connection_string: {:?} is not Key=Value",
                part.split('=').next().unwrap_or("")
            ))
        })?;
        out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    Ok(out)
}

fn resolve_azure(az: &AzureConfig) -> Result<ResolvedStorage, TableError> {
    let mut account = az.account.clone();
    let mut access_key = az.access_key.clone();
    let mut sas = az.sas_token.clone();
    let mut endpoint = az.endpoint.clone();
    let mut emulator = az.use_emulator;
    if let Some(cs) = &az.connection_string {
        let kv = parse_connection_string(cs)?;
        let get = |k: &str| kv.get(k).cloned();
        if get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            emulator = true;
        }
        account = account.or_else(|| get("accountname"));
        access_key = access_key.or_else(|| get("accountkey"));
        sas = sas.or_else(|| get("sharedaccesssignature"));
        endpoint = endpoint.or_else(|| get("blobendpoint"));
        if endpoint.is_none()
            && let (Some(acc), Some(suffix)) = (&account, get("endpointsuffix"))
        {
            let proto = get("defaultendpointsprotocol").unwrap_or_else(|| "https".to_owned());
            endpoint = Some(format!("{proto}://{acc}.blob.{suffix}"));
        }
    }
    let mut problems = Vec::new();
    if az.container.is_empty() || !az.container.bytes().all(plain) {
        problems.push(format!(
            "storage.container {:?} is not a container name",
            az.container
        ));
    }
    let credentials = [access_key.is_some(), sas.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if credentials > 1 {
        problems.push("set only one of storage.access_key and storage.sas_token".to_owned());
    }
    if !emulator && account.is_none() {
        problems.push(
            "storage.account is required (or a connection_string with AccountName)".to_owned(),
        );
    }
    let mut options = HashMap::new();
    if emulator {
        if let Some(ep) = &endpoint {
            let env = std::env::var("AZURITE_BLOB_STORAGE_URL").ok();
            let same = env
                .as_deref()
                .is_some_and(|e| e.trim_end_matches('/') == ep.trim_end_matches('/'));
            if !same {
                problems.push(format!(
                    "storage.endpoint {ep:?} with use_emulator: object_store takes the emulator URL only from the environment; start the hub with AZURITE_BLOB_STORAGE_URL={ep}"
                ));
            }
        }
        options.insert("azure_storage_use_emulator".to_owned(), "true".to_owned());
        options.insert(
            "azure_storage_account_name".to_owned(),
            account
                .clone()
                .unwrap_or_else(|| AZURITE_ACCOUNT.to_owned()),
        );
    } else {
        opt(&mut options, "azure_storage_account_name", account.as_ref());
        opt(&mut options, "azure_storage_endpoint", endpoint.as_ref());
        if endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            options.insert("azure_allow_http".to_owned(), "true".to_owned());
        }
    }
    if !problems.is_empty() {
        return Err(TableError::Config(problems.join("; ")));
    }
    request_timeout(&mut options, az.request_timeout);
    opt(
        &mut options,
        "azure_storage_account_key",
        access_key.as_ref(),
    );
    opt(&mut options, "azure_storage_sas_key", sas.as_ref());
    let root = with_prefix(format!("az://{}/", az.container), az.prefix.as_deref())?;
    Ok(ResolvedStorage {
        root,
        options,
        multi_writer: az.multi_writer,
        encryption: None,
    })
}

/// Bytes kept as they are in directory names; everything else is `+HH`.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

/// The longest directory name a database or measurement may become: the
/// common filesystem limit (ext4, xfs, btrfs: 255 bytes per name).
pub(crate) const MAX_ENCODED_NAME: usize = 255;

/// `Ok` if both parts of `table` fit one directory name each once encoded;
/// else why not (a name of 43 Cyrillic letters encodes to 258 bytes).
pub(crate) fn check_storage_form(table: &TableName) -> Result<(), String> {
    for (what, name) in [
        ("database", table.database.as_str()),
        ("measurement", table.measurement.as_str()),
    ] {
        let encoded = encode_segment(name).len();
        if encoded > MAX_ENCODED_NAME {
            return Err(format!(
                "{what} {name:?} needs {encoded} bytes as a directory name in the store, \
                 over the limit of {MAX_ENCODED_NAME}; use a shorter name (non-ASCII letters take 6 bytes each)"
            ));
        }
    }
    Ok(())
}

/// A database or measurement as one directory name: ASCII letters, digits,
/// `_`, `-` and `.` stay; every other byte becomes `+` and two uppercase hex
/// digits (`my sensor` → `my+20sensor`). Safe for every object store and
/// reversible by [`decode_segment`].
pub(crate) fn encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_segment`]; `None` for a name it cannot have produced.
pub(crate) fn decode_segment(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'+' {
            let hex = encoded.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(hex, 16).ok()?;
            if plain(v) || hex.bytes().any(|h| h.is_ascii_lowercase()) {
                return None;
            }
            out.push(v);
            i += 3;
        } else if plain(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// Option keys that hold secrets, for redacted logging.
pub(crate) fn redacted(options: &HashMap<String, String>) -> HashMap<String, String> {
    let secret: HashSet<&str> = [
        "aws_secret_access_key",
        "azure_storage_account_key",
        "azure_storage_sas_key",
    ]
    .into_iter()
    .collect();
    options
        .iter()
        .map(|(k, v)| {
            let v = if secret.contains(k.as_str()) {
                "<redacted>".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}
