"""The baseline of ferry-bench's delete scenario: delta-rs (the `deltalake`
Python package) deleting from a copy of the same Delta table.

Reads a JSON job on stdin: {"table": "<dir>", "predicates": ["...", ...]}.
Runs each predicate's delete in order, timed, and prints one JSON document:
{"deltalake_version": ..., "deletes": [{"predicate", "ms", "metrics",
"rows_after"}]}.
"""

import json
import sys
import time

import deltalake


def main():
    job = json.load(sys.stdin)
    out = []
    for predicate in job["predicates"]:
        table = deltalake.DeltaTable(job["table"])
        t0 = time.perf_counter()
        metrics = table.delete(predicate)
        ms = (time.perf_counter() - t0) * 1000.0
        rows = deltalake.DeltaTable(job["table"]).to_pyarrow_dataset().count_rows()
        out.append({"predicate": predicate, "ms": ms, "metrics": metrics, "rows_after": rows})
    print(json.dumps({"deltalake_version": deltalake.__version__, "deletes": out}))


if __name__ == "__main__":
    main()
