"""Arc's own Python client (arc-tsdb-client, PyPI), unchanged, against a hub.

(Not named arc_client.py: that would shadow the package it imports.)

Usage: arc_python_client.py HOST PORT ADMIN_TOKEN READ_TOKEN. Writes MessagePack
columnar rows, reads them back through every query path of the client,
lists measurements and databases, reads the delete config, deletes with a
dry run first, manages a retention policy and a continuous query (created,
listed, updated, executed twice over the same windows, its executions read,
deleted), and records what the client raises for a bad query, an
unconfirmed whole-table delete and a delete with a read token. Prints one
JSON report on stdout.
"""

import json
import sys
import time

from arc_client import ArcClient
from arc_client.exceptions import ArcError


def raised(call):
    try:
        call()
    except ArcError as e:
        return f"{type(e).__name__}: {e}"
    return None


def main():
    host, port, admin, read = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    out = {}
    now_us = int(time.time() * 1e6)
    with ArcClient(host=host, port=port, token=admin, database="plant") as c:
        out["health"] = c.health().status
        out["ready"] = c.ready()
        c.write.write_columnar(
            "boiler",
            {
                "time": [now_us - i * 1_000_000 for i in range(100)],
                "host": ["a" if i % 2 == 0 else "b" for i in range(100)],
                "temp": [float(i) for i in range(100)],
            },
        )
        r = c.query.query("SELECT count(*) AS n FROM boiler")
        out["query"] = {"success": r.success, "columns": r.columns, "data": r.data,
                        "row_count": r.row_count}
        table = c.query.query_arrow(
            "SELECT host, count(*) AS n FROM boiler GROUP BY host ORDER BY host")
        out["arrow"] = table.to_pylist()
        df = c.query.query_pandas("SELECT temp FROM boiler WHERE host = 'a'")
        out["pandas"] = {"rows": len(df), "sum": float(df["temp"].sum())}
        out["measurements"] = [
            [m.database, m.measurement, m.file_count] for m in c.query.list_measurements()
        ]
        out["databases"] = c.query.list_databases()
        out["delete_config"] = c.delete.get_config().model_dump()
        where = "host = 'a' AND temp < 10"
        out["dry"] = c.delete.delete("plant", "boiler", where).model_dump()
        out["after_dry"] = c.query.query("SELECT count(*) FROM boiler").data[0][0]
        out["real"] = c.delete.delete("plant", "boiler", where, dry_run=False).model_dump()
        out["after"] = c.query.query("SELECT count(*) FROM boiler").data[0][0]
        out["bad_query"] = raised(lambda: c.query.query("SELECT nosuch FROM boiler"))
        out["unconfirmed"] = raised(
            lambda: c.delete.delete("plant", "boiler", "1 = 1", dry_run=False))
        out["after_unconfirmed"] = c.query.query("SELECT count(*) FROM boiler").data[0][0]
        policy = c.retention.create("boiler-90d", "plant", 90, measurement="boiler",
                                    buffer_days=7)
        out["retention_created"] = policy.model_dump()
        out["retention_listed"] = [p.name for p in c.retention.list()]
        out["retention_got"] = c.retention.get(policy.id).retention_days
        out["retention_updated"] = c.retention.update(policy.id, retention_days=30).retention_days
        run = c.retention.execute(policy.id, dry_run=True)
        out["retention_dry_run"] = run.model_dump()
        out["retention_executions"] = [e.model_dump() for e in c.retention.get_executions(policy.id)]
        c.retention.delete(policy.id)
        out["retention_after_delete"] = [p.name for p in c.retention.list()]
        cqs = c.continuous_queries
        cq = cqs.create(
            "boiler-1m", "plant", "boiler", "boiler_1m",
            "SELECT date_bin(INTERVAL '1 minute', time) AS time, host, avg(temp) AS temp, "
            "count(*) AS n FROM boiler WHERE time >= {start_time} AND time < {end_time} "
            "GROUP BY 1, host",
            "1m", description="per-minute boiler")
        out["cq_created"] = cq.model_dump()
        out["cq_listed"] = [q.name for q in cqs.list(database="plant")]
        out["cq_got"] = cqs.get(cq.id).interval
        out["cq_updated"] = cqs.update(cq.id, description="per minute").description
        start = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(time.time() - 600))
        dry = cqs.execute(cq.id, start_time=start, dry_run=True)
        out["cq_dry"] = dry.model_dump()
        run = cqs.execute(cq.id, start_time=start)
        out["cq_run"] = run.model_dump()
        out["cq_again"] = cqs.execute(cq.id, start_time=start).model_dump()
        out["cq_sum"] = c.query.query("SELECT sum(n) FROM boiler_1m").data[0][0]
        out["cq_source"] = c.query.query(
            f"SELECT count(*) FROM boiler WHERE time >= '{run.start_time}' "
            f"AND time < '{run.end_time}'").data[0][0]
        out["cq_executions"] = [e.model_dump() for e in cqs.get_executions(cq.id)]
        cqs.delete(cq.id)
        out["cq_after_delete"] = [q.name for q in cqs.list()]
    with ArcClient(host=host, port=port, token=read, database="plant") as c:
        out["read_delete"] = raised(
            lambda: c.delete.delete("plant", "boiler", "temp > 0", dry_run=False))
        out["read_query"] = c.query.query("SELECT count(*) FROM boiler").data[0][0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
