//! HTTP API tests: each starts a hub in-process on 127.0.0.1 port 0 with a
//! temporary directory for its tables and metadata, and talks to it with a
//! real HTTP client. One test binary (the modules below) keeps link time
//! down: the hub links DataFusion and deltalake.

// Test helpers outside #[test] functions: clippy's allow-unwrap-in-tests
// does not reach them.
#![allow(clippy::unwrap_used)]

#[path = "api_tests/alerts.rs"]
mod alerts;
#[path = "api_tests/auth.rs"]
mod auth;
#[path = "api_tests/continuous.rs"]
mod continuous;
#[path = "api_tests/delete.rs"]
mod delete;
#[path = "api_tests/encryption.rs"]
mod encryption;
#[path = "api_tests/governance.rs"]
mod governance;
#[path = "api_tests/import.rs"]
mod import;
#[path = "api_tests/ingest.rs"]
mod ingest;
#[path = "api_tests/instance.rs"]
mod instance;
#[path = "api_tests/last_cache.rs"]
mod last_cache;
#[path = "api_tests/maintenance.rs"]
mod maintenance;
#[path = "api_tests/queries_manage.rs"]
mod queries_manage;
#[path = "api_tests/query.rs"]
mod query;
#[path = "api_tests/quotas.rs"]
mod quotas;
#[path = "api_tests/rbac.rs"]
mod rbac;
#[path = "api_tests/rbac_admin.rs"]
mod rbac_admin;
#[path = "api_tests/restart.rs"]
mod restart;
#[path = "api_tests/retention_policies.rs"]
mod retention_policies;
#[path = "api_tests/segment_batch.rs"]
mod segment_batch;
#[path = "api_tests/shared_service.rs"]
mod shared_service;
#[path = "api_tests/support.rs"]
mod support;
#[path = "api_tests/timeseries.rs"]
mod timeseries;
