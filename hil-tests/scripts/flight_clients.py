"""Flight SQL clients from PyPI against a real ferry-hub, unchanged.

Usage: flight_clients.py FLIGHT_PORT HTTP_PORT ADMIN_TOKEN LIMITED_TOKEN

Prints one JSON report: what ADBC (adbc-driver-flightsql), influxdb3-python
and flightsql-dbapi answered, and the errors hostile calls got. The Rust
test (hil-tests/tests/hub_flight_sql.rs) compares it with the HTTP API.
"""

import json
import sys

import pyarrow.flight as flight

FLIGHT, HTTP, ADMIN, LIMITED = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
URI = f"grpc://127.0.0.1:{FLIGHT}"
SQL = "SELECT device, value FROM boiler ORDER BY device"
report = {}


def err(e):
    return {"type": type(e).__name__, "message": str(e)}


def attempt(name, fn):
    try:
        report[name] = {"ok": fn()}
    except Exception as e:  # noqa: BLE001 - the report carries every failure
        report[name] = {"error": err(e)}


def rows(table):
    return [list(r.values()) for r in table.to_pylist()]


# --- ADBC -------------------------------------------------------------------
import adbc_driver_flightsql.dbapi as adbc  # noqa: E402


def adbc_connect(token=ADMIN, database="plant", basic=False):
    kwargs = {}
    if basic:
        kwargs["username"] = "anyone"
        kwargs["password"] = token
    elif token is not None:
        kwargs["adbc.flight.sql.authorization_header"] = f"Bearer {token}"
    if database:
        kwargs["adbc.flight.sql.rpc.call_header.database"] = database
    return adbc.connect(URI, db_kwargs=kwargs, autocommit=True)


def adbc_query(sql, **kw):
    with adbc_connect(**kw) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return rows(cur.fetch_arrow_table())


def adbc_prepared(sql):
    with adbc_connect() as conn, conn.cursor() as cur:
        cur.adbc_prepare(sql)
        cur.execute(sql)
        first = rows(cur.fetch_arrow_table())
        cur.execute(sql)
        second = rows(cur.fetch_arrow_table())
        return {"first": first, "second": second}


def adbc_objects(token=ADMIN):
    with adbc_connect(token=token) as conn:
        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        out = {}
        for cat in objects:
            for schema in cat["catalog_db_schemas"] or []:
                for table in schema["db_schema_tables"] or []:
                    cols = [c["column_name"] for c in table["table_columns"] or []]
                    out[f'{cat["catalog_name"]}.{schema["db_schema_name"]}.{table["table_name"]}'] = cols
        return out


def adbc_table_schema():
    with adbc_connect() as conn:
        schema = conn.adbc_get_table_schema("boiler", db_schema_filter="plant")
        return [f.name for f in schema]


def adbc_info():
    with adbc_connect() as conn:
        info = conn.adbc_get_info()
        types = conn.adbc_get_table_types()
        return {"vendor_name": info.get("vendor_name"), "vendor_version": info.get("vendor_version"), "table_types": types}


attempt("adbc_query", lambda: adbc_query(SQL))
attempt("adbc_health", lambda: adbc_query("SELECT 1"))
attempt("adbc_basic_auth", lambda: adbc_query(SQL, basic=True))
attempt("adbc_prepared", lambda: adbc_prepared(SQL))
attempt("adbc_objects", adbc_objects)
attempt("adbc_objects_limited", lambda: adbc_objects(LIMITED))
attempt("adbc_table_schema", adbc_table_schema)
attempt("adbc_info", adbc_info)
attempt("adbc_show", lambda: adbc_query("SHOW MEASUREMENTS"))
# Hostile and careless calls.
attempt("adbc_no_token", lambda: adbc_query(SQL, token=None))
attempt("adbc_bad_token", lambda: adbc_query(SQL, token="ferry_not_a_token"))
attempt("adbc_bad_basic", lambda: adbc_query(SQL, token="wrong", basic=True))
attempt("adbc_ddl", lambda: adbc_query("CREATE TABLE x AS SELECT 1"))
attempt("adbc_bad_sql", lambda: adbc_query("SELEC nothing"))
attempt("adbc_limited_other_db", lambda: adbc_query("SELECT count(*) FROM secret.boiler", token=LIMITED))
attempt("adbc_limited_own_db", lambda: adbc_query(SQL, token=LIMITED))
attempt("adbc_huge_statement", lambda: adbc_query("SELECT 1 -- " + "x" * (5 * 1024 * 1024)))
attempt("adbc_bad_database", lambda: adbc_query("SELECT 1", database="../etc"))

# --- influxdb3-python ---------------------------------------------------------
from influxdb_client_3 import InfluxDBClient3  # noqa: E402


def influx(sql, token=ADMIN, language="sql"):
    client = InfluxDBClient3(host=f"http://127.0.0.1:{HTTP}", token=token, database="plant", query_port_overwrite=FLIGHT)
    try:
        return rows(client.query(sql, language=language, mode="all"))
    finally:
        client.close()


attempt("influx_query", lambda: influx(SQL))
attempt("influx_bad_token", lambda: influx(SQL, token="ferry_nope"))
attempt("influx_influxql", lambda: influx("SELECT * FROM boiler", language="influxql"))

# --- flightsql-dbapi ----------------------------------------------------------
from flightsql import FlightSQLClient  # noqa: E402
import flightsql  # noqa: E402


def dbapi_query(sql):
    client = FlightSQLClient(host="127.0.0.1", port=FLIGHT, token=ADMIN, insecure=True, metadata={"database": "plant"})
    conn = flightsql.connect(client)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return [list(r) for r in cur.fetchall()]
    finally:
        conn.close()


def dbapi_tables():
    client = FlightSQLClient(host="127.0.0.1", port=FLIGHT, token=ADMIN, insecure=True)
    info = client.get_tables(include_schema=True)
    reader = client.do_get(info.endpoints[0].ticket)
    t = reader.read_all()
    return sorted(f"{s}.{n}" for s, n in zip(t.column("db_schema_name").to_pylist(), t.column("table_name").to_pylist()))


attempt("dbapi_query", lambda: dbapi_query(SQL))
attempt("dbapi_tables", dbapi_tables)

# --- raw pyarrow.flight: a forged ticket -------------------------------------------


def forged_ticket():
    client = flight.FlightClient(URI)
    opts = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {ADMIN}".encode())])
    return client.do_get(flight.Ticket(b"\x0a\x05bogus"), opts).read_all().num_rows


attempt("forged_ticket", forged_ticket)

print(json.dumps(report))
