//! The fully commented default config that `generate-config` prints.

/// Every key with its default, commented. A test checks it parses to the
/// defaults, so it cannot drift from the code.
pub const TEMPLATE: &str = r#"# ferry-agent configuration.
# Every key is optional; the values shown are the defaults.
# Check a file with: ferry-agent check-config --config /etc/ferry/agent.toml

[agent]
# This gateway's identity at the hub. Unique in the fleet, stable across
# reinstalls: letters, digits, '_', '-', '.'.
id = "ferry-agent"
# State directory; the buffer lives here unless store.path is set.
data_dir = "ferry-data/agent"

[mqtt]
# The embedded broker's listener. Sensors publish here; local subscribers
# (dashboards) connect here too. MQTT 3.1.1 and 5.
listen = "0.0.0.0:1883"
max_connections = 1000
# Largest MQTT packet; bigger ones close the connection.
max_payload_size = "256.0 KiB"
# QoS 1/2 publishes per connection whose commit may be pending at once.
max_inflight = 100
# Bytes of publishes whose commit may be pending at once, all connections
# together (at least max_payload_size). At the bound the gate stops reading
# from publishing clients until commits finish.
max_inflight_bytes = "16.0 MiB"
# The broker: "ferry" (Ferry's own engine, in-process) or "rumqttd" (the
# embedded rumqttd behind a loopback hop; a fallback for one release).
engine = "ferry"
# The engine's memory bounds. Sessions held, connected or kept for a client
# that is away (MQTT 5 session expiry, 3.1.1 clean session 0); at the bound
# the kept session ending first makes room, and a CONNECT is refused (0x97)
# only when all are connected:
max_sessions = 10000
max_subscriptions_per_client = 1000
# Retained messages, all topics together; past either bound a retained
# publish gets 0x97 (MQTT 5) and is neither kept nor delivered.
max_retained_messages = 10000
max_retained_bytes = "16.0 MiB"
# Deliveries queued for one subscriber (away, slow, or its window full),
# and for all of them together; past a bound new deliveries are dropped and
# counted (ferry_broker_deliveries_dropped_total).
max_queued_messages = 1000
max_queued_bytes = "4.0 MiB"
max_queued_total_bytes = "64.0 MiB"
# rumqttd's bounds (engine = "rumqttd" only; per distinct topic: segment
# size x segment count).
max_outgoing_packet_count = 200
max_segment_size = "64.0 KiB"
max_segment_count = 2
connect_timeout = "10s"
# On shutdown, how long connections may finish pending commits and acks.
shutdown_grace = "5s"

# A TLS listener (rustls), in addition to the plain one:
# [mqtt.tls]
# listen = "0.0.0.0:8883"
# cert = "/etc/ferry/tls/agent.crt"   # PEM certificate chain
# key = "/etc/ferry/tls/agent.key"    # PEM private key

# Username/password for MQTT clients (checked before the broker sees them):
# [mqtt.auth]
# users = { sensor = "change-me" }

# Subscribe to an existing broker (e.g. a Mosquitto already on the gateway).
# The session is persistent: messages queued while the agent was down arrive
# after it restarts, and each is acknowledged upstream only once stored, in
# the order it arrived (at most 256 waiting for their commit).
# [[mqtt.upstream]]
# name = "plant-broker"
# host = "127.0.0.1"
# port = 1883
# client_id = "ferry-gw-01"
# topics = ["plant/#"]
# qos = 1                    # 0 or 1; 2 subscribes at 1 (stored at least once either way)
# clean_session = false
# keep_alive = "30s"
# username = "ferry"
# password = "secret"
# [mqtt.upstream.tls]
# ca_file = "/etc/ferry/tls/plant-ca.pem"

# Routes map topics to readings. They are tried in order; the first match
# wins. Templates capture topic levels: {measurement} sets the measurement,
# any other {name} becomes a tag. format: json | line-protocol | msgpack | value
[[routes]]
topic = "sensors/{device}/{measurement}"
database = "sensors"
format = "json"
# measurement = "readings"   # when the topic does not capture one
# tags = { site = "north" }  # static tags
# field = "value"            # format = "value": the field name
# precision = "ns"           # format = "line-protocol": ns | us | ms | s
# max_payload = "1.0 MiB"

