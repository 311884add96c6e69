"""A reconnect storm against an MQTT broker, with paho-mqtt.

reconnect_storm.py PORT SECONDS CLIENTS

CLIENTS clients with fixed client ids (some holding '/', '+', '#' or '$')
reconnect for SECONDS seconds, each cycle ending one of four ways: a clean
DISCONNECT, an abrupt drop (the socket closed without DISCONNECT, so the
will fires), a takeover (a second connection with the same id while the
first is open), or a half connect (CONNECT sent, socket closed before the
CONNACK). They alternate MQTT 3.1.1 and 5, clean and persistent sessions,
with and without a will; each connected cycle publishes a burst at QoS 1.
A publisher sends QoS 1 bursts from its own connection throughout, and a
subscriber counts the wills.

Before the storm, a handover phase: 200 times, one client connects and
sends DISCONNECT, and at once another connects (MQTT 5) and publishes at
QoS 1. (rumqttd 0.20 reuses the first connection's slot for the second and
could end it with the first one's late "disconnected" event.)

Afterwards a fresh MQTT 3.1.1 client and a fresh MQTT 5 client must each
get a QoS 1 message acknowledged. Prints one JSON object with the counts.
"""
import json
import random
import socket
import struct
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

PORT = int(sys.argv[1])
SECONDS = float(sys.argv[2])
CLIENTS = int(sys.argv[3])
HOST = "127.0.0.1"

lock = threading.Lock()
counts = {
    "clients": CLIENTS,
    "connects": 0,
    "connect_failures": 0,
    "clean_disconnects": 0,
    "abrupt_drops": 0,
    "takeovers": 0,
    "half_connects": 0,
    "publishes_acked": 0,
    "publisher_acked": 0,
    "wills_received": 0,
    "handovers": 0,
    "handover_failures": 0,
}


def bump(key, n=1):
    with lock:
        counts[key] += n


def client_id(i):
    # Ids with characters some brokers refuse or treat specially.
    return [f"storm-{i}", f"storm/{i}", f"storm+{i}", f"storm#{i}", f"$storm-{i}"][i % 5]


def make_client(i, v5, clean, will):
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    kwargs = {"client_id": client_id(i), "protocol": proto}
    if not v5:
        kwargs["clean_session"] = clean
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if will:
        c.will_set(f"storm/will/{i}", b"gone", qos=1)
    return c


def connect(c, v5, clean):
    if v5:
        props = Properties(PacketTypes.CONNECT)
        if not clean:
            props.SessionExpiryInterval = 60
        c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=props)
    else:
        c.connect(HOST, PORT, keepalive=30)


def frame(first, body):
    out = bytes([first])
    n = len(body)
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out + body


def connect_packet(cid, v5, clean=True):
    vh = b"\x00\x04MQTT" + bytes([5 if v5 else 4, 0x02 if clean else 0x00]) + struct.pack(">H", 30)
    if v5:
        vh += b"\x00"
    return frame(0x10, vh + struct.pack(">H", len(cid)) + cid)


def read_packet(s):
    head = s.recv(2)
    if len(head) < 2:
        return None
    body = b""
    while len(body) < head[1]:
        chunk = s.recv(head[1] - len(body))
        if not chunk:
            return None
        body += chunk
    return head + body


def handover():
    """A connects and sends DISCONNECT; B connects at once and publishes."""
    try:
        a = socket.create_connection((HOST, PORT), timeout=5)
        a.sendall(connect_packet(b"handover-a", False))
        read_packet(a)
        a.sendall(b"\xe0\x00")
        a.close()
        b = socket.create_connection((HOST, PORT), timeout=5)
        b.sendall(connect_packet(b"handover-b", True))
        connack = read_packet(b)
        ok = connack is not None and connack[0] == 0x20 and connack[3] == 0
        if ok:
            topic, payload = b"sensors/handover/t", b'{"n": 1}'
            body = struct.pack(">H", len(topic)) + topic + struct.pack(">H", 1) + b"\x00" + payload
            b.sendall(frame(0x32, body))
            puback = read_packet(b)
            ok = puback is not None and puback[0] == 0x40
            b.sendall(b"\xe0\x00")
        b.close()
    except OSError:
        ok = False
    bump("handovers")
    if not ok:
        bump("handover_failures")


def half_connect(i, v5):
    """CONNECT, then close before reading the CONNACK."""
    try:
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(connect_packet(client_id(i).encode(), v5))
        s.close()
        bump("half_connects")
    except OSError:
        bump("connect_failures")


def cycle(i, rng, deadline):
    v5 = i % 2 == 1
    clean = (i // 2) % 2 == 0
    will = (i // 4) % 2 == 0
    while time.time() < deadline:
        how = rng.choice(["clean", "abrupt", "takeover", "half"])
        if how == "half":
            half_connect(i, v5)
            continue
        c = make_client(i, v5, clean, will)
        try:
            connect(c, v5, clean)
        except OSError:
            bump("connect_failures")
            time.sleep(0.05)
            continue
        c.loop_start()
        bump("connects")
        infos = [c.publish(f"sensors/storm{i}/t", f'{{"n": {n}}}', qos=1) for n in range(rng.randint(1, 20))]
        acked = 0
        for info in infos:
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                break
            if info.is_published():
                acked += 1
        bump("publishes_acked", acked)
        if how == "clean":
            c.disconnect()
            bump("clean_disconnects")
        elif how == "abrupt":
            sock = c.socket()
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            bump("abrupt_drops")
        else:
            second = make_client(i, v5, clean, will)
            try:
                connect(second, v5, clean)
                second.loop_start()
                bump("connects")
                bump("takeovers")
                time.sleep(rng.uniform(0, 0.05))
                second.disconnect()
                second.loop_stop()
            except OSError:
                bump("connect_failures")
        c.loop_stop()
        time.sleep(rng.uniform(0, 0.02))


def publisher(deadline):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="storm-publisher")
    c.connect(HOST, PORT)
    c.loop_start()
    while time.time() < deadline:
        infos = [c.publish("sensors/storm-publisher/t", f'{{"n": {n}}}', qos=1) for n in range(200)]
        for info in infos:
            try:
                info.wait_for_publish(timeout=5)
            except (RuntimeError, ValueError):
                break
            if info.is_published():
                bump("publisher_acked")
    c.disconnect()
    c.loop_stop()


def fresh(v5):
    """A new client gets a QoS 1 acknowledgement within 10 s."""
    proto = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"fresh-v{5 if v5 else 4}", protocol=proto)
    try:
        c.connect(HOST, PORT)
    except OSError as e:
        return f"connect failed: {e}"
    c.loop_start()
    info = c.publish("sensors/fresh/t", '{"n": 1}', qos=1)
    try:
        info.wait_for_publish(timeout=10)
    except (RuntimeError, ValueError) as e:
        return f"publish failed: {e}"
    finally:
        c.disconnect()
        c.loop_stop()
    return "ok" if info.is_published() else "not acknowledged within 10 s"


def main():
    for _ in range(200):
        handover()
    wills = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="storm-will-watcher")
    wills.on_message = lambda *_: bump("wills_received")
    wills.connect(HOST, PORT)
    wills.subscribe("storm/will/#", qos=1)
    wills.loop_start()
    deadline = time.time() + SECONDS
    threads = [threading.Thread(target=publisher, args=(deadline,))]
    threads += [
        threading.Thread(target=cycle, args=(i, random.Random(i), deadline)) for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.5)
    wills.disconnect()
    wills.loop_stop()
    counts["fresh_v311"] = fresh(False)
    counts["fresh_v5"] = fresh(True)
    print(json.dumps(counts))


main()
