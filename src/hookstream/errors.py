"""The exceptions hookstream raises.

One base class; lower-level errors are mapped to the most specific subclass with the
original kept in ``__cause__``::

    HookstreamError
    ├── ConfigurationError          settings missing or unsafe
    ├── StorageError                the database failed or is not ready
    │   └── SchemaOutOfDate         migrations have not been applied
    ├── Refused                     a request the domain refuses: a code, a message, details;
    │   │                           each transport maps it to its answer
    │   ├── BadRequest
    │   ├── Unauthorized
    │   ├── Forbidden
    │   ├── NotFound
    │   ├── Conflict
    │   ├── PayloadTooLarge
    │   ├── ValidationFailed
    │   └── TooManyRequests         with retry_after (a Retry-After header)
    ├── DeliveryError               one attempt to reach a receiver failed
    │   ├── TransformFailed         a connector's transform failed or ran past its time
    │   ├── TargetRefused           the address is not allowed (private network)
    │   ├── ConnectError            could not connect (DNS, refused, TLS)
    │   ├── TimeoutError_           no complete answer within the timeout
    │   └── ResponseError           the receiver answered, not with 2xx
    └── InvalidInput                input the core refuses, whatever carried it (also a
        │                           ValueError); each transport maps it to its answer
        ├── MessageFormatError      not one valid datastream message or an array of them
        │   └── MalformedJson       not JSON at all
        ├── InvalidSecret           a signing secret that is not whsec_ + base64
        ├── SignatureMismatch       a received webhook that does not verify
        ├── InvalidTransform        a transform that does not parse, or in an unknown language
        └── FormError               a form body this server does not read

The errors carry no HTTP status: ``hookstream.web.statuses`` maps each Refused subclass to
one (by its nearest mapped base), for the API's handler in ``hookstream.web.api.errors`` and
for the console.

Plug-ins derive their own errors from HookstreamError (the thermostat cloud's CommandError and
ModuleGone live in ``thermostat.state`` and ``thermostat.changes``).
"""

from __future__ import annotations

from typing import Any


class HookstreamError(Exception):
    """Base class of every error hookstream raises on purpose."""


class ConfigurationError(HookstreamError):
    """A setting is missing, malformed or unsafe for this deployment."""


class StorageError(HookstreamError):
    """The database could not do what was asked."""


class SchemaOutOfDate(StorageError):
    """The database schema is behind the code: run ``hookstream migrate``."""


class Refused(HookstreamError):
    """A request the domain refuses; each transport maps it to its answer.

    ``code`` and ``message`` say why, ``details`` (optional) by field; ``headers`` are the
    ones an HTTP answer adds (Retry-After)."""

    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers = headers

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class BadRequest(Refused):
    code = "bad_request"


class Unauthorized(Refused):
    code = "unauthorized"


class Forbidden(Refused):
    code = "forbidden"


class NotFound(Refused):
    code = "not_found"


class Conflict(Refused):
    code = "conflict"


class PayloadTooLarge(Refused):
    code = "payload_too_large"


class ValidationFailed(Refused):
    code = "validation_error"


class TooManyRequests(Refused):
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class DeliveryError(HookstreamError):
    """One attempt to deliver a webhook failed; the retry policy decides what follows."""


class TargetRefused(DeliveryError):
    """The receiver's address is in a network hookstream may not call."""


class ConnectError(DeliveryError):
    """The receiver could not be reached (DNS, connection refused, TLS)."""


class TimeoutError_(DeliveryError):  # noqa: N801 - the builtin name is taken
    """The receiver did not answer completely within the timeout."""


class ResponseError(DeliveryError):
    """The receiver answered with a status that is not 2xx."""


class TransformFailed(DeliveryError):
    """A connector's transform failed on a message, or ran past its time limit: that
    delivery fails at once (retrying the same message and expression cannot help)."""


class InvalidInput(HookstreamError, ValueError):
    """Input the core refuses; transports answer it (HTTP 400/422, an MQTT refusal, a CLI exit)."""


class MessageFormatError(InvalidInput):
    """A body that is not one valid message or an array of them; ``details`` lists why."""

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class MalformedJson(MessageFormatError):
    """A body that is not JSON at all (answered apart: 400, ``malformed_json``)."""


class InvalidSecret(InvalidInput):
    """A signing secret that is not ``whsec_`` + base64 of 24 to 64 bytes."""


class SignatureMismatch(InvalidInput):
    """A webhook whose signature, id or timestamp does not check out."""


class InvalidTransform(InvalidInput):
    """A transform that does not parse, or in a language hookstream does not know; ``field``
    names which part (``language`` or ``expression``)."""

    def __init__(self, message: str, field: str = "expression") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class FormError(InvalidInput):
    """The body is not a form this server reads (type, size, encoding)."""
