"""The baseline of ferry-bench's import scenario: DuckDB loading the same
CSV file into a zstd Parquet file (its own CSV reader and type sniffing),
the time column converted from epoch milliseconds to a timestamp.

Reads a JSON job on stdin: {"csv": "<file>", "out_dir": "<dir>", "runs": N}.
Prints {"duckdb_version", "threads", "runs": [{"ms", "rows", "bytes"}]}.
"""

import json
import os
import sys
import time

import duckdb


def main():
    job = json.load(sys.stdin)
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    runs = []
    for i in range(int(job["runs"])):
        out = os.path.join(job["out_dir"], f"duckdb-{i}.parquet")
        t0 = time.perf_counter()
        con.execute(
            f"""COPY (SELECT epoch_ms("time") AS time, * EXCLUDE ("time")
                      FROM read_csv('{job["csv"]}', header = true))
                TO '{out}' (FORMAT parquet, COMPRESSION zstd)"""
        )
        ms = (time.perf_counter() - t0) * 1000.0
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
        runs.append({"ms": ms, "rows": rows, "bytes": os.path.getsize(out)})
    print(json.dumps({"duckdb_version": duckdb.__version__, "threads": threads, "runs": runs}))


if __name__ == "__main__":
    main()
