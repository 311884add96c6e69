"""Publishes N readings with paho-mqtt and exits once every one is acknowledged.

paho_publish.py PORT TOPIC COUNT QOS {3|5}
Prints the number of acknowledged messages.
"""
import sys

import paho.mqtt.client as mqtt

port, topic, count, qos, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
protocol = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{version}-{qos}", protocol=protocol)
client.connect("127.0.0.1", int(port))
client.loop_start()
infos = [client.publish(topic, f'{{"n": {i}}}', qos=qos) for i in range(count)]
acked = 0
for info in infos:
    info.wait_for_publish(timeout=30)
    if info.is_published():
        acked += 1
client.disconnect()
client.loop_stop()
print(acked)
