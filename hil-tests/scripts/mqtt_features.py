"""MQTT features a sensor fleet relies on, observed with paho-mqtt (3.1.1 and
5) against one broker: `mqtt_features.py PORT [RUN]` prints one JSON object,
`{feature: {"observed": ..., "expected": ...}}`, where `expected` is what
the MQTT specification requires. hil-tests/tests/mqtt_features.rs runs it
against Mosquitto and ferry-agent and compares both with each other and with
`expected`.

Every observation is made after waiting for the broker's answer (SUBACK,
PUBACK, a message, or a bounded wait where the point is that nothing
arrives), so the result does not depend on timing.
"""

import json
import queue
import socket
import struct
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

PORT = int(sys.argv[1])
# The run id in topics and client ids (the same for both brokers, so that
# their observations compare).
RUN = sys.argv[2] if len(sys.argv) > 2 else uuid.uuid4().hex[:8]
QUIET = 1.0  # seconds to wait where the point is that nothing arrives


def topic(name):
    return f"features/{RUN}/{name}"


class Client:
    """A connected paho client whose received messages go to a queue."""

    def __init__(self, name, v5=True, clean=True, expiry=None, will=None,
                 keepalive=60, max_packet=None):
        self.id = f"{name}-{RUN}"
        self.v5 = v5
        self.messages = queue.Queue()
        self.acks = queue.Queue()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else clean)
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_subscribe = lambda c, u, mid, codes, p: self.acks.put(("sub", codes))
        self.c.on_publish = lambda c, u, mid, rc, p: self.acks.put(("pub", mid))
        connected = queue.Queue()
        self.c.on_connect = lambda c, u, flags, rc, p: connected.put(flags)
        self.disconnects = queue.Queue()
        self.c.on_disconnect = lambda c, u, flags, rc, p: self.disconnects.put(int(getattr(rc, "value", rc)))
        if will:
            self.c.will_set(*will)
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)
            if expiry is not None:
                props.SessionExpiryInterval = expiry
            if max_packet is not None:
                props.MaximumPacketSize = max_packet
        kwargs = {"keepalive": keepalive}
        if v5:
            kwargs["clean_start"] = clean
            kwargs["properties"] = props
        self.c.connect("127.0.0.1", PORT, **kwargs)
        self.c.loop_start()
        flags = connected.get(timeout=10)
        self.session_present = bool(flags.session_present)

    def subscribe(self, filt, qos=1, **opts):
        if self.v5:
            self.c.subscribe(filt, options=SubscribeOptions(qos=qos, **opts))
        else:
            self.c.subscribe(filt, qos)
        kind, codes = self.acks.get(timeout=10)
        assert kind == "sub", kind
        return [int(getattr(c, "value", c)) for c in codes]

    def publish(self, t, payload, qos=1, retain=False, props=None):
        info = self.c.publish(t, payload, qos=qos, retain=retain, properties=props)
        if qos > 0:
            info.wait_for_publish(timeout=10)
            assert info.is_published(), f"no ack for {t}"

    def got(self, n, timeout=5.0):
        """The next `n` messages (fewer if they do not come in time)."""
        out = []
        deadline = time.time() + timeout
        while len(out) < n and time.time() < deadline:
            try:
                out.append(self.messages.get(timeout=max(0.01, deadline - time.time())))
            except queue.Empty:
                break
        return out

    def none(self):
        """Messages that arrive within QUIET seconds (expected: none)."""
        return self.got(1_000_000, QUIET)

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


results = {}


def record(name, observed, expected, mosquitto=None):
    """`mosquitto`: what Mosquitto 2.0 observably does where it departs from
    the specification (the agent follows the specification)."""
    results[name] = {"observed": observed, "expected": expected}
    if mosquitto is not None:
        results[name]["mosquitto"] = mosquitto


def payloads(ms):
    return [m.payload.decode() for m in ms]


def silent_client_with_will(keepalive, will_topic, v5):
    """A raw socket that sends CONNECT (keep alive, a will) and then nothing."""
    cid = f"silent-{'5' if v5 else '4'}-{RUN}".encode()
    name = b"\x00\x04MQTT"
    flags = 0x02 | 0x04 | 0x08  # clean, will flag, will QoS 1
    body = name + bytes([5 if v5 else 4, flags]) + struct.pack(">H", keepalive)
    if v5:
        body += b"\x00"  # no CONNECT properties
    body += struct.pack(">H", len(cid)) + cid
    if v5:
        body += b"\x00"  # no will properties
    wt = will_topic.encode()
    body += struct.pack(">H", len(wt)) + wt + struct.pack(">H", 4) + b"gone"
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(bytes([0x10, len(body)]) + body)
    s.recv(16)  # CONNACK
    return s


