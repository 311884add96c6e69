"""DuckDB side of ferry-bench's queries and storage scenarios.

Reads a JSON job on stdin:
  {"tables": {"readings": "<Delta table dir>", ...}, "runs": N,
   "queries": [{"name": ..., "sql": ...}], "storage_dir": "<dir>" | null}
Opens exactly each table's active files (deltalake's file_uris(), not a
glob: files a compaction replaced may still be on disk) as the view
iot.<table> with hive partitioning (`day` comes from the path, as in
Delta), with TimeZone = 'UTC'. Runs each query once to warm up, then N
timed runs (results fetched as Arrow tables). With storage_dir, also
writes each table's rows as one zstd Parquet file sorted like the hub's
compaction (tags, then time) and reports its size. Prints one JSON
document on stdout.
"""

import datetime
import decimal
import json
import os
import sys
import time

import deltalake
import duckdb


def norm(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc)
        s = v.strftime("%Y-%m-%dT%H:%M:%S")
        if v.microsecond:
            s += ("." + f"{v.microsecond:06d}").rstrip("0")
        return s + "Z"
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v


def main():
    job = json.load(sys.stdin)
    # The answer goes to the real stdout; anything else written to fd 1
    # (DuckDB's progress bar on a long COPY) goes to stderr instead.
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false").fetchall()
    con.execute("SET TimeZone = 'UTC'").fetchall()
    con.execute("CREATE SCHEMA iot").fetchall()
    tables = {}
    for name, path in job["tables"].items():
        dt = deltalake.DeltaTable(path)
        files = [u[len("file://"):] if u.startswith("file://") else u for u in dt.file_uris()]
        listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
        con.execute(
            f"CREATE VIEW iot.{name} AS SELECT * FROM read_parquet({listed}, hive_partitioning = true)"
        ).fetchall()
        rows = con.execute(f"SELECT count(*) FROM iot.{name}").fetchall()[0][0]
        tables[name] = {
            "files": len(files),
            "bytes": sum(os.path.getsize(f) for f in files),
            "rows": rows,
            "version": dt.version(),
        }
        sd = job.get("storage_dir")
        if sd:
            out = os.path.join(sd, f"duckdb-{name}.parquet")
            cols = [r[0] for r in con.execute(f"DESCRIBE iot.{name}").fetchall()]
            tags = [c for c in ["device_version", "driver", "fleet", "model", "name"] if c in cols]
            order = ", ".join(tags + ["time"])
            t0 = time.perf_counter()
            con.execute(
                f"COPY (SELECT * EXCLUDE (day) FROM iot.{name} ORDER BY {order}) TO '{out}' "
                "(FORMAT parquet, COMPRESSION zstd)"
            ).fetchall()
            tables[name]["duckdb_zstd_bytes"] = os.path.getsize(out)
            tables[name]["duckdb_copy_ms"] = (time.perf_counter() - t0) * 1000.0

    def run(sql):
        rel = con.sql(sql)
        to_table = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
        return to_table()

    results = []
    for q in job.get("queries", []):
        run(q["sql"])  # warm-up
        times = []
        last = None
        for _ in range(int(job["runs"])):
            t0 = time.perf_counter()
            last = run(q["sql"])
            times.append((time.perf_counter() - t0) * 1000.0)
        columns = last.column_names
        rows = [[norm(r[c]) for c in columns] for r in last.to_pylist()]
        results.append({"name": q["name"], "times_ms": times, "columns": columns, "rows": rows})
    json.dump(
        {
            "duckdb_version": duckdb.__version__,
            "deltalake_version": deltalake.__version__,
            "threads": con.execute("SELECT current_setting('threads')").fetchall()[0][0],
            "tables": tables,
            "results": results,
        },
        answer,
    )
    answer.close()


if __name__ == "__main__":
    main()
