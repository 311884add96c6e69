//! The commented default configuration that `ferry-hub generate-config`
//! prints. A test checks that it parses back to [`HubConfig::default`].

#[cfg(doc)]
use super::HubConfig;

/// A complete `hub.toml` holding every default, with comments.
pub const TEMPLATE: &str = r#"# ferry-hub configuration.
#
# Every key is optional: what is shown here is the default. Unknown keys are
# errors. Check a file with `ferry-hub check-config --config hub.toml`.

[server]
# Address and port of the HTTP API (segments, writes, queries, /metrics).
listen = "0.0.0.0:8000"
# Largest request body, as received and, for gzip or zstd bodies, after
# decompression. Larger bodies are answered 413 payload_too_large.
max_body = "64MiB"
# How long a graceful stop (SIGTERM, SIGINT) waits for in-flight requests
# before the tables are flushed and the hub exits.
shutdown_timeout = "30s"
# HTTPS (rustls) on listen. Anything that crosses a network must use it:
# every request carries a token. The certificate is reloaded on SIGHUP and
# when either file changes; agents trust a private CA with uplink.ca_file.
# [server.tls]
# cert = "/etc/ferry/tls/hub.crt"   # PEM chain, leaf first
# key = "/etc/ferry/tls/hub.key"    # PEM private key
# reload_interval = "10s"           # how often the files are checked

[flight]
# Arrow Flight SQL (gRPC) for ADBC, JDBC, Grafana and influxdb3-python: the
# same tokens, read-only rules, query limits and TLS as /api/v1/query.
enabled = true
# Unset: server.listen's address with the next port (8001 beside 8000).
# listen = "0.0.0.0:8001"
# Largest request message (a statement); larger ones get OUT_OF_RANGE.
max_request_bytes = "4MiB"
# Calls one connection may have open at once (HTTP/2 streams).
max_streams_per_connection = 64
# Connections open at once; more wait in the kernel's backlog.
max_connections = 1024

[storage]
# Where the Delta tables live: "fs" (a local directory, the default), "s3"
# or "azure".
backend = "fs"
path = "./ferry-data/tables"
# Other hubs write the same directory (docs/scale-out.md):
multi_writer = false
#
# backend = "s3"
# bucket = "lake"                  # required
# prefix = "ferry"                 # optional key prefix
# endpoint = "http://127.0.0.1:9000"   # S3-compatible servers; omit for AWS
# region = "us-east-1"
# access_key_id = "..."            # omit both keys to use the AWS credential chain
# secret_access_key = "..."
# allow_http = false
# addressing = "path"              # "path" | "virtual_hosted"
# conditional_put = "etag"         # required: every Delta commit is a
#                                  # conditional put ("disabled" is refused)
# multi_writer = false             # only on stores with an atomic conditional put
# request_timeout = "30s"          # per store request; a stalled one is retried
#
# backend = "azure"
# account = "myaccount"
# container = "lake"               # required
# prefix = "ferry"
# access_key = "..."               # or sas_token, or connection_string
# use_emulator = false
# endpoint = "https://myaccount.blob.core.windows.net"
# multi_writer = false
# request_timeout = "30s"

[tables]
# The least time between two Delta commits of one table. "0s" is group
# commit: a write commits as soon as the table's previous commit has
# finished, with every write that arrived meanwhile. Above 0, writes that
# arrive sooner than this after a commit wait and share the next one.
commit_interval = "0s"
# A batch of at least this many rows (one full agent segment) takes the
# writes already queued behind it and commits without waiting for
# commit_interval; smaller writes wait for company.
early_commit_rows = 10000
# The most rows one commit takes; a batch this big commits at once.
max_commit_rows = 1000000
# Writes queued per table before writers wait (backpressure).
queue_depth = 1024
# Most columns (time, tags and fields) one table may have; a line or record
# that would add one more is rejected (400, naming the table and column).
max_columns = 1024
# Most new columns one write may add to an existing table.
max_new_columns = 256
# Most tables (measurements) in one database; a write that would create one
# more is rejected (400, naming the database).
max_per_database = 10000
# A table's writer and cached query state unused this long are released
# (memory stays bounded by the tables in use, not the tables in the lake).
idle_timeout = "10m"
# Arrow bytes of writes one table holds queued or committing; beyond it a
# write is answered 503 with Retry-After (a write to an empty queue is
# always taken). ingest.max_inflight_bytes bounds the sum over all tables.
max_queued_bytes = "64MiB"
# Only with multi_writer (other hubs write the same store): how old the
# hub's list of tables may be when SHOW or information_schema lists them. A
# query that names a table always finds it.
listing_staleness = "2s"

