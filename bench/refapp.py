"""The ingest reference: the same web stack as ``hookstream api`` with nothing behind it.

``python -m bench.refapp --port P`` serves ``POST /ingest/v1/{kind}`` with FastAPI on uvicorn,
configured as hookstream's API is (uvloop, uvicorn's default HTTP parser, no access log): it
checks for a bearer token, reads the body, parses it with orjson and answers
``202 {"accepted", "ids"}``. No validation, no database. ``GET /readyz`` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def create_app() -> FastAPI:
    app = FastAPI(title="bench reference")

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/ingest/v1/{kind}", status_code=202, response_class=JSON)
    async def ingest(kind: str, request: Request) -> JSON:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            raise HTTPException(401)
        data = orjson.loads(await request.body())
        count = len(data) if isinstance(data, list) else 1
        ids = [f"msg_{uuid.uuid4().hex}" for _ in range(count)]
        return JSON({"accepted": count, "ids": ids}, status_code=202)

    return app


async def serve(port: int) -> None:
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off", loop="none")
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port))
    except ImportError:
        asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
