# Installs the real peers the tests run against. Source it after common.sh.
# Idempotent and quiet when everything is already there.

FERRY_VENV="${FERRY_VENV:-$(ferry_root)/.venv}"
export FERRY_VENV

# Python packages for the tests, pinned to what was checked on these machines.
PY_PACKAGES=(
  "moto[server]==5.*"
  "azure-storage-blob==12.*"
  "paho-mqtt==2.*"
  "influxdb-client==1.*"
  "deltalake==1.*"
  "pyarrow==26.*"
  "duckdb==2.*"
  "datafusion==55.*"
  "pymodbus==3.16.*"
  "pyserial==3.*"
  "fusepy==3.*"
  "arc-tsdb-client[pandas]==0.1.*"
  # ClickHouse's engine, for the migration guide's export (hil-tests/tests/migrate.rs).
  "chdb==3.*"
  # Flight SQL clients (hil-tests/tests/hub_flight_sql.rs, hub_tls.rs).
  "adbc-driver-flightsql==1.*"
  "adbc-driver-manager==1.*"
  "influxdb3-python==0.*"
  "flightsql-dbapi==0.2.*"
  # The Control Center's browser test (hil-tests/tests/hub_console.rs)
  # drives Debian's chromium; no browser is downloaded.
  "playwright==1.*"
  # Another engine reading the lake on S3 and Azure (hil-tests/tests/lake_engines.rs).
  "polars==1.*"
)

# The project's Python venv, created if missing.
ensure_venv() {
  if [ ! -x "$FERRY_VENV/bin/python" ]; then
    log "creating the Python venv at $FERRY_VENV"
    python3 -m venv "$FERRY_VENV"
  fi
}

install_peers() {
  # libfuse2: fusepy's library, for hil-tests/peers/lossy_fs.py (root mounts
  # without fusermount). Debian 13 names it libfuse2t64.
  # influxdb, influxdb-client, postgresql: the sources of the migration
  # guides' tested exports (hil-tests/tests/migrate.rs).
  apt_install mosquitto mosquitto-clients openssl socat libfuse2 iptables faketime \
    influxdb influxdb-client postgresql chromium
  ensure_venv
  if ! "$FERRY_VENV/bin/python" -c "import moto, azure.storage.blob, paho.mqtt, influxdb_client, deltalake, pyarrow, duckdb, datafusion, pymodbus, serial, fuse, arc_client, pandas, chdb, adbc_driver_flightsql, influxdb_client_3, flightsql, playwright, polars; assert pymodbus.__version__.startswith('3.16.')" 2>/dev/null; then
    log "installing Python test packages"
    "$FERRY_VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  fi
  if ! command -v azurite-blob >/dev/null; then
    log "installing azurite (npm)"
    npm install -g --silent --no-fund --no-audit azurite@3 >/dev/null
  fi
  export PATH="$FERRY_VENV/bin:$PATH:/usr/sbin"
}
