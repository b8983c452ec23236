"""The HTTP status of each refusal, shared by the API's error handler and the console.

The domain's errors (``hookstream.errors.Refused`` and its subclasses) carry no HTTP codes;
this is where they get one. ``status_for`` walks the error's class hierarchy, so a subclass
defined elsewhere (a plug-in's, ``CsrfRejected``) answers with the status of its nearest
mapped base.
"""

from __future__ import annotations

from hookstream.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Refused,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)

STATUS: dict[type[Refused], int] = {
    Refused: 400,
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    TooManyRequests: 429,
}


def status_for(exc: Refused) -> int:
    """The HTTP status answering ``exc``: that of the first class in its MRO in ``STATUS``."""
    for cls in type(exc).__mro__:
        if issubclass(cls, Refused) and cls in STATUS:
            return STATUS[cls]
    return STATUS[Refused]