[compaction]
# Merge the small files of each day partition into files of about
# target_file_size, sorted by tags then time. Runs in the background without
# blocking ingest or queries; POST /api/v1/compaction/run runs it now.
enabled = true
# Time between two runs over every table.
interval = "10m"
# Size of the files compaction writes; files below half of it are "small".
# One bin of small files (up to this size, compressed) is held in memory
# while it is sorted.
target_file_size = "64MiB"
# A partition still being written is compacted once it has this many small
# files.
min_files = 16
# A day partition counts as settled this long after its UTC day ends; a
# settled partition is compacted as soon as it has two small files.
settle = "1h"
# A table whose writer has added this many files since it last asked is
# compacted at once, between scheduled runs (0: only on schedule).
trigger_files = 200
# Compaction runs on a thread of its own with its CPU priority lowered by
# this nice increment (0-19): on a busy hub, ingest and queries get the CPU
# first. 0 runs it on the hub's shared threads.
nice = 10

[retention]
# Run retention and vacuum.
enabled = true
# Time between two retention runs: expire old day partitions by policy, then
# vacuum every table. Policies are set per database or measurement through
# /api/v1/retention; POST /api/v1/retention/dry-run shows what would go.
interval = "1h"
# Days kept for databases without a policy; 0 keeps them forever. A policy
# of N days keeps today plus the N days before it (UTC).
default_days = 0
# Data files no longer referenced by the table (expired, compacted away)
# stay this long before vacuum deletes them, so running queries and time
# travel within this window keep working.
vacuum_grace = "24h"

[delete]
# POST /api/v1/delete: rows matching a WHERE clause are removed (files
# rewritten without them, whole files dropped by their statistics).
enabled = true
# A delete of more rows than this, or of every row of a table, is refused
# with 400 confirm_required unless the request says "confirm": true.
confirm_threshold = 10000

[continuous_queries]
# Downsampling queries (/api/v1/continuous_queries) run every `interval`
# over closed windows; each window is written exactly once (its rows and
# the query's watermark are one commit of the destination table).
enabled = true
# How often the scheduler looks for windows that have closed.
poll_interval = "5s"
# A window [t, t + interval) is computed this long after t + interval, so
# that its last rows are committed first.
delay = "10s"
# Windows before the watermark computed again by every run (late data);
# the default of queries created without their own lookback_windows.
lookback_windows = 1
# A backfill (POST .../execute over a long range) commits this much time at
# once, then the next chunk; its progress shows in .../executions.
backfill_chunk = "1day"
# Rows one chunk may produce; more fails the execution with a reason.
max_chunk_rows = 1000000
# The shortest interval a query may have, and how many queries may exist.
min_interval = "1s"
max_queries = 1000

[last_cache]
# "The latest reading of every device" from memory: per table, the newest
# rows per key, read with SELECT * FROM last_cache('db.measurement').
# Caches are created with POST /api/v1/last_cache or declared below; each
# is filled from its table at start and kept current by every write.
enabled = true
# Keys one cache holds at most (rows of further keys are not cached and
# counted in ferry_hub_last_cache_refused_total), and caches at most. Memory
# is bounded by max_caches x max_keys x count rows.
max_keys = 100000
max_caches = 100
# How long a row stays in a cache created without its own ttl.
default_ttl = "4h"
# Caches created at start when missing (the table must exist), e.g.:
# [[last_cache.caches]]
# database = "plant"
# measurement = "boiler"
# key_columns = ["site"]      # default: the table's tags
# value_columns = ["temp"]    # default: every other column
# count = 1                   # rows per key, 1-10
# ttl = "4h"