# Serial sensors (none by default). Each port is opened exclusively; a
# missing or unplugged port is retried with backoff and never stops the
# agent. Readings are committed before the next read, like MQTT QoS 1.
# The agent's user needs the port's group (dialout on Debian).
#
# A device that prints one reading per line. format: line-protocol | json |
# csv | regex. Bad, over-long and non-UTF-8 lines are counted and skipped.
# [[serial.ports]]
# name = "weather"
# path = "/dev/ttyUSB0"
# mode = "lines"
# database = "sensors"
# baud = 9600
# data_bits = 8
# parity = "none"            # none | even | odd
# stop_bits = 1
# flow_control = "none"      # none | software | hardware
# reopen_min = "1s"          # first retry after an unplug, doubling to
# reopen_max = "30s"
# max_line = "4.0 KiB"
# [serial.ports.lines]
# format = "csv"
# measurement = "weather"
# columns = ["station", "temp_c", "humidity", "_"]   # "_" skips a column
# delimiter = ","
# tag_columns = ["station"]
# types = { humidity = "i64" }       # f64 unless stated: i64 u64 bool str
# tags = { site = "north" }
# time_column = "ts"                 # omit to stamp lines with the agent's clock
# time_format = "auto"               # auto | s | ms | us | ns | rfc3339
# pattern = '^T=(?P<temp_c>[-0-9.]+)$'   # format = "regex": named captures
# precision = "ns"                   # format = "line-protocol"
#
# A Modbus RTU bus, polled. Each slave has its own interval; registers are
# read in as few requests as their addresses allow.
# [[serial.ports]]
# name = "meters"
# path = "/dev/ttyUSB1"
# mode = "modbus-rtu"
# database = "plant"
# baud = 19200
# parity = "even"
# timeout = "500ms"          # per request, on top of the frame's wire time
# pacing = "5ms"             # gap between exchanges (at least 3.5 characters)
# dead_after = 3             # failed polls in a row before a slave is dead
# dead_retry = "10s"         # how often a dead slave is tried
# [[serial.ports.slaves]]
# id = 1
# poll_interval = "1s"
# measurement = "power"
# tags = { meter = "m1" }
# [[serial.ports.slaves.registers]]
# field = "voltage"
# table = "holding"          # holding | input | coil | discrete
# address = 0                # 0-based protocol address (40001 is 0)
# type = "f32"               # u16 i16 u32 i32 u64 i64 f32 f64 bool
# word_order = "big"         # big | little (word swap)
# byte_order = "big"         # big | little (byte swap in each word)
# unit = "V"
# [[serial.ports.slaves.registers]]
# field = "energy_kwh"
# table = "input"
# address = 10
# type = "u32"
# scale = 0.01               # value * scale + offset, as f64
# offset = 0.0
# [[serial.ports.slaves.registers]]
# field = "alarm"
# table = "holding"
# address = 20
# type = "bool"
# bit = 3                    # a bit field of one register
#
# A Modbus TCP device: the same keys as a modbus-rtu port, with an address.
# [[modbus_tcp]]
# name = "plc"
# address = "192.168.1.20:502"
# database = "plant"
# timeout = "500ms"
# [[modbus_tcp.slaves]]
# id = 1
# measurement = "line1"
# [[modbus_tcp.slaves.registers]]
# field = "speed"
# table = "holding"
# address = 100
# type = "i16"
# -- end of serial examples --

