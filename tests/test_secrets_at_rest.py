"""Secrets at rest: nothing given to (or shown by) the API can be read back from the database
files, the logs or later API answers; ``hookstream secrets rotate-key`` re-encrypts every stored
secret under a new key while the service runs. Real service, real processes, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from standardwebhooks.webhooks import Webhook

from hookstream.errors import ConfigurationError, StorageError
from hookstream.security.secretbox import SecretBox, UndecryptableSecret
from hookstream.storage.database import Database
from hookstream.storage.queries import ENCRYPTED_COLUMNS
from hookstream.storage.repository import Repository
from hookstream.storage.tables import metadata
from tests.console_support import (
    Client,
    browser,
    csrf_of,
    form_action,
    location_params,
    make_user,
    origin,
    sign_in,
)
from tests.support import (
    ADMIN_KEY,
    SECRETS_KEY,
    Org,
    Received,
    Receiver,
    Service,
    SqliteTemplate,
    base_settings,
    eventually,
    hookstream_cmd,
    running_receiver,
    running_service,
    settings_env,
)

K1 = SECRETS_KEY  # what the test databases' services use
K2 = "7Xl0mZ8Hq3rJ5vN1cT9pW2yB6aE4sD0fG8kL3uQ1oI4="
K3 = "bM2nV5cX8zA1sD4fG7hJ0kL3qW6eR9tY2uI5oP8aS1c="


def signing_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def marked(prefix: str) -> str:
    """A distinctive secret: found only where it leaked."""
    return f"{prefix}-{secrets.token_hex(16)}"


# --- SecretBox ---------------------------------------------------------------------------

def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = SecretBox(K1), SecretBox(f"{K2},{K1}")
    stored = old.encrypt("whsec_old")
    assert new.decrypt(stored) == "whsec_old"
    assert not new.is_primary(stored) and old.is_primary(stored)
    fresh = new.encrypt("whsec_new")
    assert new.is_primary(fresh) and SecretBox(K2).decrypt(fresh) == "whsec_new"
    with pytest.raises(StorageError, match="cannot be decrypted"):
        old.decrypt(fresh)
    rotated = new.rotate(stored)
    assert new.is_primary(rotated) and SecretBox(K2).decrypt(rotated) == "whsec_old"
    with pytest.raises(UndecryptableSecret):
        SecretBox(K3).rotate(stored)
    # Spaces around the commas are forgiven.
    assert SecretBox(f" {K2} , {K1} ").key_count == 2


def test_a_malformed_key_is_named_by_its_position_never_shown() -> None:
    with pytest.raises(ConfigurationError) as one:
        SecretBox("not-a-key")
    assert str(one.value) == (
        "HOOKSTREAM_SECRETS_KEY must be a Fernet key (32 url-safe base64 bytes)"
    )
    with pytest.raises(ConfigurationError, match="key 2 of 3") as many:
        SecretBox(f"{K2},{K1[:-4]},{K3}")
    for key in (K1, K2, K3, K1[:-4]):
        assert key not in str(many.value)
    with pytest.raises(ConfigurationError, match="key 3 of 3"):
        SecretBox(f"{K2},{K1},")


def test_every_enc_column_of_the_schema_is_in_the_rotation_list() -> None:
    in_schema = {
        (table.name, column.name)
        for table in metadata.tables.values()
        for column in table.columns
        if column.name.endswith("_enc")
    }
    listed = {(table, column) for table, columns in ENCRYPTED_COLUMNS.items()
              for column in columns}
    assert in_schema == listed, "add every encrypted column to queries.ENCRYPTED_COLUMNS"
    for table in ENCRYPTED_COLUMNS:
        assert [c.name for c in metadata.tables[table].primary_key] == ["id"]


async def test_the_migrated_database_has_no_other_enc_column(database_url: str) -> None:
    db = Database(base_settings(database_url), pool_size=1)
    try:
        async with db.read() as conn:
            found = await conn.run_sync(lambda sync: {
                (table, column["name"])
                for table in inspect(sync).get_table_names()
                for column in inspect(sync).get_columns(table)
                if column["name"].endswith("_enc")
            })
    finally:
        await db.dispose()
    assert found == {(t, c) for t, cols in ENCRYPTED_COLUMNS.items() for c in cols}


# --- everything the API is given ----------------------------------------------------------

@dataclass
class Given:
    """Every secret given to or shown by the API, by what it is."""

    values: dict[str, str] = field(default_factory=dict)
    basic: list[tuple[str, str]] = field(default_factory=list)  # (username, password)

    def add(self, label: str, value: str) -> str:
        assert value, label
        self.values[label] = value
        return value

    def text_forms(self) -> Iterator[tuple[str, str]]:
        """Each secret as it could appear in text: itself, a whsec_ key's base64, basic auth."""
        for label, value in self.values.items():
            yield label, value
            if value.startswith("whsec_") and len(value) > 20:
                yield f"{label} (base64 after whsec_)", value.removeprefix("whsec_")
        for user, password in self.basic:
            yield f"basic auth of {user}", base64.b64encode(f"{user}:{password}".encode()).decode()

    def byte_forms(self) -> Iterator[tuple[str, bytes]]:
        """The text forms as UTF-8, and a whsec_ secret's key bytes raw and in hex."""
        for label, value in self.text_forms():
            yield label, value.encode()
        for label, value in self.values.items():
            try:
                key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except ValueError:
                continue
            if value.startswith("whsec_") and len(key) >= 24:
                yield f"{label} (key bytes)", key
                yield f"{label} (key bytes in hex)", key.hex().encode()


