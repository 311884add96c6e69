"""Talks to a Ferry hub over HTTPS with the clients users run.

tls_client.py write URL TOKEN CA       writes 3 lines with the unchanged
                                      InfluxDB 2.x client (ssl_ca_cert=CA)
tls_client.py query URL TOKEN CA SQL  runs SQL; prints the JSON answer
tls_client.py post URL TOKEN CA PATH BODY
                                      POSTs BODY (with the token as a bearer
                                      header unless TOKEN is -); prints the
                                      status, a space and the answer
tls_client.py fingerprint HOST PORT CA
                                      prints the SHA-256 of the certificate
                                      the server presents (verified by CA)
tls_client.py plain HOST PORT         sends plain HTTP to the port; prints
                                      "refused" if no HTTP answer comes back
tls_client.py flight PORT TOKEN CA SQL
                                      runs SQL over Flight SQL with ADBC
                                      (grpc+tls, trusting CA); prints the
                                      first value, or "error: ..."
tls_client.py flight-plain PORT TOKEN SQL
                                      the same without TLS (grpc://)
"""
import hashlib
import json
import socket
import ssl
import sys
import urllib.error
import urllib.request


def write(url, token, ca):
    from influxdb_client import InfluxDBClient, Point
    from influxdb_client.client.write_api import SYNCHRONOUS

    with InfluxDBClient(url=url, token=token, org="ferry", ssl_ca_cert=ca) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        for i in range(3):
            api.write(bucket="tls", record=Point("over_tls").field("n", i).time(1764158400 + i, "s"))
    print("ok")


def query(url, token, ca, sql):
    context = ssl.create_default_context(cafile=ca)
    request = urllib.request.Request(
        url + "/api/v1/query",
        data=json.dumps({"sql": sql}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=30) as answer:
        print(answer.read().decode())


def post(url, token, ca, path, body):
    context = ssl.create_default_context(cafile=ca)
    request = urllib.request.Request(
        url + path,
        data=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    if token != "-":
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            print(answer.status, answer.read().decode())
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())


def fingerprint(host, port, ca):
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            print(hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest())


def plain(host, port):
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(10)
        try:
            data = sock.recv(64)
        except (socket.timeout, ConnectionResetError):
            data = b""
    print("answered" if data.startswith(b"HTTP/") else "refused")


def flight(uri, token, ca, sql):
    import adbc_driver_flightsql.dbapi as adbc

    kwargs = {"adbc.flight.sql.authorization_header": f"Bearer {token}"}
    if ca is not None:
        with open(ca) as f:
            kwargs["adbc.flight.sql.client_option.tls_root_certs"] = f.read()
    try:
        with adbc.connect(uri, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(sql)
            print(cur.fetchone()[0])
    except Exception as e:  # noqa: BLE001 - printed for the test
        print("error:", type(e).__name__, str(e).splitlines()[0])


command = sys.argv[1]
if command == "write":
    write(*sys.argv[2:5])
elif command == "query":
    query(*sys.argv[2:6])
elif command == "post":
    post(*sys.argv[2:7])
elif command == "fingerprint":
    fingerprint(*sys.argv[2:5])
elif command == "flight":
    port, token, ca, sql = sys.argv[2:6]
    flight(f"grpc+tls://127.0.0.1:{port}", token, ca, sql)
elif command == "flight-plain":
    port, token, sql = sys.argv[2:5]
    flight(f"grpc://127.0.0.1:{port}", token, None, sql)
elif command == "plain":
    plain(*sys.argv[2:4])
else:
    raise SystemExit(f"unknown command {command}")