[store]
# The SQLite buffer; default <agent.data_dir>/buffer.db.
# path = "/var/lib/ferry-agent/buffer.db"
# Disk budget for buffered readings, segments and dead letters.
max_bytes = "1.0 GiB"
# When full: drop_oldest (QoS 0 first, then the oldest data) or reject_new
# (QoS 1/2 publishers are not acknowledged and keep their data).
when_full = "drop_oldest"
# Group commit: the least time between two commits (at most one fsync per
# interval; raise it on worn SD cards). A reading after a quiet spell commits
# at once; under load, what arrives meanwhile shares the next commit, or
# commits as soon as max_batch readings are pending. Every QoS 1/2
# acknowledgement waits for its commit.
commit_interval = "2ms"
max_batch = 2000
# QoS 0 readings may wait in memory this long before they are written.
qos0_max_delay = "1s"
# Undecodable messages kept for inspection (oldest deleted first).
dead_letter_max = 10000
# Check at start: full | quick | off.
integrity_check = "quick"
queue_capacity = 1024
# A background thread copies the write-ahead log into the database each time
# this much is new, so commits never wait for it; the writer does it itself
# once the WAL reaches 4 times this (the WAL file's size under sustained
# load, outside max_bytes). Smaller means a smaller WAL file but more copying
# and fsyncs.
wal_checkpoint = "16.0 MiB"

[segment]
# A segment (one Parquet file per database.measurement) is cut when it
# reaches max_rows or max_bytes, or its oldest reading is max_age old; while
# 8 or more segments wait for the hub, only full segments are cut. Storing
# a segment deletes its readings while commits wait: a larger max_bytes
# means fewer, larger files and a longer pause in the acknowledgements.
max_rows = 10000
max_bytes = "2.0 MiB"
max_age = "500ms"
# Most columns (time, tags, fields) in a segment, as the hub's
# tables.max_columns; a reading with more becomes a dead letter.
max_columns = 1024

[uplink]
hub_url = "http://127.0.0.1:8000"
# Or several hubs sharing the same tables (docs/scale-out.md), in order of
# preference; the agent moves to the next when one is down or answers 5xx,
# 401 or 403, and tries the first again after failback_after:
# hub_urls = ["https://hub-a:8000", "https://hub-b:8000"]
failback_after = "5m"
# The agent's token (role write). Prefer token_file or FERRY_UPLINK_TOKEN.
# token = "ferry_..."
# token_file = "/etc/ferry/agent.token"
# Trust only this CA for the hub (a private CA or a self-signed hub):
# ca_file = "/etc/ferry/tls/hub-ca.pem"
timeout = "30s"
# Failed uploads are retried from backoff_initial, doubling to backoff_max;
# a hub's Retry-After (a quota, a full queue) is waited when longer (1h at most).
backoff_initial = "500ms"
backoff_max = "1m"
# Average upload cap in bytes per second for metered links; 0 = no cap.
max_bytes_per_second = "0 B"
# While a backlog drains, up to batch_segments segments (at most
# batch_max_bytes together) go in one request and one commit per table;
# 1 = one segment per request. Keep batch_max_bytes below the hub's
# server.max_body.
batch_segments = 16
batch_max_bytes = "16.0 MiB"

[http]
# Local health, metrics and status. No authentication: keep it on loopback.
listen = "127.0.0.1:9180"

[log]
# A tracing filter (RUST_LOG overrides it). rumqttd, the embedded broker,
# is noisy at info; "info,rumqttd=info" shows its connection logs.
level = "info,rumqttd=off"
# text | json
format = "text"

[supervisor]
# The agent is crash-only: a panic anywhere ends the process (SIGABRT) and
# systemd (Restart=on-failure) or the container runtime starts it again;
# nothing acknowledged is lost. Liveness: every MQTT listener is connected
# to like a client (MQTT 3.1.1 and 5) and the buffer's writer is asked to
# answer, every probe_interval; each probe may take probe_timeout.
probe_interval = "5s"
probe_timeout = "5s"
# A part stalled (or ended) this long past its deadline makes the agent exit
# so that it restarts. /health answers 503 and the systemd watchdog is no
# longer pinged as soon as a part is stalled. "0s": report only.
stall_timeout = "20s"
# The longest one internal step of a loop (a buffer query, cutting a
# segment) may take before the loop counts as stalled.
work_timeout = "1m"
"#;
