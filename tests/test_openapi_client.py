"""A Python client generated from the running service's /openapi.json works.

openapi-python-client (a dev dependency) generates the client into a temporary folder with the
command the README shows; the generator must say nothing about the document (a warning means a
part of the API is missing from the client). The client then creates a gateway, a connector
and a trigger, sends a message with the gateway's token, reads the message log, and reads an
error in the documented shape.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import Org, Receiver

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "hookstream_client"


@pytest.fixture
def client_package(tmp_path: Path) -> Iterator[Path]:
    """Where the client is generated; imported from there, and forgotten after the test."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path / PACKAGE
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


async def generate(base_url: str, output: Path) -> str:
    """Run the generator against the service's /openapi.json; its output."""
    assert GENERATOR.exists(), f"{GENERATOR} is missing: make install-dev installs it"
    # Its post-generation hooks run ruff (a dependency of the generator) from PATH.
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = await asyncio.create_subprocess_exec(
        str(GENERATOR), "generate", "--url", f"{base_url}/openapi.json", "--meta", "none",
        "--output-path", str(output), cwd=output.parent, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    text = out.decode(errors="replace")
    assert process.returncode == 0, text
    return text


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def test_a_generated_client_manages_gateways_connectors_triggers_and_reads_the_log(
    org: Org, receiver: Receiver, client_package: Path
) -> None:
    said = await generate(org.service.base_url, client_package)
    # Anything besides "Generating <folder>" is a warning: about the document, or that the
    # ruff hooks could not run.
    assert [line for line in said.splitlines()
            if line.strip() and not line.startswith("Generating ")] == [], said

    package = importlib.import_module(PACKAGE)
    models = module("models")
    api = package.AuthenticatedClient(base_url=org.service.base_url, token=org.api_key)

    created = await module("api.gateways.create_gateway").asyncio_detailed(
        client=api, body=models.GatewayCreate(name="Boiler room", external_id="tower-0042"))
    assert created.status_code == 201, created.content
    gateway: Any = created.parsed
    assert gateway["name"] == "Boiler room" and gateway["externalId"] == "tower-0042"
    assert gateway["ingestToken"]

    listed = await module("api.gateways.list_gateways").asyncio(client=api)
    assert [g["id"] for g in listed["items"]] == [gateway["id"]]

    created = await module("api.connectors.create_connector").asyncio_detailed(
        client=api, body=models.ConnectorCreate(
            name="receiver", base_url=receiver.url, active=True,
            routes=models.Routes(values="/values", events="/events", alarms="/alarms"),
            authentication=models.AuthBearer(type_="bearer", token="t0ken")))
    assert created.status_code == 201, created.content
    connector: Any = created.parsed
    assert connector["secret"].startswith("whsec_")

    created = await module("api.triggers.create_trigger").asyncio_detailed(
        connector["id"], client=api, body=models.TriggerCreate(
            kinds=[models.TriggerCreateKindsItem.VALUES], gateway_ids=[gateway["id"]]))
    assert created.status_code == 201, created.content

    gateway_api = package.AuthenticatedClient(base_url=org.service.base_url,
                                              token=gateway["ingestToken"])
    accepted = await module("api.ingest.ingest_messages").asyncio(
        models.IngestMessagesKind.VALUES, client=gateway_api, body=models.DatastreamMessage(
            device_id="thermo-1", property_="temperature", timestamp=1_700_000_000_000,
            payload=21.5))
    assert isinstance(accepted, models.IngestMessagesResponse202), accepted
    assert accepted.accepted == 1

    await receiver.wait_for(1)  # the trigger routed it to the connector, which delivered it
    assert receiver.received[0].path == "/values"
    assert receiver.received[0].headers["Authorization"] == "Bearer t0ken"

    log = await module("api.messages.list_messages").asyncio(client=api, gateway_id=gateway["id"])
    [message] = log["items"]
    assert message["id"] == accepted.ids[0]
    assert message["deviceId"] == "thermo-1" and message["message"]["payload"] == 21.5
    assert [d["connectorId"] for d in message["deliveries"]] == [connector["id"]]
    assert log["nextCursor"] is None

    # An error comes back parsed, in the documented shape.
    missing = await module("api.gateways.get_gateway").asyncio_detailed("gw_missing", client=api)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Error)
    assert missing.parsed.error.code == "not_found" and missing.parsed.error.message

    await api.get_async_httpx_client().aclose()
    await gateway_api.get_async_httpx_client().aclose()
