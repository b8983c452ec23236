"""The thermostat cloud in the console: plants and their modules; for developers, OAuth2
clients, subscription keys and the plants' subscriptions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from starlette.responses import Response

from hookstream.errors import ValidationFailed
from hookstream.storage.repository import Repository
from hookstream.thermostat.api import developers, plants
from hookstream.web.console.overview import MOST, all_gateways
from hookstream.web.console.pages import redirect
from hookstream.web.console.web import (
    FieldErrors,
    Page,
    console_page,
    field_errors,
    posted_form,
    render_page,
    secret_page,
)

router = APIRouter(include_in_schema=False)

PLANTS = "/console/plants"
DEVELOPERS = "/console/developers"


async def _all_plants(page: Page) -> list[dict[str, Any]]:
    return list((await plants.list_plants(page.org_id, page.rt, limit=MOST))["items"])


def _measure(sensor: dict[str, Any]) -> str | None:
    measures = sensor.get("measures") or []
    if not measures:
        return None
    return f"{measures[0]['value']} {measures[0]['unit']}"


async def _plants_page(
    page: Page, *, status: int = 200, plant_errors: FieldErrors | None = None,
    plant_values: dict[str, str] | None = None, module_plant: str = "",
    module_errors: FieldErrors | None = None, module_values: dict[str, str] | None = None,
) -> Response:
    items = await _all_plants(page)
    modules: dict[str, list[dict[str, Any]]] = {}
    for plant in items:
        listed = await plants.list_modules(plant["id"], page.org_id, page.rt, limit=MOST)
        modules[plant["id"]] = [
            {**mod,
             "temperature": _measure(mod["status"]["thermometer"]),
             "humidity": _measure(mod["status"]["hygrometer"])}
            for mod in listed["items"]
        ]
    gws = await all_gateways(page)
    return render_page(
        page, "plants.html", nav="plants", status=status, plants=items, modules=modules,
        gateways=gws, gateway_names={g["id"]: g["name"] for g in gws},
        plant_errors=plant_errors, plant_values=plant_values or {"name": ""},
        module_plant=module_plant, module_errors=module_errors,
        module_values=module_values or {"name": "", "gatewayId": "", "deviceId": ""},
    )


@router.get(PLANTS)
@console_page
async def plants_page(page: Page) -> Response:
    return await _plants_page(page)


@router.post(PLANTS)
@console_page
async def create_plant(page: Page) -> Response:
    form = await posted_form(page)
    values = {"name": form.text("name")}
    try:
        await plants.create_plant(plants.PlantCreate.model_validate(values), page.org_id, page.rt)
    except (ValidationError, ValidationFailed) as exc:
        return await _plants_page(page, status=422, plant_errors=field_errors(exc),
                                  plant_values=values)
    return redirect(f"{PLANTS}?done=plant-created")


@router.post(PLANTS + "/{plant_id}/delete")
@console_page
async def delete_plant(page: Page, plant_id: str) -> Response:
    await posted_form(page)
    await plants.delete_plant(plant_id, page.org_id, page.rt)
    return redirect(f"{PLANTS}?done=plant-deleted")


@router.post(PLANTS + "/{plant_id}/modules")
@console_page
async def create_module(page: Page, plant_id: str) -> Response:
    form = await posted_form(page)
    values = {"name": form.text("name"), "gatewayId": form.text("gatewayId"),
              "deviceId": form.text("deviceId")}
    body = {"name": values["name"], "gatewayId": values["gatewayId"] or None,
            "deviceId": values["deviceId"] or None}
    try:
        await plants.create_module(
            plant_id, plants.ModuleCreate.model_validate(body), page.org_id, page.rt
        )
    except (ValidationError, ValidationFailed) as exc:
        return await _plants_page(page, status=422, module_plant=plant_id,
                                  module_errors=field_errors(exc), module_values=values)
    return redirect(f"{PLANTS}?done=module-created#plant-{plant_id}")


@router.post(PLANTS + "/{plant_id}/modules/{module_id}/delete")
@console_page
async def delete_module(page: Page, plant_id: str, module_id: str) -> Response:
    await posted_form(page)
    await plants.delete_module(plant_id, module_id, page.org_id, page.rt)
    return redirect(f"{PLANTS}?done=module-deleted#plant-{plant_id}")


# --- developers -----------------------------------------------------------------------------

async def _developers_page(
    page: Page, *, status: int = 200, client_errors: FieldErrors | None = None,
    client_values: dict[str, Any] | None = None, key_errors: FieldErrors | None = None,
    key_values: dict[str, str] | None = None,
) -> Response:
    rt, org_id = page.rt, page.org_id
    clients = (await developers.list_clients(org_id, rt, limit=MOST))["items"]
    keys = (await developers.list_keys(org_id, rt, limit=MOST))["items"]
    items = await _all_plants(page)
    plant_names = {p["id"]: p["name"] for p in items}
    subscriptions: list[Any] = []
    async with rt.db.read() as conn:
        repo = Repository(conn)
        for plant in items:
            subscriptions.extend(await repo.subscriptions_of_plant(org_id, plant["id"]))
    return render_page(
        page, "developers.html", nav="developers", status=status, clients=clients, keys=keys,
        subscriptions=subscriptions, plant_names=plant_names,
        client_names={c["clientId"]: c["name"] for c in clients},
        client_errors=client_errors,
        client_values=client_values or {"name": "", "redirectUris": "", "public": False},
        key_errors=key_errors, key_values=key_values or {"name": ""},
    )


@router.get(DEVELOPERS)
@console_page
async def developers_page(page: Page) -> Response:
    return await _developers_page(page)


@router.post(DEVELOPERS + "/clients")
@console_page
async def create_client(page: Page) -> Response:
    form = await posted_form(page)
    uris = [line.strip() for line in form.raw("redirectUris").splitlines() if line.strip()]
    values: dict[str, Any] = {"name": form.text("name"), "redirectUris": "\n".join(uris),
                              "public": form.checked("public")}
    try:
        body = developers.ClientCreate.model_validate(
            {"name": values["name"], "redirectUris": uris, "public": values["public"]}
        )
        created = await developers.create_client(body, page.org_id, page.rt)
    except (ValidationError, ValidationFailed) as exc:
        errors = field_errors(exc)
        # One message per list, under the text area ("redirectUris.0" is its first line).
        for name in [n for n in errors.fields if n.startswith("redirectUris.")]:
            errors.fields.setdefault("redirectUris", errors.fields.pop(name))
        return await _developers_page(page, status=422, client_errors=errors,
                                      client_values=values)
    extra = [("Client id", created["clientId"])]
    if created["clientSecret"] is None:
        return secret_page(
            page, nav="developers", title=f"OAuth2 client “{created['name']}” registered",
            lead="A public client has no secret: it must use PKCE. Give the app its client id.",
            secret=None, extra=extra, next_url=DEVELOPERS, next_text="Back to developers",
        )
    return secret_page(
        page, nav="developers", title=f"OAuth2 client “{created['name']}” registered",
        lead="Give the app its client id and this secret, shown this once (hookstream keeps "
             "only its hash).",
        label="Client secret", secret=created["clientSecret"], extra=extra,
        next_url=DEVELOPERS, next_text="Back to developers",
    )


@router.post(DEVELOPERS + "/clients/{client_id}/delete")
@console_page
async def delete_client(page: Page, client_id: str) -> Response:
    await posted_form(page)
    await developers.delete_client(client_id, page.org_id, page.rt)
    return redirect(f"{DEVELOPERS}?done=client-deleted")


@router.post(DEVELOPERS + "/keys")
@console_page
async def create_key(page: Page) -> Response:
    form = await posted_form(page)
    values = {"name": form.text("name")}
    try:
        created = await developers.create_key(
            developers.KeyCreate.model_validate(values), page.org_id, page.rt
        )
    except (ValidationError, ValidationFailed) as exc:
        return await _developers_page(page, status=422, key_errors=field_errors(exc),
                                      key_values=values)
    return secret_page(
        page, nav="developers", title=f"Subscription key “{created['name']}” created",
        lead="The app sends it as Ocp-Apim-Subscription-Key on every call. It is shown this "
             "once; hookstream keeps only its hash.",
        label="Subscription key", secret=created["key"],
        next_url=DEVELOPERS, next_text="Back to developers",
    )


@router.post(DEVELOPERS + "/keys/{key_id}/rotate")
@console_page
async def rotate_key(page: Page, key_id: str) -> Response:
    await posted_form(page)
    rotated = await developers.rotate_key(key_id, page.org_id, page.rt, None)
    return secret_page(
        page, nav="developers", title="New subscription key",
        lead="The new value is shown this once. The previous one keeps working for the "
             "rotation overlap, so the app can switch.",
        label="Subscription key", secret=rotated["key"],
        next_url=DEVELOPERS, next_text="Back to developers",
    )


@router.post(DEVELOPERS + "/keys/{key_id}/delete")
@console_page
async def delete_key(page: Page, key_id: str) -> Response:
    await posted_form(page)
    await developers.delete_key(key_id, page.org_id, page.rt)
    return redirect(f"{DEVELOPERS}?done=key-deleted")
