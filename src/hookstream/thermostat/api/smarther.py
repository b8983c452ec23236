"""The thermostat cloud API under ``/smarther/v2.0``, in the shapes of BTicino/Legrand's
Smarther v2.0 (the openHAB ``bticinosmarther`` binding parses them).

Every call needs a subscription key (``Ocp-Apim-Subscription-Key``, rate limited per key)
and an OAuth2 access token of the same organization. Errors are ``{"statusCode", "message"}``
(``error_body``, registered for ``/smarther/`` by ``thermostat.plugin``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response

from hookstream.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from hookstream.ids import hash_key, now_ms
from hookstream.services.audit import set_actor
from hookstream.services.runtime import Runtime
from hookstream.services.schemas import check_http_url
from hookstream.services.targets import target_refusal
from hookstream.storage.repository import Repository
from hookstream.thermostat.changes import ModuleGone, change_module
from hookstream.thermostat.oauth.bearer import access_token
from hookstream.thermostat.state import (
    FUNCTIONS,
    MODES,
    CommandError,
    ModuleState,
    apply_command,
    chronothermostat,
    module_status,
)
from hookstream.thermostat.subscriptions import (
    create_subscription,
    end_subscriptions,
    new_signing_secret,
    validate_endpoint,
)
from hookstream.web.api.common import RuntimeDep
from hookstream.web.api.responses import JSON
from hookstream.web.params import reject_nul_params

router = APIRouter(prefix="/smarther/v2.0", tags=["smarther"])

KEY_HEADER = "Ocp-Apim-Subscription-Key"
READ, WRITE = "comfort.read", "comfort.write"
# Azure API Management's own words, which clients of the original may match on.
MISSING_KEY = (
    "Access denied due to missing subscription key. Make sure to include subscription key "
    "when making requests to an API."
)
INVALID_KEY = (
    "Access denied due to invalid subscription key. Make sure to provide a valid key for an "
    "active subscription."
)
_MODULE_PATH = (
    "/chronothermostat/thermoregulation/addressLocation/plants/{plant_id}"
    "/modules/parameter/id/value/{module_id}"
)
_MAX_BODY = 64 * 1024
# The set call's body, read by hand (apply_command): documented here so clients and the
# fuzz tests know it.
_SET_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {
        "type": "object", "required": ["mode"], "additionalProperties": False,
        "properties": {
            "function": {"type": "string", "enum": list(FUNCTIONS)},
            "mode": {"type": "string", "enum": list(MODES)},
            "setPoint": {"type": "object", "additionalProperties": False, "properties": {
                "value": {"type": ["string", "number"]},
                "unit": {"type": "string", "enum": ["C", "F"]},
            }},
            "programs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["number"],
                "properties": {"number": {"type": ["string", "integer"]}},
            }},
            "activationTime": {"type": "string", "description": "RFC 3339, or start/end"},
        },
    },
}}}}


# Smarther's error shape; the web application answers every error under /smarther/ with it.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["statusCode", "message"],
    "additionalProperties": False,
    "properties": {"statusCode": {"type": "integer"}, "message": {"type": "string"}},
}


def error_body(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """An error as Smarther answers it: ``{"statusCode", "message"}``."""
    return {"statusCode": status, "message": message}


@dataclass(frozen=True, slots=True)
class Caller:
    """The application calling: its organization, client and the scopes its token holds."""

    org_id: str
    client_id: str
    user_id: str
    scopes: frozenset[str]

    def need(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"the access token lacks the '{scope}' scope")


def _unauthorized_token(message: str) -> Unauthorized:
    return Unauthorized(message, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


async def caller(request: Request, rt: RuntimeDep) -> Caller:
    """Subscription key first (as the original's gateway does), then the access token."""
    key = request.headers.get(KEY_HEADER, "").strip()
    if not key:
        raise Unauthorized(MISSING_KEY)
    now = now_ms()
    async with rt.db.read() as conn:
        key_row = await Repository(conn).subscription_key_by_hash(hash_key(key), now)
    if key_row is None:
        raise Unauthorized(INVALID_KEY)
    decision = rt.subscription_key_limiter.take(key_row.id, time.monotonic())
    if not decision.allowed:
        raise TooManyRequests(
            f"Rate limit is exceeded. Try again in {decision.retry_after} seconds.",
            retry_after=decision.retry_after,
        )
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise _unauthorized_token("send 'Authorization: Bearer <access token>'")
    token = await access_token(rt.db, raw.strip(), now)
    if token is None:
        raise _unauthorized_token("the access token is invalid or expired")
    # A key and a token of different organizations: the key is not valid for this data.
    if token.org_id != key_row.org_id:
        raise Unauthorized(INVALID_KEY)
    reject_nul_params(request)
    set_actor(f"application:{token.client_id}")
    return Caller(token.org_id, token.client_id, token.user_id, token.scopes)


CallerDep = Annotated[Caller, Depends(caller)]


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise BadRequest(f"the body is larger than {_MAX_BODY} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not valid JSON") from None


def _plant_not_found(plant_id: str) -> NotFound:
    return NotFound(f"plant '{plant_id}' not found")


async def _plant(rt: Runtime, org_id: str, plant_id: str) -> Any:
    async with rt.db.read() as conn:
        row = await Repository(conn).get_plant(org_id, plant_id)
    if row is None:
        raise _plant_not_found(plant_id)
    return row


# --- plants and topology -------------------------------------------------------------------
@router.get("/plants", operation_id="listSmartherPlants",
            summary="The plants the user gave access to (204 when none)",
            responses={204: {"description": "No plant yet"}})
async def plants(who: CallerDep, rt: RuntimeDep) -> Response:
    who.need(READ)
    async with rt.db.read() as conn:
        rows = await Repository(conn).list_plants(who.org_id, None, 1000)
    if not rows:
        return Response(status_code=204)
    return JSON({"plants": [{"id": r.id, "name": r.name} for r in rows]})


@router.get("/plants/{plant_id}/topology", operation_id="getPlantTopology",
            summary="A plant and its modules")
async def topology(plant_id: str, who: CallerDep, rt: RuntimeDep) -> dict[str, Any]:
    who.need(READ)
    async with rt.db.read() as conn:
        repo = Repository(conn)
        plant = await repo.get_plant(who.org_id, plant_id)
        if plant is None:
            raise _plant_not_found(plant_id)
        modules = await repo.list_modules(who.org_id, plant_id, None, 1000)
    return {"plant": {
        "id": plant.id, "name": plant.name,
        "modules": [{"device": "chronothermostat", "id": m.id, "name": m.name} for m in modules],
    }}


# --- a module's status and the set call ------------------------------------------------------
async def _module_row(rt: Runtime, org_id: str, plant_id: str, module_id: str) -> Any:
    async with rt.db.read() as conn:
        repo = Repository(conn)
        if await repo.get_plant(org_id, plant_id) is None:
            raise _plant_not_found(plant_id)
        row = await repo.get_module(org_id, plant_id, module_id)
    if row is None:
        raise NotFound(f"module '{module_id}' not found")
    return row


@router.get(_MODULE_PATH, operation_id="getChronothermostatStatus",
            summary="A chronothermostat's status")
async def get_module(
    plant_id: str, module_id: str, who: CallerDep, rt: RuntimeDep
) -> dict[str, Any]:
    who.need(READ)
    row = await _module_row(rt, who.org_id, plant_id, module_id)
    return module_status(ModuleState.from_json(row.state), plant_id, module_id)


@router.post(_MODULE_PATH, operation_id="setChronothermostatStatus",
             summary="Set function, mode, setPoint, programs, activationTime",
             openapi_extra=_SET_BODY)
async def set_module(
    plant_id: str, module_id: str, request: Request, who: CallerDep, rt: RuntimeDep
) -> dict[str, Any]:
    who.need(WRITE)
    command = await _json_body(request)
    await _module_row(rt, who.org_id, plant_id, module_id)
    now = now_ms()
    try:
        async with rt.db.write() as conn:
            state = await change_module(
                Repository(conn), who.org_id, plant_id, module_id,
                lambda s: apply_command(s, command, now), now,
            )
    except CommandError as exc:
        raise BadRequest(exc.message) from exc
    except ModuleGone:
        raise NotFound(f"module '{module_id}' not found") from None
    rt.wakeup.set()
    return module_status(state, plant_id, module_id)


@router.get(_MODULE_PATH + "/programlist", operation_id="listChronothermostatPrograms",
            summary="A chronothermostat's programs")
async def programs(
    plant_id: str, module_id: str, who: CallerDep, rt: RuntimeDep
) -> dict[str, Any]:
    who.need(READ)
    row = await _module_row(rt, who.org_id, plant_id, module_id)
    state = ModuleState.from_json(row.state)
    numbers = sorted({1, 2, 3, state.program})
    chrono = chronothermostat(state, plant_id, module_id)
    chrono["programs"] = [{"number": str(n), "name": f"Program {n}"} for n in numbers]
    return {"chronothermostats": [chrono]}


# --- subscriptions ---------------------------------------------------------------------------
def _subscription(row: Any) -> dict[str, Any]:
    return {"plantId": row.plant_id, "subscriptionId": row.id, "EndPointUrl": row.endpoint_url}


@router.post("/plants/{plant_id}/subscription", operation_id="createPlantSubscription",
             status_code=201,
             summary="Subscribe an endpoint to the plant's notifications")
async def subscribe(
    plant_id: str, request: Request, who: CallerDep, rt: RuntimeDep
) -> dict[str, Any]:
    who.need(READ)
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) != {"EndPointUrl"}:
        raise BadRequest('the body must be {"EndPointUrl": "<https URL>"}')
    url = body["EndPointUrl"]
    if not isinstance(url, str) or "\x00" in url:
        raise BadRequest("EndPointUrl must be a string")
    try:
        check_http_url(url, "EndPointUrl")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    refused = target_refusal(rt.settings, url)
    if refused is not None:
        raise BadRequest(f"EndPointUrl: {refused}")
    await _plant(rt, who.org_id, plant_id)
    async with rt.db.read() as conn:
        existing = await Repository(conn).subscriptions_of_client(who.org_id, who.client_id)
    if any(s.plant_id == plant_id and s.endpoint_url == url for s in existing):
        raise Conflict("a subscription of this application to this plant and URL exists")
    secret = new_signing_secret()
    validation = await validate_endpoint(rt, url, secret, plant_id)
    if not validation.accepted:
        raise BadRequest(f"subscription refused: {validation.reason()}")
    await _plant(rt, who.org_id, plant_id)  # still there after the handshake
    return await create_subscription(
        rt, org_id=who.org_id, plant_id=plant_id, client_id=who.client_id, url=url,
        secret=secret, verified=validation.verified,
    )


