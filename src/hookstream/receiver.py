"""``hookstream receive``: a small webhook server that checks signatures and prints what came."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson
from aiohttp import web

from hookstream.deliver.signing import SignatureMismatch, verify


def make_app(secret: str | None, emit: Callable[[str], None], done: asyncio.Event,
             count: int | None) -> web.Application:
    seen = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal seen
        body = await request.read()
        headers = dict(request.headers)
        status = "unsigned"
        if secret is not None:
            try:
                verify(secret, headers, body, now=int(time.time()))
                status = "signature verified"
            except SignatureMismatch as exc:
                emit(f"REJECTED {request.method} {request.path}: {exc}")
                return web.json_response({"error": str(exc)}, status=401)
        try:
            shown = orjson.dumps(orjson.loads(body)).decode()
        except orjson.JSONDecodeError:
            shown = body[:200].decode("utf-8", "replace")
        emit(f"{request.method} {request.path} webhook-id={headers.get('webhook-id', '-')} "
             f"({status}) {shown}")
        seen += 1
        if count is not None and seen >= count:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(host: str, port: int, secret: str | None, count: int | None,
                emit: Callable[[str], None]) -> None:
    done = asyncio.Event()
    runner = web.AppRunner(make_app(secret, emit, done, count), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    emit(f"listening on http://{host}:{port} "
         f"({'checking signatures' if secret else 'not checking signatures'})")
    try:
        await done.wait()
        await asyncio.sleep(0.1)  # let the last answer leave
    finally:
        await runner.cleanup()