[import]
# Bulk import of CSV, Parquet and line protocol files:
# POST /api/v1/import/{csv,parquet,lp} or `ferry-hub import FILE`. A file is
# streamed to spool_dir (never held in memory), hashed, and imported by a
# background job in chunks; each chunk lands exactly once, across restarts,
# and the same file imported the same way twice writes nothing.
enabled = true
# Where received files wait for their job (default: "imports" beside
# metadata.path). Needs room for the largest file being imported.
# spool_dir = "/var/lib/ferry/imports"
# The largest file accepted (413 above it).
max_file_size = "50GiB"
# Files received at once in one request, resumable uploads open at once,
# jobs queued or running at once: one more is answered 503 with
# Retry-After (counted in ferry_hub_import_refused_total).
max_uploads = 4
max_partial_uploads = 16
max_pending_jobs = 100
# Jobs that run at once, beside ingest.
max_running_jobs = 1
# Input rows (lines, records) per chunk: one commit per table each, the
# unit of resumption, and what one job holds in memory (about 300 bytes a
# row).
chunk_rows = 100000
# An upload that sends nothing this long is dropped (400); a resumable
# upload not touched for upload_ttl is deleted.
idle_timeout = "1m"
upload_ttl = "1day"
# The longest CSV record or line protocol line (a longer CSV record fails
# the job; a longer line is rejected).
max_record_size = "1MiB"

[metadata]
# The SQLite file holding tokens, agents, retention policies, continuous
# queries, last-value cache definitions, the query history and settings.
# Back it up with the tables: on a hub alone on its tables, the tokens and
# definitions live only here (with shared = true, also in the lake's log).
path = "./ferry-data/hub.db"
# Share tokens, roles, quotas, retention policies, continuous queries,
# last-value caches and alert rules with the other hubs of the lake, through
# a log in the store (_ferry/meta/log/). A change made on one hub is seen by
# the others within replica.max_staleness. Unset: on when other hubs use
# the tables (storage multi_writer = true, or replica.role = "reader").
# shared = true

[query]
# Queries run on their own threads, apart from ingest, health and metrics.
# A query running longer (waiting for a slot included) is cancelled and
# answered 504 timeout; its threads and memory are given back.
timeout = "30s"
# Most rows in one answer. Longer results are cut to this many rows and the
# JSON answer carries "truncated": true (CSV and Arrow: header
# x-ferry-truncated: true).
max_rows = 100000
# Most bytes of result data in one answer; cut and flagged the same way.
max_result_bytes = "64MiB"
# Memory all running queries may reserve together, shared fairly. Sorts and
# aggregations spill to spill_dir beyond their share; a query that cannot
# fit is answered 422 resources_exhausted.
memory_limit = "1GiB"
# Where queries spill (default: query-spill next to metadata.path), and
# how much all spill files may take together.
# spill_dir = "/var/lib/ferry-hub/query-spill"
spill_max = "10GiB"
# Threads of the query runtime (default: one per core, at least 2). Every
# query operator yields between batches, so the queries running at once
# share these threads fairly; more threads than cores cost time.
# threads = 4
# Queries running at once; up to max_queued more wait, each at most
# queue_timeout (then 503 with Retry-After); beyond, 429 with Retry-After.
max_concurrent = 8
max_queued = 32
queue_timeout = "10s"
# Queries one token (with auth off, one client address) may run at once;
# fewer than max_concurrent, so no client takes every slot. Its next
# max_queued_per_token wait; beyond, 429 with Retry-After.
max_per_token = 2
max_queued_per_token = 8
# Longest value repeat(), lpad(), rpad(), array_repeat(), range() and
# generate_series() may build; longer fails the query (400).
max_string_bytes = "1MiB"
# A query taking this long or longer is logged (warn) with its plan and
# metrics, and kept in the history with its plan.
slow_threshold = "5s"
# Finished queries kept in GET /api/v1/queries/history (in the metadata
# store, across restarts), and the oldest age kept.
history_size = 1000
history_max_age = "7days"

