"""A minimal, fast webhook receiver for the benchmarks, run as its own process.

``python -m bench.receiver [--host H] [--port P] [--hang]`` prints ``listening PORT`` once it
accepts connections, then answers every request ``204 No Content`` over HTTP/1.1 keep-alive
(pipelined requests are answered in order; Content-Length and chunked bodies are read). With
``--hang`` it reads and counts every request but never answers one (control requests aside):
an endpoint that accepts connections and then hangs.

It counts requests, distinct (path, ``webhook-id``) pairs and body bytes, and notes the first and
last arrival (``time.time()``). In latency mode it also reads each JSON body and keeps
``arrival - body["payload"]`` (seconds): the benchmarks put the send time in ``payload``.

Control requests (not counted), answered with JSON:

- ``GET /__bench/stats``: ``{"requests", "unique", "bytes", "first", "last", "latency",
  "connections", "maxConnections"}`` (connections open now, and the most open at once)
- ``POST /__bench/reset`` (``?latency=1`` switches latency mode on): zero every counter
- ``GET /__bench/samples``: ``{"samples": [seconds, ...]}`` (latency mode)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import orjson

MAX_HEAD = 64 * 1024
CONTROL = b"/__bench/"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nServer: bench\r\n\r\n"
NO_CONTENT_CLOSE = b"HTTP/1.1 204 No Content\r\nServer: bench\r\nConnection: close\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Stats:
    """What arrived since the last reset."""

    requests: int = 0
    body_bytes: int = 0
    first: float | None = None
    last: float | None = None
    latency: bool = False
    hang: bool = False
    connections: int = 0
    max_connections: int = 0
    ids: set[bytes] = field(default_factory=set)
    samples: list[float] = field(default_factory=list)

    def reset(self, latency: bool) -> None:
        self.requests, self.body_bytes, self.first, self.last = 0, 0, None, None
        self.latency = latency
        self.max_connections = self.connections
        self.ids = set()
        self.samples = []

    def record(self, webhook_id: bytes | None, body: bytes, now: float,
               target: bytes = b"") -> None:
        self.requests += 1
        self.body_bytes += len(body)
        if self.first is None:
            self.first = now
        self.last = now
        if webhook_id is not None:
            # One message fanned out to several connectors keeps its webhook-id: the path
            # (one per connector in the fan-out benchmarks) tells the copies apart.
            self.ids.add(target + b" " + webhook_id)
        if self.latency and body[:1] == b"{":
            try:
                sent = orjson.loads(body).get("payload")
            except orjson.JSONDecodeError:
                return
            if isinstance(sent, float):
                self.samples.append(now - sent)

    def control(self, method: bytes, target: bytes) -> bytes:
        path, _, query = target.partition(b"?")
        name = path[len(CONTROL):]
        if name == b"stats":
            doc: object = {
                "requests": self.requests, "unique": len(self.ids), "bytes": self.body_bytes,
                "first": self.first, "last": self.last, "latency": self.latency,
                "connections": self.connections, "maxConnections": self.max_connections,
            }
        elif name == b"reset" and method == b"POST":
            self.reset(latency=b"latency=1" in query)
            doc = {"reset": True, "latency": self.latency}
        elif name == b"samples":
            doc = {"samples": self.samples}
        else:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        body = orjson.dumps(doc)
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)


def _chunked(buf: bytearray, start: int) -> tuple[bytes, int] | None:
    """A complete chunked body starting at ``start``: (body, end offset), or None if partial."""
    parts: list[bytes] = []
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip() or b"0", 16)
        pos = eol + 2
        if size == 0:
            if buf[pos:pos + 2] == b"\r\n":
                return b"".join(parts), pos + 2
            end = buf.find(b"\r\n\r\n", pos)  # trailer fields, then an empty line
            return None if end < 0 else (b"".join(parts), end + 4)
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos:pos + size]))
        pos += size + 2


class HttpReceiver(asyncio.Protocol):
    """One connection: parses as many requests as the buffer holds, answers them in order."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.continued = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.stats.connections += 1
        self.stats.max_connections = max(self.stats.max_connections, self.stats.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.connections -= 1

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        now = time.time()
        out: list[bytes] = []
        close = False
        while not close:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buf) > MAX_HEAD:
                    out.append(BAD_REQUEST)
                    close = True
                break
            lines = bytes(self.buf[:head_end]).split(b"\r\n")
            try:
                method, target, version = lines[0].split(b" ", 2)
            except ValueError:
                out.append(BAD_REQUEST)
                close = True
                break
            length, chunked, expect = 0, False, False
            keep_alive = version == b"HTTP/1.1"
            webhook_id: bytes | None = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value) if value.strip().isdigit() else -1
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    token = value.strip().lower()
                    keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
                elif name == b"webhook-id":
                    webhook_id = value.strip()
                elif name == b"expect":
                    expect = value.strip().lower() == b"100-continue"
            if length < 0:
                out.append(BAD_REQUEST)
                close = True
                break
            start = head_end + 4
            if chunked:
                found = _chunked(self.buf, start)
                if found is None:
                    break
                body, end = found
            else:
                end = start + length
                if len(self.buf) < end:
                    if expect and not self.continued:
                        out.append(CONTINUE)
                        self.continued = True
                    break
                body = bytes(self.buf[start:end])
            del self.buf[:end]
            self.continued = False
            close = not keep_alive
            if target.startswith(CONTROL):
                out.append(self.stats.control(method, target))
            else:
                self.stats.record(webhook_id, body, now, target)
                if not self.stats.hang:
                    out.append(NO_CONTENT if keep_alive else NO_CONTENT_CLOSE)
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


async def serve(host: str, port: int, hang: bool = False) -> None:
    stats = Stats(hang=hang)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = await loop.create_server(lambda: HttpReceiver(stats), sock=sock, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening {sock.getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hang", action="store_true",
                        help="read every request, answer none (an endpoint that hangs)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, args.hang))
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.hang))
    sys.exit(0)


if __name__ == "__main__":
    main()
