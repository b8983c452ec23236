"""The console in a real headless Chromium, walking the source document's flow as a new user.

Sign in, add a gateway, 'Add a connector' to a local receiver, 'Create new trigger' for one
gateway, switch the toggle on, send a value through the ingest API, and find the delivery
in the log with its attempt; then a failing receiver's delivery is replayed from its page and
shows delivered; last, the connector is edited (an error first, then a saved change that the
next webhooks carry). The run saves screenshots of the main pages to docs/screenshots/ (the README
shows them).

Chromium runs once per session, driven by playwright from a thread with its own event loop:
the service under test runs in the test's loop, which must stay free while the browser waits
for its answers (a synchronous playwright, or one on the test's loop awaited step by step,
would work too, but this keeps the browser for the whole session). Each step is a coroutine
run on the browser's loop with ``chrome.run(...)``.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from tests.conftest import unavailable
from tests.console_support import PASSWORD, make_user
from tests.support import ROOT, Org, Received, Receiver, Service, eventually, running_receiver

T = TypeVar("T")

CHROMIUM = os.environ.get("HOOKSTREAM_TEST_CHROMIUM", "/usr/bin/chromium")
# Headless, and quiet on a closed network: no updates, sync, metrics or QUIC probes.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Screenshots go to a temporary directory; HOOKSTREAM_SCREENSHOTS_DIR=docs/screenshots makes
# the run refresh the README's (so an ordinary test run leaves the checkout clean).
SCREENSHOTS_ENV = "HOOKSTREAM_SCREENSHOTS_DIR"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EMAIL = "ana@acme.example"
RECEIVER_TOKEN = "receiver-bearer-token"


class Chrome:
    """Chromium behind playwright, on an event loop of its own in a thread.

    Everything playwright opens lives on that loop: the pipes to its driver process and the
    driver's subprocess transport. ``close()`` stops the browser and the driver, then the loop
    ends in its own thread as ``asyncio.run`` ends one (what is still pending is cancelled and
    awaited, then the loop is closed), so nothing is left for the garbage collector to find
    open in a later test.
    """

    # A slow, busy machine may take long to start the driver and Chromium; a start that is
    # given up is waited for all the same (its driver is stopped, not left running).
    START_TIMEOUT = 180.0
    STOP_TIMEOUT = 60.0

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="chromium", daemon=True)
        self.thread.start()
        self.playwright: Any = None
        self.browser: Any = None

    def _serve(self) -> None:
        loop = self.loop
        try:
            loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the browser's loop, from synchronous code. If it takes longer than
        ``timeout`` it is cancelled, and waited for, before the TimeoutError is raised."""
        ended = threading.Event()

        async def step() -> T:
            try:
                return await coro
            finally:
                ended.set()

        future = asyncio.run_coroutine_threadsafe(step(), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()  # cancels the task on the browser's loop ...
            ended.wait(self.STOP_TIMEOUT)  # ... which cleans up before it ends
            raise

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the browser's loop while the test's loop goes on serving."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def start(self) -> None:
        from playwright.async_api import async_playwright, expect

        # A loaded CI machine may be slower than playwright's 5 s default for assertions.
        expect.set_options(timeout=10_000)
        manager = async_playwright()
        starting = asyncio.ensure_future(manager.start())
        try:
            self.playwright = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # Given up half-way (call()'s timeout): the driver process may be starting. Let it
            # finish, then stop it, rather than leave it running with its pipes open.
            with contextlib.suppress(Exception):
                await starting
            await manager.__aexit__()
            raise
        self.browser = await self.playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )

    async def new_page(self, base_url: str, viewport: dict[str, int] = LAPTOP) -> Any:
        context = await self.browser.new_context(
            base_url=base_url, viewport=viewport, locale="en-GB", timezone_id="UTC",
            color_scheme="light",
        )
        await context.grant_permissions(["clipboard-read", "clipboard-write"])
        context.set_default_timeout(15_000)
        return await context.new_page()

    async def stop(self) -> None:
        browser, self.browser = self.browser, None
        playwright, self.playwright = self.playwright, None
        try:
            if browser is not None:
                await browser.close()
        finally:
            if playwright is not None:
                # Closes the driver's stdin and waits for it to exit and its pipes to close.
                await playwright.stop()

    def close(self) -> None:
        try:
            if self.thread.is_alive():
                self.call(self.stop(), timeout=self.STOP_TIMEOUT)
        finally:
            if not self.loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile
                    self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(self.STOP_TIMEOUT)
            assert not self.thread.is_alive(), "the browser's event loop did not stop"


