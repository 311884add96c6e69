"""A paho-mqtt client that asks for no keep alive (0, MQTT 3.1.1 and 5
section 3.1.2.10), as many small sensor stacks do.

paho_keepalive_zero.py PORT {3|5} QUIET_SECONDS

Connects with keepalive=0, subscribes to ka0/<version>/#, publishes at QoS 1,
stays silent for QUIET_SECONDS (paho sends no PINGREQ without a keep
alive), publishes again, and prints one JSON object: the CONNACK reason,
whether each publish was acknowledged, the payloads received back, and
whether the connection was still up at the end.
"""
import json
import sys
import threading
import time

import paho.mqtt.client as mqtt

port, version, quiet = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
topic = f"ka0/v{version}"
connack, received, subscribed = [], [], threading.Event()
lost = []

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ka0-{version}", protocol=protocol)
client.on_connect = lambda c, u, flags, rc, props: connack.append(str(rc))
client.on_subscribe = lambda c, u, mid, rcs, props: subscribed.set()
client.on_message = lambda c, u, msg: received.append(msg.payload.decode())
client.on_disconnect = lambda c, u, flags, rc, props: lost.append(str(rc))

report = {"connack": None}
try:
    client.connect("127.0.0.1", port, keepalive=0)
except OSError as e:
    report["error"] = str(e)
    print(json.dumps(report))
    sys.exit(0)
client.loop_start()
deadline = time.monotonic() + 5
while not connack and not lost and time.monotonic() < deadline:
    time.sleep(0.02)
report["connack"] = connack[0] if connack else None
if connack:
    client.subscribe(f"{topic}/#", qos=1)
    subscribed.wait(5)
    acked = []
    for i, pause in enumerate([0, quiet]):
        time.sleep(pause)
        info = client.publish(f"{topic}/dev", f'{{"n": {i}}}', qos=1)
        info.wait_for_publish(timeout=5)
        acked.append(info.is_published())
    deadline = time.monotonic() + 5
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    report["acked"] = acked
    report["received"] = received
    report["connected_at_end"] = client.is_connected() and not lost
client.disconnect()
client.loop_stop()
print(json.dumps(report))