def leaks(given: Given, haystack: str) -> list[str]:
    return [label for label, needle in given.text_forms() if needle in haystack]


def byte_leaks(given: Given, haystack: bytes) -> list[str]:
    return [label for label, needle in given.byte_forms() if needle in haystack]


def answering(item: Received, _: int) -> web.StreamResponse:
    """A receiver that answers Event Grid's subscription handshake, and 204 to the rest."""
    if item.headers.get("aeg-event-type") == "SubscriptionValidation":
        code = orjson.loads(item.body)[0]["data"]["validationCode"]
        return web.json_response({"validationResponse": code})
    return web.Response(status=204)


def refusing(_: Received, __: int) -> web.StreamResponse:
    return web.Response(status=401, text="who are you?")


def token_refused(_: Received, __: int) -> web.StreamResponse:
    return web.json_response({"error": "invalid_client"}, status=401)


async def created(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 201), resp.text
    body: dict[str, Any] = resp.json()
    return body


@dataclass
class World:
    given: Given
    org: Org
    api: httpx.AsyncClient  # with the organization's current API key
    app_headers: dict[str, str]  # subscription key and access token of the third-party app
    web: httpx.AsyncClient  # a browser signed in to the console
    connector_ids: list[str]
    gateway_id: str
    plant_id: str
    refused_requests: list[httpx.Response]  # bad input carrying secrets: 4xx


async def oauth_code(service: Service, web_client: httpx.AsyncClient, client: Client) -> str:
    """Authorize ``client`` as the signed-in user; the code the redirect carries."""
    page = await web_client.get("/oauth2/authorize", params={
        "response_type": "code", "client_id": client.id, "redirect_uri": client.redirect_uris[0],
        "scope": "comfort.read comfort.write", "state": "st"})
    assert page.status_code == 200, page.text
    answer = await web_client.post(
        form_action(page.text), data={"csrf_token": csrf_of(page.text), "decision": "allow"},
        headers={"Origin": origin(service)},
    )
    assert answer.status_code in (302, 303), answer.text
    return location_params(answer)["code"]


