"""MQTT clients for the benchmarks, each run as its own process (paho-mqtt, MQTT 5).

``python -m bench.mqttclient publish --port P --user U --password W --topic T --count N``
publishes N distinct messages (bench.common.message, indexes from ``--offset``) with QoS 1,
up to ``--inflight`` unacknowledged, and prints one JSON line: ``{"count", "start",
"published", "acked"}`` (epoch seconds: before the first publish, after the last publish call,
when the broker had acknowledged every one).

``python -m bench.mqttclient subscribe --port P --user U --password W --topic T --count N``
subscribes with QoS 1, prints ``subscribed`` once the broker confirmed, then, once it has
received N messages, one JSON line ``{"count", "first", "last"}`` (epoch seconds), and exits.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from bench.common import message


def _client(args: argparse.Namespace) -> tuple[paho.Client, threading.Event]:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id,
                         protocol=paho.MQTTv5)
    client.username_pw_set(args.user, args.password)
    client.max_inflight_messages_set(args.inflight)
    client.max_queued_messages_set(0)
    connected = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            print(f"connect refused: {reason}", file=sys.stderr, flush=True)
        else:
            connected.set()

    client.on_connect = on_connect
    return client, connected


def publish(args: argparse.Namespace) -> None:
    bodies = [orjson.dumps(message(args.offset + i)) for i in range(args.count)]
    client, connected = _client(args)
    acked = 0
    done = threading.Event()
    lock = threading.Lock()

    def on_publish(_c: Any, _u: Any, _mid: int, _reason: Any, _p: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked >= args.count:
                done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", args.port, keepalive=60)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise SystemExit("the publisher could not connect")
        start = time.time()
        for body in bodies:
            client.publish(args.topic, body, qos=1)
        published = time.time()
        if not done.wait(600):
            raise SystemExit(f"only {acked} of {args.count} publishes acknowledged")
        end = time.time()
    finally:
        client.disconnect()
        client.loop_stop()
    print(orjson.dumps({"count": args.count, "start": start, "published": published,
                        "acked": end}).decode(), flush=True)


def subscribe(args: argparse.Namespace) -> None:
    client, connected = _client(args)
    count = 0
    first = last = 0.0
    done = threading.Event()
    subscribed = threading.Event()

    def on_message(_c: Any, _u: Any, _msg: paho.MQTTMessage) -> None:
        nonlocal count, first, last
        now = time.time()
        if count == 0:
            first = now
        count += 1
        last = now
        if count >= args.count:
            done.set()

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect("127.0.0.1", args.port, keepalive=60, clean_start=True)
    client.loop_start()
    try:
        if not connected.wait(10):
            raise SystemExit("the subscriber could not connect")
        client.subscribe(args.topic, qos=1)
        if not subscribed.wait(10):
            raise SystemExit(f"no SUBACK for {args.topic}")
        print("subscribed", flush=True)
        if not done.wait(args.timeout):
            raise SystemExit(f"received only {count} of {args.count} in {args.timeout} s")
    finally:
        client.disconnect()
        client.loop_stop()
    print(orjson.dumps({"count": count, "first": first, "last": last}).decode(), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("publish", "subscribe"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--inflight", type=int, default=1000)
    parser.add_argument("--client-id", default="")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    if not args.client_id:
        args.client_id = f"bench-{args.action}"
    publish(args) if args.action == "publish" else subscribe(args)


if __name__ == "__main__":
    main()