# DataFusion session options every query starts from, by full name, for
# tuning (checked at startup; unknown names and bad values are errors).
# See https://datafusion.apache.org/user-guide/configs.html
# Ferry starts from "datafusion.execution.parquet.pushdown_filters" = "true"
# (filters evaluated inside the Parquet scan); set it to "false" to undo.
[query.datafusion]
# "datafusion.execution.batch_size" = "8192"

[ingest]
# A segment whose sequence is more than this beyond the last one committed
# for its agent is refused (409 sequence_gap) and writes nothing, so that no
# client can make an agent's later segments look like duplicates. For an
# agent not seen yet the gap counts from 0, unless the token is bound to
# that agent. 0 turns the check off (e.g. to move long-lived gateways to a
# new hub with unbound tokens).
max_sequence_gap = 1000000
# Bytes of write bodies (segments, line protocol, MessagePack) held at once
# over all clients; a write that does not fit is answered 503 with
# Retry-After before its body is read (a chunked body counts as
# server.max_body).
max_inflight_bytes = "256MiB"
# Segments one batch upload (POST /api/v1/segments/batch, what an agent
# sends while it drains a backlog) may carry; more is answered 413 and
# nothing of it is written. The body also stays within server.max_body.
max_batch_segments = 64

[auth]
# Require a token (Authorization: Bearer <token>) on every route except
# /health, /ready, /metrics, /ping and the Control Center's files under /ui
# (which hold no data). On the first start with no tokens the hub
# creates an admin token and prints it once on stdout.
# Set to false only for local experiments: every request is then an admin.
enabled = true
# How long a rotated token's previous secret keeps working when
# POST /api/v1/auth/tokens/{id}/rotate names no "grace" (time to move a
# fleet to the new secret).
rotation_grace = "1day"
# The longest "expires_in" a token may be created with; a longer one is
# answered 400. "0s": no limit (tokens without expires_in never expire).
max_token_lifetime = "0s"

[audit]
# Record every administrative action (tokens, retention, continuous
# queries, deletes, imports, caches, compaction runs, query cancellation)
# and every authentication failure in the metadata store, as a hash chain
# (GET /api/v1/admin/audit-log; GET /api/v1/admin/audit-log/verify).
enabled = true
# Authentication failures from one source with the same actor and reason
# within this window are one entry with a count: a client hammering the
# hub with bad tokens costs one write per window (100ms..1h).
failure_window = "1s"
# Distinct failure keys held per window; past it, further failures of the
# window are counted under source "*" (metric
# ferry_hub_audit_failure_overflow_total).
max_failure_keys = 10000
# Entries older than this are deleted hourly; the deletion is itself an
# entry, and the chain still verifies. "0s" keeps everything.
retention = "400days"

[instance]
# GET /api/v1/instance and /history: how often the hub samples its CPU,
# memory, ingest, commit and query rates, and how many samples it keeps in
# memory (360 x 10s = the last hour).
sample_interval = "10s"
history = 360

[alerts]
# Threshold alerts over SQL or a hub metric (POST /api/v1/alerts, admin).
enabled = true
# Rules that may exist at most.
max_rules = 100
# The shortest interval a rule may have, and how often due rules are looked for.
min_interval = "10s"
poll_interval = "1s"
# A webhook answering later than this counts as failed (not retried).
webhook_timeout = "5s"
# State changes kept per rule.
history = 100

