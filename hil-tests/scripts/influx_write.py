"""Writes to a Ferry hub with the unchanged InfluxDB 2.x Python client.

influx_write.py URL TOKEN
Every write that must succeed raises on failure (non-zero exit). Prints one
JSON object with what the client raised for the writes that must fail:
{"partial": {...}, "conflict": {...}}, each with status, message (the
client's parsed message), text (str() of the exception, what a user sees)
and body.
"""
import json
import sys

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

url, token = sys.argv[1], sys.argv[2]
T0 = 1764158400  # 2025-11-26T12:00:00Z
NS = 1_000_000_000


def failure(call):
    try:
        call()
    except ApiException as e:
        body = e.body.decode() if isinstance(e.body, bytes) else e.body
        return {"status": e.status, "message": str(e.message), "text": str(e), "body": body}
    raise SystemExit("the write was expected to fail but succeeded")


with InfluxDBClient(url=url, token=token, org="ferry-org") as client:
    write = client.write_api(write_options=SYNCHRONOUS)
    # Points in ns and s precision in one call (the client sends one request
    # per precision), and a dict record; escaping in tags and strings.
    write.write(
        bucket="plant",
        record=[
            Point("boiler")
            .tag("site", "north")
            .tag("unit", "b1")
            .field("temp", 21.5)
            .field("starts", 3)
            .field("running", True)
            .field("mode", "auto")
            .time(T0 * NS + 123_456_789, WritePrecision.NS),
            Point("boiler")
            .tag("site", "east wing")
            .tag("unit", "b=2,x")
            .field("temp", -4.25)
            .field("starts", 0)
            .field("running", False)
            .field("mode", 'off, "manual"')
            .time(T0 * NS + NS + 999, WritePrecision.NS),
            Point("boiler")
            .tag("site", "north")
            .tag("unit", "b1")
            .field("temp", 22.0)
            .time(T0 + 60, WritePrecision.S),
            {
                "measurement": "boiler",
                "tags": {"site": "south", "unit": "b3"},
                "fields": {"starts": 12, "mode": "eco"},
                "time": (T0 + 120) * NS,
            },
        ],
        write_precision=WritePrecision.NS,
    )
    # Raw line protocol strings, second precision.
    write.write(
        bucket="plant/autogen",
        record=[
            f"pump,site=north rpm=1500i,ok=true {T0}",
            f"pump,site=south rpm=900i,ok=false {T0 + 60}",
        ],
        write_precision=WritePrecision.S,
    )

    # One bad line among good ones: the good one is committed, the client
    # raises for the 400 partial_write.
    partial = failure(
        lambda: write.write(
            bucket="plant",
            record=[f"pump,site=east rpm=7i,ok=true {T0 + 180}", f"pump,site=east rpm= {T0 + 240}"],
            write_precision=WritePrecision.S,
        )
    )
    # A field whose type conflicts with the table: 409, nothing written.
    conflict = failure(
        lambda: write.write(
            bucket="plant",
            record=f'pump,site=east rpm="fast" {T0 + 300}',
            write_precision=WritePrecision.S,
        )
    )

# A gzip client (Content-Encoding: gzip), nanosecond raw lines.
with InfluxDBClient(url=url, token=token, org="ferry-org", enable_gzip=True) as client:
    client.write_api(write_options=SYNCHRONOUS).write(
        bucket="plant",
        record=f"pump,site=west rpm=1200i,ok=true {(T0 + 3600) * NS + 5}",
    )

print(json.dumps({"partial": partial, "conflict": conflict}))
