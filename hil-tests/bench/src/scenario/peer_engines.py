"""The peer engines of ferry-bench's queries and storage scenarios:
DuckDB, and DataFusion on its own (the hub's engine without the hub).

Reads a JSON job on stdin:
  {"tables": {"readings": "<Delta table dir>", ...}, "runs": N,
   "queries": [{"name": ..., "sql": ...}], "storage_dir": "<dir>" | null,
   "datafusion": {"queries": [{"name": ..., "sql": ...}],
                  "options": {"datafusion.…": "…"}, "links_dir": "<dir>"} | null}
Opens exactly each table's active files (deltalake's file_uris(), not a
glob: files a compaction replaced may still be on disk) as the view
iot.<table> with hive partitioning (`day` comes from the path, as in
Delta), with TimeZone = 'UTC'. Runs each query once to warm up, then N
timed runs (results fetched as Arrow tables). With storage_dir, also
writes each table's rows as one zstd Parquet file sorted like the hub's
compaction (tags, then time) and reports its size. Prints one JSON
document on stdout.

With "datafusion", the same active files are also registered in DataFusion
(Python bindings of the hub's DataFusion version) as listing tables
iot.<table> with `day` as a partition column: links_dir gets one symbolic
link per active file, in the table's own `day=…/` layout, because a
listing table reads a directory, and the directory of a Delta table also
holds the files a compaction replaced. The session has as many target
partitions as DuckDB has threads and the options the hub sets on its own
sessions. Its results (same warm-up and runs) go to "datafusion_results".
"""

import datetime
import decimal
import json
import os
import sys
import time

import deltalake
import duckdb


def timed(run, queries, runs):
    """Each query once to warm up, then `runs` timed runs; the last answer."""
    results = []
    for q in queries:
        run(q["sql"])  # warm-up
        times = []
        last = None
        for _ in range(int(runs)):
            t0 = time.perf_counter()
            last = run(q["sql"])
            times.append((time.perf_counter() - t0) * 1000.0)
        columns = last.column_names
        rows = [[norm(r[c]) for c in columns] for r in last.to_pylist()]
        results.append({"name": q["name"], "times_ms": times, "columns": columns, "rows": rows})
    return results


def datafusion_side(job, active, threads):
    """Runs job["datafusion"]["queries"] on DataFusion alone (see above)."""
    import datafusion

    spec = job["datafusion"]
    options = {"datafusion.catalog.default_schema": "iot", **spec.get("options", {})}
    config = datafusion.SessionConfig(options).with_target_partitions(int(threads))
    ctx = datafusion.SessionContext(config)
    for name, (root, files) in active.items():
        base = os.path.join(spec["links_dir"], name)
        for f in files:
            link = os.path.join(base, os.path.relpath(f, root))
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(f, link)
        ctx.register_listing_table(
            name, base + "/", table_partition_cols=[("day", "string")], file_extension=".parquet"
        )
    return datafusion.__version__, timed(lambda sql: ctx.sql(sql).to_arrow_table(), spec["queries"], job["runs"])


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
    active = {}
    for name, path in job["tables"].items():
        dt = deltalake.DeltaTable(path)
        files = [u[len("file://"):] if u.startswith("file://") else u for u in dt.file_uris()]
        active[name] = (os.path.realpath(path), [os.path.realpath(f) for f in files])
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

    threads = con.execute("SELECT current_setting('threads')").fetchall()[0][0]
    results = timed(run, job.get("queries", []), job.get("runs", 1))
    answer_doc = {
        "duckdb_version": duckdb.__version__,
        "deltalake_version": deltalake.__version__,
        "threads": threads,
        "tables": tables,
        "results": results,
    }
    if job.get("datafusion"):
        version, df_results = datafusion_side(job, active, threads)
        answer_doc["datafusion_version"] = version
        answer_doc["datafusion_results"] = df_results
    json.dump(answer_doc, answer)
    answer.close()


if __name__ == "__main__":
    main()
