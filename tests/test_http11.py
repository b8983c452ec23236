"""The webhook client (``pipeline/deliver/http11.py`` behind ``Sender``) against real servers:
an aiohttp app, and raw asyncio servers that answer in the ways a receiver may (chunked, a
body ending with the connection, hanging up, answering too much)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hookstream.pipeline.deliver.client import RESPONSE_EXCERPT, Sender
from tests.support import running_receiver


def sender(**kw: float) -> Sender:
    return Sender(allow_private=True, connect_timeout=kw.get("connect", 2.0),
                  total_timeout=kw.get("total", 5.0), max_connections=8)


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[bytes, asyncio.StreamWriter], bytes | None],
) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A TCP server that reads one request head at a time and writes ``answer(head)``
    (None: hang up without answering). Yields its URL, the heads read, and a connection
    counter."""
    heads: list[bytes] = []
    connections = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections[0] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                heads.append(head)
                reply = answer(head, writer)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", heads, connections
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def test_one_connection_carries_many_posts_and_the_headers_arrive() -> None:
    async with raw_server(lambda head, _: ok(b"fine")) as (url, heads, connections):
        client = sender()
        try:
            for i in range(20):
                result = await client.post(url + f"/hook?n={i}", {"x-test": "yes"}, b"{}")
                assert result.status_code == 200 and result.response_body == "fine"
        finally:
            await client.close()
    assert connections == [1], "keep-alive: every POST went over the first connection"
    first = heads[0].decode()
    assert first.startswith("POST /hook?n=0 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{url.rsplit(':', 1)[1]}\r\n" in first
    assert "x-test: yes\r\n" in first and "Content-Length: 2\r\n" in first


async def test_a_chunked_answer_is_read_and_excerpted() -> None:
    big = b"a" * 5000
    chunked = (b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
               + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    async with raw_server(lambda *_: chunked) as (url, _, connections):
        client = sender()
        try:
            for _ in range(3):
                result = await client.post(url, {}, b"{}")
                assert result.status_code == 500 and result.retry_after == "7"
                assert result.response_body == "a" * RESPONSE_EXCERPT
        finally:
            await client.close()
    assert connections == [1]


async def test_a_body_that_ends_with_the_connection() -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with raw_server(lambda *_: reply) as (url, _, connections):
        client = sender()
        try:
            for _ in range(2):
                result = await client.post(url, {}, b"{}")
                assert result.status_code == 200 and result.response_body == "until the end"
        finally:
            await client.close()
    assert connections == [2], "Connection: close is not reused"


async def test_a_huge_answer_is_cut_and_its_connection_dropped() -> None:
    huge = b"b" * (1024 * 1024)
    async with raw_server(lambda *_: ok(huge)) as (url, _, connections):
        client = sender()
        try:
            for _ in range(2):
                result = await client.post(url, {}, b"{}")
                assert result.status_code == 200
                assert result.response_body == "b" * RESPONSE_EXCERPT
        finally:
            await client.close()
    assert connections == [2]


async def test_a_hang_up_is_a_connect_error_and_the_next_post_connects_anew() -> None:
    answers = iter([None, ok()])
    async with raw_server(lambda *_: next(answers)) as (url, _, connections):
        client = sender()
        try:
            first = await client.post(url, {}, b"{}")
            assert first.status_code is None and not first.timed_out
            assert first.error is not None and first.error.startswith("ConnectError: ")
            second = await client.post(url, {}, b"{}")
            assert second.status_code == 200
        finally:
            await client.close()
    assert connections == [2]


async def test_a_server_that_never_answers_times_out() -> None:
    async with raw_server(lambda head, writer: b"") as (url, _, _):
        client = sender(total=0.3)
        try:
            result = await client.post(url, {}, b"{}")
        finally:
            await client.close()
    assert result.timed_out and result.status_code is None
    assert result.error is not None and result.error.startswith("TimeoutError: ")


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = sender()
    try:
        result = await client.post(f"http://127.0.0.1:{port}/", {}, b"{}")
    finally:
        await client.close()
    assert result.error is not None and result.error.startswith("ConnectError: ")
    assert f"127.0.0.1:{port}" in result.error


async def test_a_header_with_a_line_break_is_never_sent() -> None:
    async with raw_server(lambda *_: ok()) as (url, heads, _):
        client = sender()
        try:
            result = await client.post(url, {"x-evil": "a\r\nx-injected: 1"}, b"{}")
        finally:
            await client.close()
    assert result.status_code is None and result.error and "line break" in result.error
    assert heads == []


async def test_an_interim_answer_is_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"final", b"X-Final: 1\r\n")
    async with raw_server(lambda *_: reply) as (url, _, _):
        client = sender()
        try:
            result = await client.post(url, {}, b"{}")
        finally:
            await client.close()
    assert result.status_code == 200 and result.response_body == "final"


async def test_concurrent_posts_to_an_aiohttp_receiver() -> None:
    async with running_receiver() as receiver:
        client = sender()
        try:
            results = await asyncio.gather(*(
                client.post(receiver.url + f"/c/{i}", {"content-type": "application/json"},
                            b'{"n": %d}' % i) for i in range(200)))
        finally:
            await client.close()
    assert all(r.status_code == 204 for r in results), results[:3]
    assert sorted(r.path for r in receiver.received) == sorted(f"/c/{i}" for i in range(200))


async def test_the_client_runs_on_uvloop() -> None:
    # Workers run on uvloop, whose transports are not asyncio's classes.
    import uvloop

    async with running_receiver() as receiver:
        async def posts() -> list[int | None]:
            client = sender()
            try:
                return [(await client.post(receiver.url + "/uv", {}, b"{}")).status_code
                        for _ in range(5)]
            finally:
                await client.close()

        statuses = await asyncio.to_thread(uvloop.run, posts())
    assert statuses == [204] * 5 and len(receiver.received) == 5


# --- TLS ---------------------------------------------------------------------------------

def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_is_verified(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="over tls")

    app = web.Application()
    app.router.add_post("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        client = sender()
        try:
            refused = await client.post(f"https://127.0.0.1:{port}/", {}, b"{}")
        finally:
            await client.close()
        # Not signed by a trusted authority: no request is made.
        assert refused.status_code is None and refused.error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in refused.error, refused.error

        trusting = Sender(allow_private=True, connect_timeout=2.0, total_timeout=5.0,
                          max_connections=2,
                          ssl_context=ssl.create_default_context(cafile=str(cert)))
        try:
            result = await trusting.post(f"https://127.0.0.1:{port}/", {}, b"{}")
        finally:
            await trusting.close()
        assert result.status_code == 200 and result.response_body == "over tls"
    finally:
        await runner.cleanup()
