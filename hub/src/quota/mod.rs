//! Quotas and usage.
//!
//! - **Ingest rates**, per token and per database, in rows and body bytes
//!   per second: token buckets holding `quotas.burst` of their rate. A
//!   write is admitted while every bucket it draws on is above zero, and
//!   then takes its whole cost (a bucket may go below zero, so a body larger
//!   than a burst is not refused forever); otherwise it is 429
//!   `too_many_requests` with `Retry-After` the time until the emptiest
//!   bucket is above zero again. Nothing of a refused body is written.
//! - **Stored bytes** per database, measured every
//!   `quotas.storage_interval`: over the quota, writes into it are 429
//!   `quota_exceeded` (agents keep their data and retry) until retention,
//!   a delete or a higher quota brings it under.
//! - **Usage** per day, token and database (rows and bytes ingested,
//!   queries and their time) is counted in memory and added to the metadata
//!   store every `quotas.usage_flush_interval`; stored bytes per database per
//!   day with each measurement. `GET /api/v1/usage` reports both.
//!
//! Defaults come from `[quotas]`; overrides per token and per database from
//! `PUT /api/v1/quotas/{tokens,databases}/{key}`.

pub mod config;
pub mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::QuotaConfig;

use crate::auth::Principal;
use crate::meta::quotas::{QuotaLimits, QuotaScope, UsageDelta};
use crate::meta::{Meta, MetaError};
use crate::metrics as m;
use crate::server::ApiError;
use crate::table::Tables;
use ferry_protocols::api::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Unit {
    Rows,
    Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    scope: QuotaScope,
    key: String,
    unit: Unit,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

/// Usage key: (day, token id, token name, database).
type UsageKey = (String, i64, String, String);

#[derive(Debug)]
struct Inner {
    config: QuotaConfig,
    meta: Meta,
    tables: Tables,
    overrides: RwLock<HashMap<(QuotaScope, String), QuotaLimits>>,
    buckets: Mutex<HashMap<BucketKey, Bucket>>,
    stored: RwLock<HashMap<String, u64>>,
    usage: Mutex<HashMap<UsageKey, UsageDelta>>,
}

/// Quotas and usage; cheap to clone.
#[derive(Debug, Clone)]
pub struct Quotas {
    inner: Arc<Inner>,
}

/// The token key of a principal: its id, or without auth its address.
fn token_key(p: &Principal) -> String {
    p.token_id.map_or_else(|| p.key(), |id| id.to_string())
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

impl Quotas {
    pub fn new(meta: Meta, tables: Tables, config: QuotaConfig) -> Self {
        Quotas {
            inner: Arc::new(Inner {
                config,
                meta,
                tables,
                overrides: RwLock::default(),
                buckets: Mutex::default(),
                stored: RwLock::default(),
                usage: Mutex::default(),
            }),
        }
    }

    pub fn config(&self) -> &QuotaConfig {
        &self.inner.config
    }

    /// Reads the overrides from the metadata store (at start, and after
    /// each change through the API).
    pub async fn load(&self) -> Result<(), MetaError> {
        let rows = self.inner.meta.quota_overrides().await?;
        let map = rows
            .into_iter()
            .map(|o| ((o.scope, o.key), o.limits))
            .collect();
        if let Ok(mut o) = self.inner.overrides.write() {
            *o = map;
        }
        Ok(())
    }

    /// The limits in force for `scope`/`key`: its override, else the
    /// config's defaults (0: unlimited).
    pub fn limits(&self, scope: QuotaScope, key: &str) -> QuotaLimits {
        let c = &self.inner.config;
        let (rows, bytes, max) = match scope {
            QuotaScope::Token => (
                c.token_rows_per_second,
                c.token_bytes_per_second.as_u64(),
                0,
            ),
            QuotaScope::Database => (
                c.database_rows_per_second,
                c.database_bytes_per_second.as_u64(),
                c.database_max_bytes.as_u64(),
            ),
        };
        let o = self
            .inner
            .overrides
            .read()
            .ok()
            .and_then(|o| o.get(&(scope, key.to_owned())).copied())
            .unwrap_or_default();
        QuotaLimits {
            rows_per_second: Some(o.rows_per_second.unwrap_or(rows)),
            bytes_per_second: Some(o.bytes_per_second.unwrap_or(bytes)),
            max_bytes: Some(o.max_bytes.unwrap_or(max)),
        }
    }

    /// Admits a write of `rows` rows and `bytes` body bytes by `principal`
    /// into `database`, taking them from its buckets; or 429 naming the
    /// limit, with `Retry-After`.
    pub fn admit(
        &self,
        principal: &Principal,
        database: &str,
        rows: u64,
        bytes: u64,
    ) -> Result<(), ApiError> {
        let db = self.limits(QuotaScope::Database, database);
        if let Some(max) = db.max_bytes.filter(|m| *m > 0) {
            let stored = self
                .inner
                .stored
                .read()
                .ok()
                .and_then(|s| s.get(database).copied())
                .unwrap_or(0);
            if stored >= max {
                metrics::counter!(m::QUOTA_REFUSED, "scope" => "database", "limit" => "max_bytes")
                    .increment(1);
                let retry = self.inner.config.storage_interval.as_secs().clamp(1, 3600);
                return Err(ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!(
                        "database {database:?} holds {} (measured every {}), at or over its quota of {}; \
                         writes resume once retention or a delete frees space or the quota is raised",
                        bytesize::ByteSize(stored),
                        humantime::format_duration(self.inner.config.storage_interval),
                        bytesize::ByteSize(max)
                    ),
                )
                .with_retry_after(retry));
            }
        }
        let token = token_key(principal);
        let tok = self.limits(QuotaScope::Token, &token);
        let draws = [
            (
                QuotaScope::Token,
                &token,
                Unit::Rows,
                tok.rows_per_second,
                rows,
            ),
            (
                QuotaScope::Token,
                &token,
                Unit::Bytes,
                tok.bytes_per_second,
                bytes,
            ),
            (
                QuotaScope::Database,
                &database.to_owned(),
                Unit::Rows,
                db.rows_per_second,
                rows,
            ),
            (
                QuotaScope::Database,
                &database.to_owned(),
                Unit::Bytes,
                db.bytes_per_second,
                bytes,
            ),
        ];
        let burst = self.inner.config.burst.as_secs_f64();
        let now = Instant::now();
        let Ok(mut buckets) = self.inner.buckets.lock() else {
            return Ok(());
        };
        // The level of each bucket now, without inserting anything: a
        // refused write leaves the map as it was.
        let level = |buckets: &HashMap<BucketKey, Bucket>, k: &BucketKey, rate: u64| {
            let capacity = rate as f64 * burst;
            buckets.get(k).map_or(capacity, |b| {
                (b.level + now.duration_since(b.at).as_secs_f64() * rate as f64).min(capacity)
            })
        };
        let mut wait: Option<(f64, QuotaScope, Unit, u64)> = None;
        for (scope, key, unit, rate, _) in &draws {
            let rate = rate.unwrap_or(0);
            if rate == 0 {
                continue;
            }
            let k = BucketKey {
                scope: *scope,
                key: (*key).clone(),
                unit: *unit,
            };
            let level = level(&buckets, &k, rate);
            if level <= 0.0 {
                let secs = -level / rate as f64;
                if wait.is_none_or(|(w, ..)| secs > w) {
                    wait = Some((secs, *scope, *unit, rate));
                }
            }
        }
        if let Some((secs, scope, unit, rate)) = wait {
            let (scope_name, who) = match scope {
                QuotaScope::Token => ("token", format!("token {:?}", principal.name)),
                QuotaScope::Database => ("database", format!("database {database:?}")),
            };
            let (unit_name, amount) = match unit {
                Unit::Rows => ("rows_per_second", format!("{rate} rows/s")),
                Unit::Bytes => (
                    "bytes_per_second",
                    format!("{}/s", bytesize::ByteSize(rate)),
                ),
            };
            metrics::counter!(m::QUOTA_REFUSED, "scope" => scope_name, "limit" => unit_name)
                .increment(1);
            return Err(ApiError::too_many_requests(
                format!(
                    "{who} is over its ingest quota of {amount} (quotas.{scope_name}_{unit_name}); \
                     nothing was written, retry later"
                ),
                secs.ceil().max(1.0) as u64,
            ));
        }
        if buckets.len() >= self.inner.config.max_buckets {
            // A bucket idle for a whole burst is full again: dropping it
            // changes nothing (a new one starts full).
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() < burst);
        }
        for (scope, key, unit, rate, cost) in draws {
            let rate = rate.unwrap_or(0);
            if rate == 0 {
                continue;
            }
            let k = BucketKey {
                scope,
                key: key.clone(),
                unit,
            };
            let level = level(&buckets, &k, rate) - cost as f64;
            if buckets.len() >= self.inner.config.max_buckets && !buckets.contains_key(&k) {
                // Every bucket is busy: this key goes unmetered rather than
                // growing the map (counted, so an operator can raise it).
                metrics::counter!(m::QUOTA_BUCKETS_FULL).increment(1);
                continue;
            }
            buckets.insert(k, Bucket { level, at: now });
        }
        Ok(())
    }

    fn add(&self, principal: &Principal, database: &str, f: impl FnOnce(&mut UsageDelta)) {
        self.add_as(principal.token_id, &principal.name, database, f);
    }

    fn add_as(
        &self,
        token_id: Option<i64>,
        name: &str,
        database: &str,
        f: impl FnOnce(&mut UsageDelta),
    ) {
        let key = (
            today(),
            token_id.unwrap_or(-1),
            name.to_owned(),
            database.to_owned(),
        );
        if let Ok(mut u) = self.inner.usage.lock() {
            f(u.entry(key).or_default());
        }
    }

    /// Counts committed rows and the body bytes that carried them.
    pub fn ingested(&self, principal: &Principal, database: &str, rows: u64, bytes: u64) {
        metrics::counter!(m::USAGE_ROWS, "database" => database.to_owned()).increment(rows);
        metrics::counter!(m::USAGE_BYTES, "database" => database.to_owned()).increment(bytes);
        self.add(principal, database, |d| {
            d.rows_ingested += rows;
            d.bytes_ingested += bytes;
        });
    }

    /// Counts rows a bulk import committed for the token that created it
    /// (`token_id`, `name`), with the file bytes that carried them.
    pub fn imported(
        &self,
        token_id: Option<i64>,
        name: &str,
        database: &str,
        rows: u64,
        bytes: u64,
    ) {
        metrics::counter!(m::USAGE_ROWS, "database" => database.to_owned()).increment(rows);
        metrics::counter!(m::USAGE_BYTES, "database" => database.to_owned()).increment(bytes);
        self.add_as(token_id, name, database, |d| {
            d.rows_ingested += rows;
            d.bytes_ingested += bytes;
        });
    }

    /// Counts a query and its time.
    pub fn queried(&self, principal: &Principal, database: Option<&str>, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        self.add(principal, database.unwrap_or(""), |d| {
            d.queries += 1;
            d.query_ms += ms;
        });
    }

    /// Adds the usage counted so far to the metadata store.
    pub async fn flush(&self) {
        let taken = match self.inner.usage.lock() {
            Ok(mut u) => std::mem::take(&mut *u),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        if let Err(e) = self.inner.meta.add_usage(taken.into_iter().collect()).await {
            tracing::warn!(error = %e, "recording usage failed");
        }
    }

    /// Each database's stored bytes as last measured (empty until the
    /// first measurement).
    pub fn stored(&self) -> HashMap<String, u64> {
        self.inner
            .stored
            .read()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Measures each database's stored bytes (the sum of its tables' active
    /// files) and records them for today.
    pub async fn measure_storage(&self) {
        let names = match self.inner.tables.known().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "listing tables for the storage quota failed");
                return;
            }
        };
        let mut sizes: HashMap<String, u64> = HashMap::new();
        for name in names {
            match self.inner.tables.summary(&name).await {
                Ok(Some(s)) => {
                    *sizes.entry(name.database.as_str().to_owned()).or_default() += s.bytes
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(table = %name, error = %e, "measuring a table failed"),
            }
        }
        for (db, bytes) in &sizes {
            metrics::gauge!(m::DATABASE_STORED_BYTES, "database" => db.clone()).set(*bytes as f64);
        }
        if let Err(e) = self
            .inner
            .meta
            .record_storage(
                today(),
                sizes.iter().map(|(d, b)| (d.clone(), *b)).collect(),
            )
            .await
        {
            tracing::warn!(error = %e, "recording stored bytes failed");
        }
        if let Ok(mut s) = self.inner.stored.write() {
            *s = sizes;
        }
        let keep = self.inner.config.usage_retention;
        if !keep.is_zero() {
            let cutoff = chrono::Utc::now()
                - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
            let day = cutoff.format("%Y-%m-%d").to_string();
            if let Err(e) = self.inner.meta.prune_usage(day).await {
                tracing::warn!(error = %e, "pruning old usage rows failed");
            }
        }
    }

    /// Flushes usage and measures storage on their intervals until
    /// `shutdown`; then flushes once more.
    pub fn spawn(&self, tracker: &TaskTracker, shutdown: CancellationToken) {
        let q = self.clone();
        tracker.spawn(async move {
            let mut flush = tokio::time::interval(q.inner.config.usage_flush_interval);
            flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut storage = tokio::time::interval(q.inner.config.storage_interval);
            storage.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // One more measurement a minute after start (if sooner than the
            // interval's): a new hub's first tables then show in
            // /api/v1/instance and the Control Center without waiting for
            // the whole interval.
            let soon = Duration::from_secs(60);
            let early = tokio::time::sleep(soon);
            tokio::pin!(early);
            let mut early_pending = soon < q.inner.config.storage_interval;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = flush.tick() => q.flush().await,
                    _ = storage.tick() => q.measure_storage().await,
                    () = &mut early, if early_pending => {
                        early_pending = false;
                        q.measure_storage().await;
                    }
                }
            }
            q.flush().await;
        });
    }
}
