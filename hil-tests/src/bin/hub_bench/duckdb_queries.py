"""DuckDB side of `hub_bench query`.

Reads a JSON job on stdin: {"table": "<Delta table dir>", "runs": N,
"queries": [{"name": ..., "sql": ...}]}. Opens exactly the table's active
files (deltalake's file_uris(), not a glob: files a compaction or an
overwrite removed from the log may still be on disk), exposes them as the
view iot.readings with hive partitioning (the `day` column comes from the
path, as in Delta), runs each query once to warm up and then N timed runs,
and prints one JSON document: per query the times in ms and the rows of the
last run, values normalised for comparison (timestamps as RFC 3339 UTC).
"""

import datetime
import decimal
import json
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
    table = deltalake.DeltaTable(job["table"])
    files = []
    for uri in table.file_uris():
        files.append(uri[len("file://"):] if uri.startswith("file://") else uri)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if "threads" in job:
        con.execute(f"SET threads = {int(job['threads'])}")
    con.execute("CREATE SCHEMA iot")
    listed = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    con.execute(
        f"CREATE VIEW iot.readings AS SELECT * FROM read_parquet({listed}, hive_partitioning = true)"
    )
    try:
        import pyarrow  # noqa: F401

        fetch = "arrow"
    except ImportError:
        fetch = "fetchall"

    def run(sql):
        if fetch == "arrow":
            # A relation straight to Arrow (DuckDB 2 renamed fetch_arrow_table()
            # to to_arrow_table(); on a DB-API cursor it copies the rows once more).
            rel = con.sql(sql)
            to_table = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table
            t = to_table()
            return t.column_names, t
        cur = con.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()

    results = []
    for q in job["queries"]:
        run(q["sql"])  # warm-up
        times = []
        last = None
        for _ in range(int(job["runs"])):
            t0 = time.perf_counter()
            last = run(q["sql"])
            times.append((time.perf_counter() - t0) * 1000.0)
        columns, data = last
        if fetch == "arrow":
            rows = [[norm(r[c]) for c in columns] for r in data.to_pylist()]
        else:
            rows = [[norm(v) for v in r] for r in data]
        results.append({"name": q["name"], "times_ms": times, "columns": columns, "rows": rows})
    json.dump(
        {
            "duckdb_version": duckdb.__version__,
            "deltalake_version": deltalake.__version__,
            "fetch": fetch,
            "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
            "files": len(files),
            "results": results,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