@pytest.fixture(scope="session")
def chrome() -> Iterator[Chrome]:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable("Chromium", f"{CHROMIUM} is not installed (apt-get install chromium; "
                                "or set HOOKSTREAM_TEST_CHROMIUM)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        unavailable("Chromium", "the playwright package is not installed (pip install -e "
                                "'.[dev]')")
    browser = Chrome()
    try:
        browser.call(browser.start(), timeout=Chrome.START_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        browser.close()
        unavailable("Chromium", f"it does not start: {exc!r}")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
async def page(chrome: Chrome, service: Service, tmp_path: Path) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) on the service; on failure its last screen is
    kept in the test's temporary folder."""
    tab = await chrome.run(chrome.new_page(service.base_url))
    yield tab

    async def close() -> None:
        try:
            await tab.screenshot(path=str(tmp_path / "last-screen.png"))
            (tmp_path / "last-screen.html").write_text(await tab.content())
        finally:
            await tab.context.close()

    await chrome.run(close())


def verify_signature(secret: str, received: Received) -> bool:
    """Standard Webhooks: v1,<base64 HMAC-SHA256 of id.timestamp.body>."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{received.headers['webhook-id']}.{received.headers['webhook-timestamp']}."
    digest = hmac.new(key, signed.encode() + received.body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    return expected in received.headers["webhook-signature"].split(" ")


def screenshots_dir() -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    if chosen:
        return Path(chosen) if Path(chosen).is_absolute() else ROOT / chosen
    return Path(tempfile.gettempdir()) / "hookstream-screenshots"


async def shoot(page: Any, name: str, enabled: bool, *, full_page: bool = False) -> None:
    """A screenshot of what the page shows, for the README (once per run: on SQLite)."""
    if enabled:
        where = screenshots_dir()
        where.mkdir(parents=True, exist_ok=True)
        await page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
        await page.screenshot(path=str(where / f"{name}.png"), full_page=full_page)


async def test_a_new_user_walks_the_document_flow_and_replays_a_failure(
    chrome: Chrome, page: Any, service: Service, org: Org, receiver: Receiver, backend: str
) -> None:
    from playwright.async_api import expect

    screenshots = backend == "sqlite"
    await make_user(service, org.id, EMAIL)
    tower2 = await org.gateway("Tower 2")
    other = await service.new_org("Globex")
    try:
        their_gateway = await other.gateway("Globex Tower")
    finally:
        await other.api.aclose()

    # --- sign in, and the Organization tab's getting-started list --------------------------
    async def sign_in() -> None:
        await page.goto("/console")
        await expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole$"))
        await page.fill("#email", EMAIL)
        await page.fill("#password", PASSWORD)
        await page.click("button:has-text('Sign in')")
        await expect(page).to_have_url(re.compile(r"/console$"))
        await expect(page.locator("h2#start")).to_have_text("Getting started")
        await expect(page.locator(".empty h3").first).to_have_text("No connectors yet")

    await chrome.run(sign_in())

    # --- a gateway: its ingest token is shown once, with a copy button ---------------------
    async def add_gateway() -> str:
        await page.click("nav >> text=Gateways")
        await page.fill("#f-name", "Tower 1")
        await page.fill("#f-externalId", "TW-0001")
        await page.click("button:has-text('Add gateway')")
        await expect(page.locator("h1")).to_have_text("Gateway “Tower 1” added")
        token = (await page.locator("#secret-value").inner_text()).strip()
        await page.click("button[data-copy=secret-value]")
        await expect(page.locator("button[data-copy=secret-value]")).to_have_text("Copied")
        assert await page.evaluate("navigator.clipboard.readText()") == token
        await page.click("text=Back to the gateways")
        await expect(page.locator("table")).to_contain_text("Tower 1")
        assert token not in await page.content()
        return token

    token = await chrome.run(add_gateway())
    assert token.startswith("hsi_")

    # --- 'Add a connector': the authentication fields change with the choice -----------------
    async def add_connector() -> tuple[str, str]:
        await page.click("nav >> text=Connectors")
        await expect(page.locator(".empty h3")).to_have_text("No connectors yet")
        await page.click("main >> text=Add a connector")
        await expect(page.locator("h1")).to_have_text("Add a connector")
        username = page.locator("#f-authentication-username")
        bearer = page.locator("#f-authentication-token")
        await expect(username).to_be_hidden()
        await expect(bearer).to_be_hidden()
        await page.select_option("#f-authentication-type", "basic")
        await expect(username).to_be_visible()
        await page.select_option("#f-authentication-type", "bearer")
        await expect(username).to_be_hidden()
        await expect(bearer).to_be_visible()
        await page.fill("#f-name", "My server")
        await page.fill("#f-baseUrl", "not a url")
        await page.fill("#f-routes-values", "/hooks/values")
        await page.fill("#f-routes-events", "/hooks/events")
        await page.fill("#f-routes-alarms", "/hooks/alarms")
        await bearer.fill(RECEIVER_TOKEN)
        await page.click("button:has-text('Add connector')")
        # The error is under the base URL; what was typed is kept, the token is not.
        await expect(page.locator("#baseUrl-error")).to_contain_text("http:// or https://")
        await shoot(page, "add-connector", screenshots, full_page=True)
        await expect(page.locator("#f-name")).to_have_value("My server")
        await expect(page.locator("#f-routes-values")).to_have_value("/hooks/values")
        await expect(bearer).to_be_visible()
        await expect(bearer).to_have_value("")
        await page.fill("#f-baseUrl", receiver.url)
        await bearer.fill(RECEIVER_TOKEN)
        await page.click("button:has-text('Add connector')")
        await expect(page.locator("h1")).to_have_text("Connector “My server” added")
        secret = (await page.locator("#secret-value").inner_text()).strip()
        await page.click("text=Next: create a trigger")
        await expect(page.locator("h1")).to_have_text("My server")
        return page.url.split("/console/connectors/")[1].split("#")[0], secret

    connector_id, secret = await chrome.run(add_connector())
    assert secret.startswith("whsec_")

    # --- 'Create new trigger': the organization's gateways only -------------------------------
    async def create_trigger() -> None:
        form = page.locator("form.trigger-form")
        await expect(form).to_be_visible()  # open: there is no trigger yet
        picker = page.locator("#gateway-picker")
        await expect(picker).to_contain_text("Tower 1")
        await expect(picker).to_contain_text("Tower 2")
        await expect(picker).not_to_contain_text("Globex")
        assert their_gateway["id"] not in await page.content()
        for kind in ("events", "alarms"):
            await form.locator(f"input[name=kinds][value={kind}]").uncheck()
        await picker.locator("label:has-text('Tower 1') input").check()
        await form.locator("button:has-text('Create trigger')").click()
        await expect(page.locator(".notice")).to_have_text("The trigger was created.")
        row = page.locator("#triggers table tbody tr")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("values")
        await expect(row).to_contain_text("Tower 1")
        await expect(row).not_to_contain_text("Tower 2")

    await chrome.run(create_trigger())

    # --- the toggle: a post without its CSRF token is refused; then it switches on --------------
    async def switch_on() -> None:
        switch = page.locator("main .page-head button.switch")
        await expect(switch).to_have_attribute("aria-checked", "false")
        await page.evaluate(
            "document.querySelector('main .page-head form.toggle-form "
            "input[name=csrf_token]').remove()")
        await switch.click()
        await expect(page.locator("h1")).to_have_text("This form cannot be used")
        await page.go_back()
        await page.reload()
        await expect(switch).to_have_attribute("aria-checked", "false")
        await switch.click()
        await expect(page.locator(".notice")).to_contain_text("The connector is on")
        await expect(switch).to_have_attribute("aria-checked", "true")
        await expect(switch).to_have_text("On")

    await chrome.run(switch_on())
    # The API sees what the pages did.
    got = (await org.api.get(f"/api/v1/connectors/{connector_id}")).json()
    assert got["active"] is True and got["authentication"] == {"type": "bearer"}
    gateways = {g["name"]: g["id"] for g in (await org.api.get("/api/v1/gateways")).json()[
        "items"]}
    (trigger,) = (await org.api.get(f"/api/v1/connectors/{connector_id}/triggers")).json()[
        "items"]
    assert trigger["kinds"] == ["values"] and trigger["gatewayIds"] == [gateways["Tower 1"]]

    # --- a value through the ingest API arrives, signed and authenticated ----------------------
    sent = await org.ingest(token, "values", {
        "deviceId": "boiler-1", "property": "temperature", "timestamp": 1767225600000,
        "payload": 642, "scaledPayload": 64.2, "unit": "°C", "tags": {"site": "north"}})
    assert sent.status_code == 202, sent.text
    await receiver.wait_for(1)
    (arrived,) = receiver.received
    assert arrived.path == "/hooks/values"
    assert arrived.headers["Authorization"] == f"Bearer {RECEIVER_TOKEN}"
    assert verify_signature(secret, arrived)
    # A value from the other gateway matches no trigger.
    other_sent = await org.ingest(tower2["ingestToken"], "values", {
        "deviceId": "pump-7", "property": "flow", "timestamp": 1767225600000, "payload": 3})
    assert other_sent.status_code == 202

    # --- the delivery log shows it, and its attempt -----------------------------------------------
    async def recorded() -> bool:  # the worker records the outcome just after the answer
        return [d["status"] for d in await org.deliveries(connectorId=connector_id)] == [
            "delivered"]

    await eventually(recorded, timeout=60, what="the delivery recorded as delivered")

    async def see_delivery() -> None:
        await page.click("nav >> text=Deliveries")
        row = page.locator("main table tbody tr").first
        await expect(row).to_contain_text("My server")
        await expect(row).to_contain_text("boiler-1")
        await expect(row.locator(".badge")).to_have_text("delivered")
        await row.locator("a").first.click()
        await expect(page.locator("h1 .badge")).to_have_text("delivered")
        attempt = page.locator("table.attempts tbody tr")
        await expect(attempt).to_have_count(1)
        await expect(attempt).to_contain_text("HTTP 204")
        await expect(attempt).to_contain_text(" ms")
        await expect(page.locator("main")).to_contain_text('"deviceId": "boiler-1"')
        await page.click("nav >> text=Messages")
        messages = page.locator("main table tbody tr")
        await expect(messages).to_have_count(2)
        await expect(messages.filter(has_text="pump-7")).to_contain_text("No trigger matched")
        await expect(messages.filter(has_text="boiler-1")).to_contain_text("delivered")

    await chrome.run(see_delivery())

    # --- a failing receiver: the delivery fails, is replayed from its page, then delivered ------
    healthy = asyncio.Event()

    def flaky(request: Received, n: int) -> web.Response:
        if healthy.is_set():
            return web.Response(status=204)
        return web.Response(status=500, text="database is down")

    async with running_receiver(flaky) as failing:
        flaky_connector = await org.connector(failing.url, name="Flaky server")
        await org.trigger(flaky_connector["id"], ["alarms"], [tower2["id"]])
        alarm = await org.ingest(tower2["ingestToken"], "alarms", {
            "deviceId": "pump-7", "property": "overheat", "timestamp": 1767225600000,
            "payload": True})
        assert alarm.status_code == 202

        async def failed() -> bool:
            items = await org.deliveries(connectorId=flaky_connector["id"])
            return bool(items) and items[0]["status"] == "failed"

        await eventually(failed)
        attempts = len(service.settings.retry_schedule) + 1

        async def replay() -> None:
            await page.click("nav >> text=Deliveries")
            await page.select_option("#f-status", "failed")
            await page.click("form.filters button:has-text('Filter')")
            await expect(page).to_have_url(re.compile(r"status=failed"))
            rows = page.locator("main table tbody tr")
            await expect(rows).to_have_count(1)
            await expect(rows).to_contain_text("Flaky server")
            await rows.locator("a").first.click()
            await expect(page.locator("h1 .badge")).to_have_text("failed")
            tries = page.locator("table.attempts tbody tr")
            await expect(tries).to_have_count(attempts)
            await expect(tries.first).to_contain_text("HTTP 500")
            await expect(tries.first).to_contain_text("database is down")
            await shoot(page, "delivery", screenshots)

        await chrome.run(replay())
        healthy.set()

        async def replay_it() -> None:
            await page.click("button:has-text('Replay')")
            await expect(page.locator(".notice")).to_contain_text("Replayed")
            # The page looks again by itself while the delivery is pending.
            await expect(page.locator("h1 .badge")).to_have_text("delivered", timeout=20_000)
            await expect(page.locator("table.attempts tbody tr")).to_contain_text("HTTP 204")
            await expect(page.locator("main")).to_contain_text("Replay of")

        await chrome.run(replay_it())
        assert len({r.headers["webhook-id"] for r in failing.received}) == 1
        assert failing.received[-1].headers.get("webhook-id") == alarm.json()["ids"][0]

    # --- the connector's health, and the other pages for the README -----------------------------
    plant = (await org.api.post("/api/v1/plants", json={"name": "Home"})).json()
    await org.api.post(f"/api/v1/plants/{plant['id']}/modules", json={
        "name": "Living room", "gatewayId": tower2["id"], "deviceId": "thermo-1"})
    await org.api.post("/api/v1/subscription-keys", json={"name": "Comfort App"})
    await org.api.post("/api/v1/oauth-clients", json={
        "name": "Comfort App", "redirectUris": ["https://app.example/callback"]})

    async def tour() -> None:
        await page.click("nav >> text=Connectors")
        rows = page.locator("main table tbody tr")
        await expect(rows).to_have_count(2)
        flaky_row = rows.filter(has_text="Flaky server")
        await expect(flaky_row).to_contain_text(f"of {attempts + 1} attempts")
        await expect(flaky_row).to_contain_text("HTTP 500")
        await shoot(page, "connectors", screenshots)
        await page.click("text=My server")
        await expect(page.locator("#health")).to_be_visible()
        await expect(page.locator("main")).to_contain_text("100%")
        await shoot(page, "connector", screenshots)
        await page.click("nav >> text=Organization")
        await expect(page.locator("main")).not_to_contain_text("Getting started")
        await shoot(page, "overview", screenshots)
        await page.click("nav >> text=Plants")
        await expect(page.locator("main")).to_contain_text("Living room")
        await shoot(page, "plants", screenshots)
        await page.click("nav >> text=Developers")
        await expect(page.locator("main")).to_contain_text("Comfort App")
        await shoot(page, "developers", screenshots)
        await page.click("nav >> text=Deliveries")
        await expect(page.locator("main table tbody tr")).to_have_count(3)
        await shoot(page, "delivery-log", screenshots)
        await page.set_viewport_size(PHONE)
        # The same page again: wait for the new one, not the one it replaces.
        async with page.expect_navigation():
            await page.click("nav >> text=Deliveries")
        await shoot(page, "phone-deliveries", screenshots)
        # Phone-wide, the page does not scroll sideways.
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width

    await chrome.run(tour())

    # --- 'Edit': an error next to its field, then the saved change is what gets delivered ------
    refusals: list[str] = []  # what the browser refused under the CSP (nothing, we check)

    async def edit() -> None:
        page.on("console", lambda m: refusals.append(m.text)
                if "Content Security Policy" in m.text else None)
        await page.set_viewport_size(LAPTOP)
        await page.click("nav >> text=Connectors")
        await page.click("text=My server")
        chart = page.locator("svg#chart-attempts")
        await expect(chart).to_be_visible()
        await expect(chart.locator("rect.o-delivered")).to_have_count(1)
        await page.click("#edit-connector")
        await expect(page.locator("h1")).to_have_text("Edit My server")
        token_field = page.locator("#f-authentication-token")
        await expect(token_field).to_be_visible()  # the stored type's fields only
        await expect(token_field).to_have_value("")
        await expect(token_field).to_have_attribute("placeholder", "unchanged")
        await expect(page.locator("#f-authentication-username")).to_be_hidden()
        await expect(page.locator("#f-routes-values")).to_have_value("/hooks/values")
        await page.fill("#f-routes-values", "/hooks/v2/values")
        await page.fill("#f-headers-0-name", "X-Walk")
        await page.fill("#f-headers-0-value", "walked")
        await page.fill("#f-timeouts-connect", "100")
        await page.click("button:has-text('Save')")
        await expect(page.locator("#timeouts-connect-error")).to_have_text(
            "Input should be less than or equal to 60.")
        await expect(page.locator("#f-routes-values")).to_have_value("/hooks/v2/values")
        await expect(page.locator("#f-headers-0-value")).to_have_value("")  # never sent back
        await shoot(page, "edit-connector", screenshots, full_page=True)
        await page.fill("#f-timeouts-connect", "")
        await page.fill("#f-headers-0-value", "walked")
        await page.click("button:has-text('Save')")
        await expect(page.locator(".notice")).to_contain_text("The connector was saved")
        config = page.locator("section[aria-labelledby=config]")
        await expect(config).to_contain_text("/hooks/v2/values")
        await expect(config).to_contain_text("X-Walk")

    before_edit = (await org.api.get(f"/api/v1/connectors/{connector_id}")).json()
    await chrome.run(edit())
    assert refusals == []
    edited = (await org.api.get(f"/api/v1/connectors/{connector_id}")).json()
    assert edited["routes"]["values"] == "/hooks/v2/values"
    assert edited["headerNames"] == ["X-Walk"] and edited["authentication"] == {"type": "bearer"}
    assert edited["timeouts"] == before_edit["timeouts"]
    # A worker trusts its copy of a connector for a moment: send until the new route is used.
    for n in range(200):
        count = len(receiver.received)
        sent = await org.ingest(token, "values", {
            "deviceId": "boiler-1", "property": "temperature", "timestamp": n, "payload": n})
        assert sent.status_code == 202, sent.text
        await receiver.wait_for(count + 1)
        if receiver.received[-1].path == "/hooks/v2/values":
            break
    latest = receiver.received[-1]
    assert latest.path == "/hooks/v2/values"
    assert latest.headers["Authorization"] == f"Bearer {RECEIVER_TOKEN}"  # kept, left blank
    assert latest.headers["X-Walk"] == "walked"
    assert verify_signature(secret, latest)

    async def charts() -> None:
        await page.goto(f"/console/connectors/{connector_id}")
        await expect(page.locator("svg#chart-latency circle.l-p50").first).to_be_visible()
        if screenshots:
            where = screenshots_dir()
            where.mkdir(parents=True, exist_ok=True)
            await page.locator("#activity").screenshot(path=str(where / "connector-charts.png"))
        # Phone-wide, neither the charts nor the edit form scroll sideways.
        await page.set_viewport_size(PHONE)
        for path in (f"/console/connectors/{connector_id}",
                     f"/console/connectors/{connector_id}/edit"):
            await page.goto(path)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (path, width)

    await chrome.run(charts())

    async def audit_log() -> None:
        await page.set_viewport_size(LAPTOP)
        await page.click("nav >> text=Audit log")
        rows = page.locator("#audit-events tbody tr")
        await expect(rows.first).to_contain_text("connector.updated")
        await expect(rows.first).to_contain_text(f"user:{EMAIL}")
        await page.fill("#f-actor", f"user:{EMAIL}")
        await page.select_option("#f-action", "connector.updated")
        await page.click("form.filters button:has-text('Filter')")
        await expect(page).to_have_url(re.compile(r"action=connector.updated"))
        await expect(rows).to_have_count(2)  # switched on, then edited
        await expect(rows.first).to_contain_text("routes")
        await shoot(page, "audit-log", screenshots)

    await chrome.run(audit_log())
    assert refusals == []


async def test_the_console_without_javascript_shows_every_authentication_field(
    chrome: Chrome, service: Service, org: Org
) -> None:
    """The form still works server-side: with scripts off every type's fields are there and
    only the chosen type's are read."""
    await make_user(service, org.id, EMAIL)

    async def walk() -> str:
        context = await chrome.browser.new_context(base_url=service.base_url,
                                                   java_script_enabled=False)
        try:
            tab = await context.new_page()
            await tab.goto("/console/sign-in")
            await tab.fill("#email", EMAIL)
            await tab.fill("#password", PASSWORD)
            await tab.click("button:has-text('Sign in')")
            await tab.goto("/console/connectors/new")
            for field in ("username", "token", "header", "tokenUrl"):
                assert await tab.locator(f"#f-authentication-{field}").is_visible()
            await tab.fill("#f-name", "No script")
            await tab.fill("#f-baseUrl", "https://example.com")
            await tab.select_option("#f-authentication-type", "basic")
            await tab.fill("#f-authentication-username", "hook")
            await tab.fill("#f-authentication-password", "pass word")
            await tab.fill("#f-authentication-token", "ignored")
            await tab.click("button:has-text('Add connector')")
            return str(await tab.locator("h1").inner_text())
        finally:
            await context.close()

    assert await chrome.run(walk()) == "Connector “No script” added"
    (connector,) = (await org.api.get("/api/v1/connectors")).json()["items"]
    assert connector["authentication"] == {"type": "basic", "username": "hook"}