# -- keep alive expiry publishes the will (3.1.1 and 5) --------------------
for v5 in (False, True):
    label = "5" if v5 else "3.1.1"
    sub = Client(f"will-sub-{label}", v5=v5)
    sub.subscribe(topic(f"will/{label}"))
    s = silent_client_with_will(1, topic(f"will/{label}"), v5)
    # 1.5 x 1 s by the specification; Mosquitto 2.0 takes about 6 s on
    # MQTT 5 (its keep alive check is coarse).
    got = sub.got(1, timeout=10)
    record(f"keepalive_expiry_sends_will_{label}", {"will": payloads(got)}, {"will": ["gone"]})
    s.close()
    sub.close()

# -- $-topics are not matched by a leading wildcard (3.1.1 and 5) ----------
for v5 in (False, True):
    label = "5" if v5 else "3.1.1"
    hash_sub = Client(f"dollar-hash-{label}", v5=v5)
    dollar_sub = Client(f"dollar-own-{label}", v5=v5)
    hash_sub.subscribe("#")
    dollar_sub.subscribe(f"$features-{RUN}/#")
    pub = Client(f"dollar-pub-{label}", v5=v5)
    pub.publish(f"$features-{RUN}/x", "d")
    record(f"dollar_topics_{label}",
           {"#": [m.topic for m in hash_sub.none() if m.topic.startswith("$features")],
            "$features/#": payloads(dollar_sub.got(1))},
           {"#": [], "$features/#": ["d"]})
    for c in (hash_sub, dollar_sub, pub):
        c.close()

# -- QoS delivered is the lower of published and granted -------------------
sub = Client("qos-sub")
sub.subscribe(topic("qos"), qos=2)
pub = Client("qos-pub")
pub.publish(topic("qos"), "zero", qos=0)
pub.publish(topic("qos"), "one", qos=1)
record("delivered_qos_is_the_lower", [(m.payload.decode(), m.qos) for m in sub.got(2)],
       [["zero", 0], ["one", 1]])
sub.close()

# -- retained messages: kept, flagged, cleared by an empty payload ---------
pub.publish(topic("retained"), "kept", retain=True)
late = Client("retained-late")
late.subscribe(topic("retained"))
got = late.got(1)
cleared = Client("retained-cleared")
pub.publish(topic("retained"), "", retain=True)
cleared.subscribe(topic("retained"))
record("retained_messages",
       {"late": [(m.payload.decode(), m.retain) for m in got], "after_clear": payloads(cleared.none())},
       {"late": [["kept", True]], "after_clear": []})
late.close()
cleared.close()

# -- offline queueing for a kept session, and session present --------------
away = Client("offline", clean=True, expiry=60)
away.subscribe(topic("offline"))
away.close()
for i in range(3):
    pub.publish(topic("offline"), f"q{i}")
back = Client("offline", clean=False, expiry=60)
record("offline_queueing",
       {"session_present": back.session_present, "messages": payloads(back.got(3))},
       {"session_present": True, "messages": ["q0", "q1", "q2"]})
back.close()

# -- MQTT 3.1.1 clean session 0 keeps the session too -----------------------
away = Client("offline311", v5=False, clean=False)
away.subscribe(topic("offline311"))
away.close()
pub.publish(topic("offline311"), "kept")
back = Client("offline311", v5=False, clean=False)
record("offline_queueing_3.1.1",
       {"session_present": back.session_present, "messages": payloads(back.got(1))},
       {"session_present": True, "messages": ["kept"]})
back.close()
Client("offline311", v5=False, clean=True).close()

# -- session expiry ends the session ---------------------------------------
short = Client("expiring", clean=True, expiry=1)
short.subscribe(topic("expiring"))
short.close()
time.sleep(3)
pub.publish(topic("expiring"), "late")
back = Client("expiring", clean=False, expiry=0)
record("session_expiry",
       {"session_present": back.session_present, "messages": payloads(back.none())},
       {"session_present": False, "messages": []})
back.close()

# -- user properties, payload format and content type pass through --------
sub = Client("props-sub")
sub.subscribe(topic("props"))
props = Properties(PacketTypes.PUBLISH)
props.UserProperty = [("site", "plant-1"), ("line", "4"), ("site", "again")]
props.PayloadFormatIndicator = 1
props.ContentType = "application/json"
props.ResponseTopic = topic("reply")
props.CorrelationData = b"\x01\x02"
pub.publish(topic("props"), '{"t": 1}', props=props)
got = sub.got(1)
p = got[0].properties if got else None
record("properties_pass_through",
       {"user": [list(x) for x in getattr(p, "UserProperty", [])],
        "format": getattr(p, "PayloadFormatIndicator", None),
        "content_type": getattr(p, "ContentType", None),
        "response_topic": getattr(p, "ResponseTopic", None),
        "correlation": list(getattr(p, "CorrelationData", b""))},
       {"user": [["site", "plant-1"], ["line", "4"], ["site", "again"]], "format": 1,
        "content_type": "application/json", "response_topic": topic("reply"),
        "correlation": [1, 2]})
sub.close()