[quotas]
# Ingest rates (line protocol, MessagePack, segments), per token and per
# database, as token buckets holding `burst` of their rate. Over a rate a
# write is answered 429 too_many_requests with Retry-After and nothing of
# it is written (agents keep the data and retry). 0 = unlimited; per-token
# and per-database overrides: PUT /api/v1/quotas/{tokens,databases}/{key}.
token_rows_per_second = 0
token_bytes_per_second = "0B"
database_rows_per_second = 0
database_bytes_per_second = "0B"
# Bytes a database may hold in the store; over it, writes into it are 429
# quota_exceeded until retention, a delete or a higher quota frees room.
database_max_bytes = "0B"
burst = "10s"
# How often each database's stored bytes are measured (for
# database_max_bytes and GET /api/v1/usage).
storage_interval = "10m"
# How often usage (rows, bytes, queries per day, token and database) is
# added to the metadata store.
usage_flush_interval = "10s"
# Daily usage and storage rows older than this are deleted; "0s" keeps all.
usage_retention = "400days"
# Rate buckets kept at most (idle ones are dropped first).
max_buckets = 100000

[encryption]
# Encrypt every object the hub writes to the store (data files, the Delta
# log, checkpoints) with AES-256-GCM. Off by default. It can be turned on
# only for an empty store, and a hub without it refuses an encrypted store
# (the marker _ferry_encryption.json in the store's root says which).
# Other engines cannot read an encrypted lake: they read it through the
# hub's SQL (docs/decisions/0017-encryption-at-rest.md).
enabled = false
# The master keys, never stored in the store or the metadata: a key file
# with one "<id>:<64 hex digits>" per line (created with one new key, mode
# 0600, if missing; back it up apart from the store), or an environment
# variable with the same entries separated by commas. Set one of the two.
# The last key seals new objects; every listed key opens what it sealed.
# POST /api/v1/admin/keys/rotate activates a new key (appended to the key
# file by the hub, or added last to the variable before a restart);
# POST /api/v1/admin/keys/reencrypt seals old objects with it.
# key_file = "/etc/ferry/hub.keys"
# key_env = "FERRY_HUB_KEYS"
# How fast the re-encryption job rewrites objects.
reencrypt_bytes_per_second = "64MiB"
# Object headers kept in memory for range reads (one small read per miss).
header_cache_entries = 100000

[replica]
# Several hubs over the same tables (docs/scale-out.md). "writer" takes
# writes and runs maintenance; "reader" serves queries, the console and the
# fleet view from tables other hubs write, refuses writes (403), and runs
# no maintenance, continuous queries, imports or alerts.
role = "writer"
# A reader serves a table it checked less than this long ago without
# reading the table's log again: its answers lag the writers by at most
# this much (ferry_hub_replica_snapshot_age_seconds).
max_staleness = "2s"
# With several writers (storage multi_writer = true), one at a time runs
# scheduled compaction, retention, continuous queries and alert rules: the
# holder of a lease in the store (_ferry/lease/maintenance/). Another
# writer takes it when the holder has been silent this long, or at its next
# check (within a third of this) when the holder stopped cleanly
# (ferry_hub_maintenance_lease_held).
lease_ttl = "30s"
# With several hubs, each writer publishes its agents (_ferry/fleet/) this
# often, and every hub merges the others' into its fleet view
# (GET /api/v1/agents), read at most this often.
fleet_interval = "10s"

[log]
# A tracing filter: "info", "debug", "ferry_hub=debug,info", ...
# The FERRY_LOG environment variable overrides it.
level = "info"
# "text" or "json" (one object per line), on stderr.
format = "text"
"#;

#[cfg(test)]
mod tests {
    use super::super::{HubConfig, parse};
    use super::TEMPLATE;

    #[test]
    fn template_parses_to_the_defaults() {
        let parsed = parse(TEMPLATE).unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", HubConfig::default()));
    }

    #[test]
    fn template_names_every_section() {
        for section in [
            "[server]",
            "[flight]",
            "[storage]",
            "[tables]",
            "[compaction]",
            "[ingest]",
            "[retention]",
            "[delete]",
            "[continuous_queries]",
            "[encryption]",
            "[last_cache]",
            "[import]",
            "[metadata]",
            "[query]",
            "[auth]",
            "[audit]",
            "[quotas]",
            "[instance]",
            "[alerts]",
            "[replica]",
            "[log]",
        ] {
            assert!(TEMPLATE.contains(section), "{section}");
        }
    }
}
