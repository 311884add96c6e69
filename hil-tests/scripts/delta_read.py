"""Reads a Delta table with the deltalake package (delta-rs) and pyarrow,
independently of the hub.

delta_read.py TABLE_DIR
Prints one JSON object: rows (one object per row, `time` as microseconds
since the epoch, `day` as YYYY-MM-DD), the pyarrow and Delta types of
`time` and `day`, the partition columns, the table version, the partition
values, and the columns at version 0 and now.
"""
import datetime
import json
import sys

import pyarrow as pa
from deltalake import DeltaTable

path = sys.argv[1]
dt = DeltaTable(path)
table = dt.to_pyarrow_table()

time_type = table.schema.field("time").type
columns = {}
for name in table.column_names:
    col = table.column(name)
    if name == "time":
        col = col.cast(pa.int64())
    columns[name] = col.to_pylist()


def plain(v):
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


rows = [
    {name: plain(columns[name][i]) for name in table.column_names}
    for i in range(table.num_rows)
]
delta_types = {f.name: str(f.type) for f in dt.schema().fields}
first = DeltaTable(path, version=0)

print(
    json.dumps(
        {
            "rows": rows,
            "time_type": str(time_type),
            "time_unit": time_type.unit,
            "time_tz": time_type.tz,
            "day_type": str(table.schema.field("day").type),
            "delta_types": delta_types,
            "partition_columns": dt.metadata().partition_columns,
            "version": dt.version(),
            "partitions": sorted(p["day"] for p in dt.partitions()),
            "columns_v0": [f.name for f in first.schema().fields],
            "columns": [f.name for f in dt.schema().fields],
        }
    )
)