# -- message expiry: an expired message is not delivered; the rest carry
# -- the interval left -----------------------------------------------------
away = Client("expiry", clean=True, expiry=60)
away.subscribe(topic("expiry"))
away.close()
short = Properties(PacketTypes.PUBLISH)
short.MessageExpiryInterval = 1
longer = Properties(PacketTypes.PUBLISH)
longer.MessageExpiryInterval = 60
pub.publish(topic("expiry"), "short", props=short)
pub.publish(topic("expiry"), "long", props=longer)
time.sleep(2.5)
back = Client("expiry", clean=False, expiry=0)
got = back.got(2, timeout=3)
left = [getattr(m.properties, "MessageExpiryInterval", None) for m in got]
record("message_expiry",
       {"messages": payloads(got), "interval_left_at_most_60": all(x is not None and x <= 60 for x in left)},
       {"messages": ["long"], "interval_left_at_most_60": True})
back.close()

# -- subscribe options -------------------------------------------------------
me = Client("nolocal")
me.subscribe(topic("nolocal"), noLocal=True)
other = Client("nolocal-other")
other.subscribe(topic("nolocal"))
me.publish(topic("nolocal"), "mine")
record("no_local", {"publisher": payloads(me.none()), "other": payloads(other.got(1))},
       {"publisher": [], "other": ["mine"]})
me.close()
other.close()

rap = Client("rap")
plain = Client("rap-plain")
rap.subscribe(topic("rap"), retainAsPublished=True)
plain.subscribe(topic("rap"))
pub.publish(topic("rap"), "r", retain=True)
record("retain_as_published",
       {"rap": [m.retain for m in rap.got(1)], "plain": [m.retain for m in plain.got(1)]},
       {"rap": [True], "plain": [False]})
pub.publish(topic("rap"), "", retain=True)
rap.close()
plain.close()

pub.publish(topic("rh/a"), "held", retain=True)
rh = Client("rh")
first = rh.subscribe(topic("rh/#"), retainHandling=1)
got_new = payloads(rh.got(1))
rh.subscribe(topic("rh/#"), retainHandling=1)
got_again = payloads(rh.none())
rh2 = Client("rh2")
rh2.subscribe(topic("rh/#"), retainHandling=2)
record("retain_handling",
       {"1_new": got_new, "1_existing": got_again, "2": payloads(rh2.none())},
       {"1_new": ["held"], "1_existing": [], "2": []})
pub.publish(topic("rh/a"), "", retain=True)
rh.close()
rh2.close()

# -- a client's topic alias --------------------------------------------------
sub = Client("alias-sub")
sub.subscribe(topic("alias"))
aliased = Properties(PacketTypes.PUBLISH)
aliased.TopicAlias = 1
pub.publish(topic("alias"), "with topic", props=aliased)
pub.publish("", "alias only", props=aliased)
record("client_topic_alias", [(m.topic, m.payload.decode()) for m in sub.got(2)],
       [[topic("alias"), "with topic"], [topic("alias"), "alias only"]])
sub.close()

# -- the client's Maximum Packet Size ---------------------------------------
small = Client("maxpacket", max_packet=256)
small.subscribe(topic("big"))
pub.publish(topic("big"), "x" * 1000)
pub.publish(topic("big"), "small")
record("maximum_packet_size", payloads(small.got(2, timeout=3)), ["small"])
small.close()

# -- a second connection with the same client id takes the session over ---
first = Client("takeover", clean=False, expiry=60)
first.subscribe(topic("takeover"))
first.c.reconnect_delay_set(min_delay=60, max_delay=120)  # no reconnect race
second = Client("takeover", clean=False, expiry=60)
try:
    reason = first.disconnects.get(timeout=5)
except queue.Empty:
    reason = None
pub.publish(topic("takeover"), "to the new one")
record("takeover",
       {"old_connection_reason": reason, "session_present": second.session_present,
        "new_connection_gets": payloads(second.got(1))},
       {"old_connection_reason": 0x8E, "session_present": True,
        "new_connection_gets": ["to the new one"]},
       # MQTT 5 §3.1.4: DISCONNECT 0x8E to the older connection. Mosquitto
       # 2.0 closes it without one (paho reports 0x80).
       mosquitto={"old_connection_reason": 0x80, "session_present": True,
                  "new_connection_gets": ["to the new one"]})
first.c.loop_stop()
second.close()

# -- shared subscriptions share ------------------------------------------------
members = [Client(f"share-{i}") for i in range(2)]
for m in members:
    m.subscribe(f"$share/g/{topic('shared')}")
for i in range(6):
    pub.publish(topic("shared"), f"s{i}")
time.sleep(QUIET)
counts = [len(m.got(6, timeout=0.2)) for m in members]
record("shared_subscription", {"total": sum(counts), "each_got_some": all(c > 0 for c in counts)},
       {"total": 6, "each_got_some": True})
for m in members:
    m.close()

pub.close()
print(json.dumps(results, sort_keys=True))
