"""The console's transform editor: the connector forms save a JSONata expression (the API's
errors under the field), and the live preview shows what it makes of the organization's
latest message, in a real Chromium as the user types."""

from __future__ import annotations

import html
import re
from typing import Any

import orjson

from tests import test_console_browser, test_console_pages
from tests.console_support import PASSWORD, make_user
from tests.support import Org, Receiver, Service
from tests.test_console_browser import EMAIL, Chrome
from tests.test_console_edit import _form_fields
from tests.test_console_pages import Console, field_error

# The console's and the browser's fixtures, as their own modules define them.
console = test_console_pages.console
chrome = test_console_browser.chrome
page = test_console_browser.page

PREVIEW = "/console/transforms/preview"
VALUE = {"deviceId": "boiler-1", "property": "temperature", "timestamp": 1767225600000,
         "payload": 642, "scaledPayload": 64.2, "unit": "°C"}


def textarea(page: str, name: str) -> str:
    match = re.search(rf'<textarea[^>]* name="{re.escape(name)}"[^>]*>([^<]*)</textarea>', page)
    assert match, f"no textarea {name}"
    return html.unescape(match.group(1))


async def send_value(org: Org) -> None:
    gateway = await org.gateway()
    resp = await org.ingest(gateway["ingestToken"], "values", VALUE)
    assert resp.status_code == 202, resp.text


async def test_the_edit_form_saves_checks_and_removes_a_transform(
    console: Console, org: Org, receiver: Receiver
) -> None:
    cid = (await org.connector(receiver.url))["id"]
    shown = await console.get(f"/console/connectors/{cid}/edit")
    assert textarea(shown.text, "transform.expression") == ""
    form = _form_fields(shown.text)

    bad = await console.post(f"/console/connectors/{cid}/edit",
                             {**form, "transform.expression": '{"a":'})
    assert bad.status_code == 422, bad.text
    assert field_error(bad.text, "transform.expression").startswith(
        "The expression does not parse: Expected")
    assert textarea(bad.text, "transform.expression") == '{"a":'  # what was typed stays
    assert (await org.api.get(f"/api/v1/connectors/{cid}")).json()["transform"] is None

    expression = '{"device": deviceId, "t": scaledPayload}'
    saved = await console.post(f"/console/connectors/{cid}/edit",
                               {**form, "transform.expression": expression})
    assert saved.status_code == 303, saved.text
    got = (await org.api.get(f"/api/v1/connectors/{cid}")).json()["transform"]
    assert got == {"language": "jsonata", "expression": expression}
    shown = await console.get(f"/console/connectors/{cid}/edit")
    assert textarea(shown.text, "transform.expression") == expression

    cleared = await console.post(f"/console/connectors/{cid}/edit",
                                 {**_form_fields(shown.text), "transform.expression": ""})
    assert cleared.status_code == 303, cleared.text
    assert (await org.api.get(f"/api/v1/connectors/{cid}")).json()["transform"] is None


async def test_a_new_connector_may_have_a_transform(console: Console, org: Org) -> None:
    fields = {"name": "TB", "baseUrl": "https://tb.example.com", "routes.values": "",
              "routes.events": "", "routes.alarms": "", "authentication.type": "none"}
    bad = await console.post("/console/connectors/new", {**fields, "transform.expression": "$("})
    assert bad.status_code == 422, bad.text
    assert "does not parse" in field_error(bad.text, "transform.expression")
    made = await console.post("/console/connectors/new",
                              {**fields, "transform.expression": "$.deviceId"})
    assert made.status_code == 200, made.text
    (connector,) = (await org.api.get("/api/v1/connectors")).json()["items"]
    assert connector["transform"] == {"language": "jsonata", "expression": "$.deviceId"}


async def test_the_preview_uses_the_latest_message(console: Console, org: Org) -> None:
    async def preview(expression: str, **kwargs: Any) -> dict[str, Any]:
        resp = await console.post(PREVIEW, {"expression": expression}, **kwargs)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    assert "No message yet" in (await preview("deviceId"))["error"]
    await send_value(org)
    got = await preview('{"d": deviceId, "f": $round(scaledPayload * 9 / 5 + 32, 1)}')
    assert got["result"] == {"d": "boiler-1", "f": 147.6}
    assert got["message"]["deviceId"] == "boiler-1" and got["messageId"].startswith("msg_")
    assert "Unable to cast value to a number" in (await preview("$number(unit)"))["error"]
    assert "does not parse" in (await preview("{"))["error"]
    assert "sent as it is" in (await preview(""))["error"]
    # A form post like every other: without the session's CSRF token it is refused.
    refused = await console.post(PREVIEW, {"expression": "1"}, token="")
    assert refused.status_code == 403


async def test_the_editor_previews_as_the_user_types(
    chrome: Chrome, page: Any, service: Service, org: Org, receiver: Receiver
) -> None:
    from playwright.async_api import expect

    await make_user(service, org.id, EMAIL)
    cid = (await org.connector(receiver.url))["id"]
    await send_value(org)

    async def walk() -> None:
        await page.goto("/console/sign-in")
        await page.fill("#email", EMAIL)
        await page.fill("#password", PASSWORD)
        await page.click("button:has-text('Sign in')")
        await page.goto(f"/console/connectors/{cid}/edit")
        result = page.locator("[data-transform-result]")
        await page.fill("#f-transform-expression", '{"ts": timestamp, "v": scaledPayload}')
        await expect(result).to_have_text(orjson.dumps(
            {"ts": 1767225600000, "v": 64.2}, option=orjson.OPT_INDENT_2).decode())
        await expect(page.locator("[data-transform-message]")).to_contain_text('"boiler-1"')
        await page.fill("#f-transform-expression", "$number(unit)")
        await expect(result).to_contain_text("Unable to cast value to a number")
        await expect(result).to_have_class(re.compile(r"\berror\b"))
        await page.fill("#f-transform-expression", '{"device": deviceId}')
        await expect(result).not_to_have_class(re.compile(r"\berror\b"))
        await page.click("button:has-text('Save')")
        await expect(page.locator("body")).to_contain_text("The connector was saved")

    await chrome.run(walk())
    got = (await org.api.get(f"/api/v1/connectors/{cid}")).json()["transform"]
    assert got == {"language": "jsonata", "expression": '{"device": deviceId}'}
