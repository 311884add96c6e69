//! What every handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::HubConfig;
use crate::maintenance::Maintenance;
use crate::meta::Meta;
use crate::query::QueryExecutor;
use crate::table::Tables;

/// The state behind every route; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub config: Arc<HubConfig>,
    pub tables: Tables,
    pub meta: Meta,
    pub maintenance: Maintenance,
    /// The other hubs' agents, when hubs share the lake.
    pub fleet_share: Arc<std::sync::OnceLock<Arc<crate::fleet::shared::FleetShare>>>,
    /// True once the tables and the metadata store are open and the
    /// listener is bound; false again during shutdown.
    pub ready: Arc<AtomicBool>,
    pub metrics: Option<PrometheusHandle>,
    /// Where queries run (own runtime, memory pool, admission).
    pub query: Arc<QueryExecutor>,
    /// Write bytes in flight (`ingest.max_inflight_bytes`).
    pub ingest_budget: crate::ingest::budget::IngestBudget,
    /// Queries in flight and the history of finished ones.
    pub queries: Arc<crate::query::tracker::Tracker>,
    /// When this process started serving (for `/health`'s uptime).
    pub started: std::time::Instant,
    /// Continuous queries: their executions and scheduler.
    pub cqs: crate::cq::ContinuousQueries,
    /// Bulk imports: received files and the job workers.
    pub imports: crate::import::Imports,
    /// The audit log's writer.
    pub audit: crate::audit::Audit,
    /// Ingest quotas and usage.
    pub quotas: crate::quota::Quotas,
    /// The instance sampler (`/api/v1/instance`).
    pub instance: crate::instance::Instance,
}

impl AppState {
    pub fn new(
        config: Arc<HubConfig>,
        tables: Tables,
        meta: Meta,
        query: Arc<QueryExecutor>,
    ) -> Self {
        let maintenance = Maintenance::new(
            tables.clone(),
            meta.clone(),
            config.compaction.clone(),
            config.retention.clone(),
        );
        let queries = Arc::new(crate::query::tracker::Tracker::new(
            meta.clone(),
            config.query.history_limits(),
        ));
        let cqs = crate::cq::ContinuousQueries::new(
            tables.clone(),
            meta.clone(),
            query.clone(),
            config.continuous_queries.clone(),
        );
        let quotas = crate::quota::Quotas::new(meta.clone(), tables.clone(), config.quotas.clone());
        let imports = crate::import::Imports::new(
            tables.clone(),
            meta.clone(),
            config.import.clone(),
            config.import.spool_dir_for(&config.metadata.path),
            config.tables.max_columns.get(),
            quotas.clone(),
        );
        AppState {
            audit: crate::audit::Audit::new(meta.clone(), config.audit.clone()),
            quotas,
            cqs,
            imports,
            ingest_budget: crate::ingest::budget::IngestBudget::new(
                config.ingest.max_inflight_bytes.as_u64(),
            ),
            maintenance,
            fleet_share: Arc::new(std::sync::OnceLock::new()),
            config,
            tables,
            meta,
            ready: Arc::new(AtomicBool::new(false)),
            metrics: crate::metrics::install(),
            queries,
            query,
            started: std::time::Instant::now(),
            instance: crate::instance::Instance::default(),
        }
    }
}