async def build_world(
    service: Service, org: Org, ok: Receiver, refuser: Receiver, tokens: Receiver
) -> World:
    """Give the API one of every secret it takes, and let deliveries succeed and fail."""
    given = Given()
    given.add("admin key", ADMIN_KEY)
    given.add("API key", org.api_key)
    api = org.api

    gateway = await created(await api.post("/api/v1/gateways", json={"name": "Tower"}))
    given.add("ingest token", gateway["ingestToken"])
    rotated = await created(await api.post(f"/api/v1/gateways/{gateway['id']}/rotate-token"))
    given.add("rotated ingest token", rotated["ingestToken"])

    routes = {"values": "/values", "events": "/events", "alarms": "/alarms"}
    connector_ids: list[str] = []

    async def connector(base_url: str, **fields: Any) -> dict[str, Any]:
        body = {"name": "c", "baseUrl": base_url, "routes": routes, "active": True, **fields}
        con = await created(await api.post("/api/v1/connectors", json=body))
        given.add(f"secret of connector {len(connector_ids) + 1}", con["secret"])
        connector_ids.append(con["id"])
        await created(await api.post(f"/api/v1/connectors/{con['id']}/triggers",
                                     json={"kinds": ["values"], "allGateways": True}))
        return con

    password = given.add("basic password", marked("pw"))
    given.basic.append(("hookstream", password))
    basic = await connector(
        ok.url, secret=signing_secret(),
        authentication={"type": "basic", "username": "hookstream", "password": password},
        headers={"X-Tenant-Key": given.add("static header value", marked("hdr"))},
    )
    await connector(refuser.url, authentication={
        "type": "bearer", "token": given.add("bearer token", marked("bearer"))})
    api_key = await connector(ok.url, authentication={
        "type": "api_key", "header": "X-Api-Key", "value": given.add("api_key value",
                                                                     marked("apikey"))})
    await connector(ok.url, authentication={
        "type": "oauth2_client_credentials", "tokenUrl": f"{tokens.url}/token",
        "clientId": "hookstream-client", "clientSecret": given.add("OAuth2 client secret (out)",
                                                                   marked("ocs"))})
    # Changed credentials: the answers to the changes show none of them.
    password2 = given.add("changed basic password", marked("pw2"))
    given.basic.append(("hookstream2", password2))
    for change in (
        {"authentication": {"type": "basic", "username": "hookstream2", "password": password2}},
        {"headers": {"X-Other-Key": given.add("changed static header", marked("hdr2"))}},
    ):
        resp = await api.patch(f"/api/v1/connectors/{api_key['id']}", json=change)
        assert resp.status_code == 200, resp.text
        assert leaks(given, resp.text) == [], resp.text
    rotated_secret = given.add("rotated signing secret", signing_secret())
    resp = await api.post(f"/api/v1/connectors/{basic['id']}/rotate-secret",
                          json={"secret": rotated_secret})
    assert resp.status_code == 200 and resp.json()["secret"] == rotated_secret, resp.text

    alerts = await api.put("/api/v1/alerts", json={
        "url": f"{ok.url}/alerts", "secret": given.add("alerts secret", signing_secret())})
    assert alerts.status_code == 200, alerts.text

    # Bad input that carries secrets: refused without repeating them.
    refused = [
        await api.post("/api/v1/connectors", json={
            "name": "bad", "baseUrl": ok.url, "routes": routes,
            "secret": given.add("malformed secret", "whsec_!" + marked("bad"))}),
        await api.post("/api/v1/connectors", json={
            "name": "bad", "baseUrl": ok.url, "routes": routes, "authentication": {
                "type": "bearer", "token": given.add("token with a line break",
                                                     marked("nl") + "\nx")}}),
        await api.post("/api/v1/connectors", json={
            "name": "bad", "baseUrl": f"http://u:{given.add('URL password', marked('url'))}"
                                      f"@127.0.0.1:9/", "routes": routes}),
        await service.client.get("/api/v1/gateways", headers={
            "Authorization": f"Bearer {given.add('wrong API key', marked('hsk_wrong'))}"}),
    ]
    assert all(400 <= r.status_code < 500 for r in refused), [r.text for r in refused]

    # Two messages, one with each ingest token (the first is in its overlap).
    for token in (gateway["ingestToken"], rotated["ingestToken"]):
        resp = await org.ingest(token, "values", {
            "deviceId": "d1", "property": "temperature", "timestamp": 1_700_000_000_000,
            "payload": 21})
        assert resp.status_code == 202, resp.text

    # The organization's new API key; the old one works during its overlap.
    new_key = (await created(await api.post("/api/v1/organization/rotate-api-key")))["apiKey"]
    given.add("rotated API key", new_key)
    api = org.service.org_client(new_key)

    # The thermostat cloud: subscription key, OAuth2 client, user, tokens, subscription.
    key = await created(await api.post("/api/v1/subscription-keys", json={"name": "dev"}))
    given.add("subscription key", key["key"])
    key2 = await created(await api.post(f"/api/v1/subscription-keys/{key['id']}/rotate"))
    given.add("rotated subscription key", key2["key"])
    client_body = await created(await api.post("/api/v1/oauth-clients", json={
        "name": "Comfort", "redirectUris": ["https://app.example/callback"]}))
    client = Client(client_body["clientId"], client_body["clientSecret"],
                    ["https://app.example/callback"])
    given.add("our OAuth2 client secret", client_body["clientSecret"])
    user_password = given.add("console password", marked("console"))
    await make_user(service, org.id, "owner@acme.example", user_password)
    web_client = browser(service)
    assert (await sign_in(web_client, "owner@acme.example", user_password)).status_code == 303
    assert client.secret is not None
    auth = httpx.BasicAuth(client.id, client.secret)
    first = await created(await service.client.post("/oauth2/token", auth=auth, data={
        "grant_type": "authorization_code", "code": await oauth_code(service, web_client, client),
        "redirect_uri": client.redirect_uris[0]}))
    given.add("access token", first["access_token"])
    given.add("refresh token", first["refresh_token"])
    second = await created(await service.client.post("/oauth2/token", auth=auth, data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}))
    given.add("refreshed access token", second["access_token"])
    given.add("refreshed refresh token", second["refresh_token"])
    app_headers = {"Ocp-Apim-Subscription-Key": key2["key"],
                   "Authorization": f"Bearer {second['access_token']}"}

    plant = await created(await api.post("/api/v1/plants", json={"name": "Home"}))
    await created(await api.post(f"/api/v1/plants/{plant['id']}/modules",
                                 json={"name": "Living room"}))
    plants = await service.client.get("/smarther/v2.0/plants", headers=app_headers)
    assert plants.status_code == 200, plants.text
    subscription = await created(await service.client.post(
        f"/smarther/v2.0/plants/{plant['id']}/subscription", headers=app_headers,
        json={"EndPointUrl": f"{ok.url}/notify"}))
    given.add("subscription signing secret", subscription["signingSecret"])

    # Until every delivery has its outcome: the 401 and the refused token give up, alerting.
    async def settled() -> bool:
        deliveries = await org.deliveries()
        failed = [d for d in deliveries if d["status"] == "failed"]
        open_ = [d for d in deliveries if d["status"] in ("pending", "held")]
        alerted = any(r.path.startswith("/alerts") for r in ok.received)
        return len(failed) >= 4 and not open_ and alerted

    await eventually(settled, timeout=60)
    return World(given, org, api, app_headers, web_client, connector_ids, gateway["id"],
                 plant["id"], refused)


