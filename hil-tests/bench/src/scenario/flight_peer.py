"""ferry-bench flight: the same statements through Flight SQL (ADBC) and
through POST /api/v1/query/arrow (requests + pyarrow), one client each,
connections kept open, timed at the client. Job on stdin:
{"flight_port", "http_port", "token", "runs", "repeats", "scan", "small"}.
Prints {"flight_scan_ms": [...], "http_scan_ms": [...], "flight_small_ms":
[...], "http_small_ms": [...], "rows": {...}}.
"""
import json
import sys
import time

import adbc_driver_flightsql.dbapi as adbc
import pyarrow as pa
import requests

job = json.load(sys.stdin)
token = job["token"]
conn = adbc.connect(
    f"grpc://127.0.0.1:{job['flight_port']}",
    db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"},
    autocommit=True,
)
session = requests.Session()
session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
http_url = f"http://127.0.0.1:{job['http_port']}/api/v1/query/arrow"


def flight(sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def http(sql):
    r = session.post(http_url, data=json.dumps({"sql": sql}))
    r.raise_for_status()
    return pa.ipc.open_stream(r.content).read_all()


out = {"flight_scan_ms": [], "http_scan_ms": [], "flight_small_ms": [], "http_small_ms": [], "rows": {}}
# Warm both paths (connections, the hub's table cache).
for f in (flight, http):
    f(job["small"])
    f(job["scan"])
for _ in range(job["runs"]):
    for name, f in (("flight", flight), ("http", http)):
        for kind in ("scan", "small"):
            for _ in range(job["repeats"] if kind == "small" else max(1, job["repeats"] // 4)):
                t = time.perf_counter()
                table = f(job[kind])
                out[f"{name}_{kind}_ms"].append((time.perf_counter() - t) * 1000.0)
                out["rows"][f"{name}_{kind}"] = table.num_rows
conn.close()
print(json.dumps(out))