@router.get("/subscription", operation_id="listPlantSubscriptions",
            summary="This application's subscriptions (204 when none)",
            responses={204: {"description": "No subscription yet"}})
async def subscriptions(who: CallerDep, rt: RuntimeDep) -> Response:
    who.need(READ)
    async with rt.db.read() as conn:
        rows = await Repository(conn).subscriptions_of_client(who.org_id, who.client_id)
    if not rows:
        return Response(status_code=204)
    return JSON([_subscription(r) for r in rows])


# response_class: the 200 has no body, so the schema must not promise JSON.
@router.delete("/plants/{plant_id}/subscription/{subscription_id}",
               operation_id="deletePlantSubscription",
               summary="Unsubscribe (200, as the original answers)", response_class=Response)
async def unsubscribe(
    plant_id: str, subscription_id: str, who: CallerDep, rt: RuntimeDep
) -> Response:
    who.need(READ)
    async with rt.db.write() as conn:
        repo = Repository(conn)
        row = await repo.get_plant_subscription(who.org_id, plant_id, subscription_id)
        # Another application's subscription is as unknown as a missing one.
        if row is None or row.client_id != who.client_id:
            raise NotFound(f"subscription '{subscription_id}' not found")
        await end_subscriptions(repo, who.org_id, [row], now_ms())
    return Response(status_code=200)