@pytest.fixture
async def receivers() -> Any:
    async with running_receiver(answering) as ok, running_receiver(refusing) as refuser, \
            running_receiver(token_refused) as tokens:
        yield ok, refuser, tokens


# --- a. the database files ---------------------------------------------------------------

async def database_dump(service: Service) -> bytes:
    """PostgreSQL: every row of every table of the public schema, as text."""
    parts: list[bytes] = []
    async with service.runtime.db.read() as conn:
        tables = (await conn.execute(text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        ))).scalars().all()
        assert "connectors" in tables and "oauth_clients" in tables
        for table in tables:
            rows = (await conn.execute(text(f'SELECT t::text FROM "{table}" t'))).scalars()
            parts.extend(f"{table}: {row}".encode() for row in rows)
    return b"\n".join(parts)


def sqlite_files(database_url: str) -> dict[str, bytes]:
    path = Path(str(make_url(database_url).database))
    return {p.name: p.read_bytes() for p in
            (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()}


async def test_no_secret_given_to_the_api_is_in_the_database(
    service: Service, org: Org, backend: str, receivers: Any
) -> None:
    world = await build_world(service, org, *receivers)
    given = world.given
    # The connectors' secrets are there, encrypted: the search would find them otherwise.
    async with service.runtime.db.read() as conn:
        stored = await Repository(conn).encrypted_values("connectors", "", 100)
    assert len(stored) == 6 and all(r.secret_enc.startswith("gAAAAA") for r in stored)

    if backend == "sqlite":
        files = sqlite_files(service.settings.database_url)
        assert "hookstream.db-wal" in files, "the WAL is read too, not only the main file"
        for name, data in files.items():
            assert byte_leaks(given, data) == [], name
    else:
        dump = await database_dump(service)
        assert world.org.id.encode() in dump and world.gateway_id.encode() in dump
        assert byte_leaks(given, dump) == []
    await world.api.aclose()
    await world.web.aclose()


async def test_no_secret_in_the_sqlite_files_after_a_checkpoint(
    sqlite_template: SqliteTemplate, tmp_path: Path, receivers: Any
) -> None:
    settings = base_settings(sqlite_template.new_database(tmp_path), data_dir=tmp_path / "var")
    async with running_service(settings) as service:
        org = await service.new_org()
        world = await build_world(service, org, *receivers)
        await world.api.aclose()
        await world.web.aclose()
        await org.api.aclose()
    # Closed: the WAL is checkpointed into the main file, which now holds everything.
    files = sqlite_files(settings.database_url)
    assert org.id.encode() in files["hookstream.db"]
    for name, data in files.items():
        assert byte_leaks(world.given, data) == [], name


# --- b. logs and API answers ------------------------------------------------------------

async def test_no_secret_in_the_logs_or_in_api_answers_after_creation(
    service: Service, org: Org, receivers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Everything at INFO, hookstream's own loggers at DEBUG (the handler takes the last level).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="hookstream")
    world = await build_world(service, org, *receivers)
    given, api = world.given, world.api

    for resp in world.refused_requests:
        assert leaks(given, resp.text) == [], resp.text

    answers: dict[str, str] = {}

    async def get(path: str, client: httpx.AsyncClient = api, **params: Any) -> Any:
        resp = await client.get(path, params=params or None)
        assert resp.status_code == 200, (path, resp.text)
        answers[path] = resp.text
        return resp.json() if "json" in resp.headers.get("content-type", "") else None

    connectors = await get("/api/v1/connectors", limit=1000)
    assert {c["id"] for c in connectors["items"]} == set(world.connector_ids)
    for cid in world.connector_ids:
        await get(f"/api/v1/connectors/{cid}")
        await get(f"/api/v1/connectors/{cid}/triggers")
    await get("/api/v1/alerts")
    await get("/api/v1/gateways")
    await get(f"/api/v1/gateways/{world.gateway_id}")
    await get("/api/v1/subscription-keys")
    await get("/api/v1/oauth-clients")
    audit = await get("/api/v1/audit-events", limit=1000)
    assert {"connector.secret_rotated", "gateway.token_rotated", "api_key.rotated"} <= {
        e["action"] for e in audit["items"]}
    messages = await get("/api/v1/messages", limit=1000)
    assert len(messages["items"]) == 2
    for message in messages["items"]:
        await get(f"/api/v1/messages/{message['id']}")
    deliveries = await get("/api/v1/deliveries", limit=1000)
    assert {d["status"] for d in deliveries["items"]} >= {"delivered", "failed"}
    attempts = 0
    for delivery in deliveries["items"]:
        one = await get(f"/api/v1/deliveries/{delivery['id']}")
        attempts += len(one["attempts"])
    assert attempts >= 4 * 2
    await get("/api/v1/plants")
    await get(f"/api/v1/plants/{world.plant_id}/modules")
    async with httpx.AsyncClient(
        base_url=service.base_url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as admin, httpx.AsyncClient(base_url=service.base_url, headers=world.app_headers) as app:
        await get("/api/v1/organizations", admin)
        await get("/smarther/v2.0/subscription", app)
    await get("/console", world.web)
    await get("/metrics", service.client)
    for path, body in answers.items():
        assert leaks(given, body) == [], path

    logged = "\n".join(
        record.getMessage() + (f"\n{record.exc_text}" if record.exc_text else "")
        for record in caplog.records
    )
    # The failures were logged (the search below looks at real lines)...
    assert "attempt" in logged and world.connector_ids[1] in logged, logged[-2000:]
    # ... with none of the secrets.
    assert leaks(given, logged) == [], logged[-2000:]
    await api.aclose()
    await world.web.aclose()


# --- c. rotate-key end to end ------------------------------------------------------------

@dataclass
class Done:
    code: int
    stdout: str
    stderr: str


async def rotate_key_cli(settings: Any, keys: str, cwd: Path, *args: str) -> Done:
    """``hookstream secrets rotate-key`` as a process, while this event loop keeps serving."""
    env = settings_env(settings, HOOKSTREAM_SECRETS_KEY=keys)
    proc = await asyncio.create_subprocess_exec(
        *hookstream_cmd("secrets", "rotate-key", *args), env=env, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


def counts(stdout: str) -> dict[str, tuple[int, int]]:
    """{"connectors.secret_enc": (re-encrypted, already current), ...} from the output."""
    found = {}
    for line in stdout.splitlines():
        name, sep, rest = line.partition(": ")
        if sep and "re-encrypted" in rest:
            words = rest.split()
            found[name] = (int(words[0]), int(words[2]))
    return found


async def stored_values(service: Service) -> list[str]:
    async with service.runtime.db.read() as conn:
        rows = await Repository(conn).encrypted_values("connectors", "", 1000)
    return [v for r in rows for v in r[1:] if v is not None]


async def test_rotate_key_keeps_every_secret_under_the_new_key(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "var"
    under_k1 = base_settings(database_url, data_dir=data_dir)
    plain, renewed, previous = signing_secret(), signing_secret(), signing_secret()
    password, header = marked("pw"), marked("hdr")
    async with running_receiver() as receiver:
        # Under K1: two connectors (one in a signing-secret rotation) and an alerts endpoint.
        async with running_service(under_k1) as service:
            org = await service.new_org()
            gateway = await org.gateway()
            first = await org.connector(
                receiver.url, secret=plain, headers={"X-Tenant-Key": header},
                authentication={"type": "basic", "username": "hs", "password": password})
            second = await org.connector(receiver.url, secret=previous)
            resp = await org.api.post(f"/api/v1/connectors/{second['id']}/rotate-secret",
                                      json={"secret": renewed})
            assert resp.status_code == 200, resp.text
            for con in (first, second):
                await org.trigger(con["id"], ["values"], [gateway["id"]])
            resp = await org.api.put("/api/v1/alerts", json={"url": f"{receiver.url}/alerts",
                                                             "secret": signing_secret()})
            assert resp.status_code == 200, resp.text
            await org.api.aclose()
            org_id, api_key = org.id, org.api_key
            before = await stored_values(service)
            assert len(before) == 6 and all(SecretBox(K1).is_primary(v) for v in before)

        async def send(service: Service, n: int) -> list[Received]:
            org = Org(service, org_id, api_key, service.org_client(api_key))
            resp = await org.ingest(gateway["ingestToken"], "values", {
                "deviceId": "d1", "property": "temperature", "timestamp": n, "payload": n})
            assert resp.status_code == 202, resp.text
            await receiver.wait_for(2 * n)
            await org.api.aclose()
            return receiver.received[-2:]

        # Every process gets NEW,OLD; the command runs while they serve and deliver.
        both = base_settings(database_url, data_dir=data_dir, secrets_key=f"{K2},{K1}")
        async with running_service(both) as service:
            command = asyncio.create_task(
                rotate_key_cli(under_k1, f"{K2},{K1}", tmp_path, "--batch", "2"))
            await send(service, 1)
            done = await command
            out, err = done.stdout, done.stderr
            assert done.code == 0, err
            assert counts(out) == {
                "connectors.secret_enc": (3, 0), "connectors.previous_secret_enc": (1, 0),
                "connectors.auth_secret_enc": (1, 0), "connectors.headers_enc": (1, 0),
                "connectors.target_secret_enc": (0, 0),
            }, out
            assert "re-encrypted 6 values under the first of 2 keys" in out
            assert "Traceback" not in err and not err.strip()
            await send(service, 2)

            # Again: nothing left to do (values under the first key are skipped).
            again = await rotate_key_cli(under_k1, f"{K2},{K1}", tmp_path)
            assert again.code == 0, again.stderr
            assert counts(again.stdout)["connectors.secret_enc"] == (0, 3), again.stdout
            after = await stored_values(service)
            assert len(after) == 6 and all(SecretBox(K2).is_primary(v) for v in after)
            assert not any(SecretBox(K1).is_primary(v) for v in after)

        # K2 alone: the secrets survived, so signatures and credentials are the originals.
        async with running_service(base_settings(database_url, data_dir=data_dir,
                                                 secrets_key=K2)) as service:
            received = await send(service, 3)
        with_auth = next(r for r in received if "Authorization" in r.headers)
        without = next(r for r in received if "Authorization" not in r.headers)
        Webhook(plain).verify(with_auth.body, with_auth.headers)
        expected = base64.b64encode(f"hs:{password}".encode()).decode()
        assert with_auth.headers["Authorization"] == f"Basic {expected}"
        assert with_auth.headers["X-Tenant-Key"] == header
        # During the rotation both secrets sign: the previous one was re-encrypted too.
        Webhook(renewed).verify(without.body, without.headers)
        Webhook(previous).verify(without.body, without.headers)

    # K1 alone: nothing decrypts any more; it fails cleanly, naming no secret.
    async with running_service(under_k1) as service:
        api = service.org_client(api_key)
        resp = await api.post(f"/api/v1/connectors/{first['id']}/test", json={"kind": "values"})
        await api.aclose()
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "secrets_key_mismatch"
        assert plain not in resp.text and password not in resp.text
    # ... and a worker stops at once with that message, rather than send without its secret.
    async with running_service(under_k1, worker=False) as service:
        resp = await service.client.post(
            "/ingest/v1/values", headers={"Authorization": f"Bearer {gateway['ingestToken']}"},
            json={"deviceId": "d1", "property": "temperature", "timestamp": 4, "payload": 4})
        assert resp.status_code == 202, resp.text
    worker = await asyncio.create_subprocess_exec(
        *hookstream_cmd("worker"), env=settings_env(under_k1), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, worker_err = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode == 2, worker_err
    assert b"a stored secret cannot be decrypted" in worker_err
    assert b"Traceback" not in worker_err
    assert plain.encode() not in worker_err and password.encode() not in worker_err
    alone = await rotate_key_cli(under_k1, K1, tmp_path)
    assert alone.code == 1, (alone.stdout, alone.stderr)
    lines = alone.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in alone.stderr, alone.stderr
    assert lines[0].startswith("error: connectors.secret_enc of row con_"), lines[0]
    assert "cannot be decrypted" in lines[0]

    # No key of the list fits: the same one line, exit 1.
    stranger = Fernet.generate_key().decode()
    none_fit = await rotate_key_cli(under_k1, f"{stranger},{K3}", tmp_path)
    assert none_fit.code == 1
    assert len(none_fit.stderr.strip().splitlines()) == 1, none_fit.stderr
    assert "of row con_" in none_fit.stderr and "any of its 2 keys" in none_fit.stderr
    assert "Traceback" not in none_fit.stderr
    for key in (K1, K2, K3, stranger):
        assert key not in none_fit.stderr + none_fit.stdout


def test_rotate_key_refuses_a_malformed_key_list(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    env.update(HOOKSTREAM_SECRETS_KEY=f"{K2},not-a-key", HOOKSTREAM_DATA_DIR=str(tmp_path))
    done = subprocess.run(hookstream_cmd("secrets", "rotate-key"), env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "key 2 of 2" in done.stderr and K2 not in done.stderr
