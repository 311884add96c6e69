"""Reads one Delta table of the lake, on S3 or Azure, with engines that know
nothing of Ferry: delta-rs (the deltalake package) and Polars.

delta_engines.py URI OPTIONS_JSON
URI is the table's URL (s3://bucket/prefix/db/measurement or
az://container/prefix/db/measurement); OPTIONS_JSON the storage options,
as docs/scale-out.md gives them. Prints one JSON object:
{"deltalake": {...}, "polars": {...}}, each with rows, the distinct
devices, sum(temp), min/max of time (microseconds), and for delta-rs the
table version, the partition columns and how many add actions carry
min/max statistics for `temp`.
"""
import json
import sys

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

uri, options = sys.argv[1], json.loads(sys.argv[2])

dt = DeltaTable(uri, storage_options=options)
t = dt.to_pyarrow_table()
# Microseconds since the epoch (Delta's timestamp unit).
times = pc.cast(pc.cast(t.column("time"), pa.timestamp("us", tz="UTC")), pa.int64())
adds = dt.get_add_actions(flatten=True)
adds = adds.to_pyarrow_table() if hasattr(adds, "to_pyarrow_table") else adds
names = adds.column_names if hasattr(adds, "column_names") else list(adds.schema.names)
with_stats = 0
if "min.temp" in names and "max.temp" in names:
    mins = adds.column("min.temp").to_pylist()
    maxs = adds.column("max.temp").to_pylist()
    with_stats = sum(1 for a, b in zip(mins, maxs) if a is not None and b is not None)
delta = {
    "rows": t.num_rows,
    "devices": len(set(t.column("device").to_pylist())),
    "sum_temp": pc.sum(t.column("temp")).as_py(),
    "min_time": pc.min(times).as_py(),
    "max_time": pc.max(times).as_py(),
    "version": dt.version(),
    "partitions": dt.metadata().partition_columns,
    "files": len(adds),
    "files_with_temp_stats": with_stats,
}

df = pl.read_delta(uri, storage_options=options)
agg = df.select(
    pl.len().alias("rows"),
    pl.col("device").n_unique().alias("devices"),
    pl.col("temp").sum().alias("sum_temp"),
    pl.col("time").cast(pl.Int64).min().alias("min_time"),
    pl.col("time").cast(pl.Int64).max().alias("max_time"),
).row(0, named=True)
unit = df.schema["time"].time_unit
# To microseconds, whatever unit Polars chose.
scale = {"ns": 1000, "us": 1, "ms": 0.001}[unit]
polars = {
    "rows": agg["rows"],
    "devices": agg["devices"],
    "sum_temp": agg["sum_temp"],
    "min_time": int(agg["min_time"] / scale),
    "max_time": int(agg["max_time"] / scale),
}
print(json.dumps({"deltalake": delta, "polars": polars}))
