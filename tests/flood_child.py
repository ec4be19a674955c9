"""A faulty gateway for the flood test (tests/rtls/test_faults_flood.py), as a child process.

``python -m tests.flood_child PORT GATEWAY SECONDS RATE``: publishes random garbage (50-400
bytes, seeded) on ``rtls/v1/gw/<GATEWAY>/obs`` at QoS 0, ``RATE`` messages/s for ``SECONDS``
s, then prints the number sent.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main(port: int, gateway: str, seconds: float, rate: float) -> int:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=f"flood-{gateway}")  # fmt: skip
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    rng = np.random.default_rng(5)
    junk = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
            for n in rng.integers(50, 400, 256)]  # fmt: skip
    topic = f"rtls/v1/gw/{gateway}/obs"
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        if sent > elapsed * rate:
            time.sleep(0.001)
            continue
        client.publish(topic, junk[sent % len(junk)], qos=0)
        sent += 1
    client.loop_stop()
    client.disconnect()
    print(sent, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])))
