"""A connector's transform: a JSONata expression that reshapes the body sent (pure, no I/O).

``compile`` checks an expression (``InvalidTransform`` naming the part at fault);
``Transform.apply`` turns a stored body (one message, or the JSON array of a batch) into the
JSON bytes to send, or raises ``TransformFailed``. The engine is jlens (a Rust JSONata,
chosen by measurement: bench/transforms.py); nothing else imports it.

``apply`` runs in the caller's process with the engine's own limits (time, sizes, depth).
Those stop loops and recursion, but the engine checks its clock between steps and one
built-in call on a huge value can outlast them, so the worker and the API run it in a child
process they can kill (``sandbox``), which is what really bounds the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import jlens

from hookstream.errors import InvalidTransform, TransformFailed

LANGUAGES: Final = ("jsonata",)
MAX_EXPRESSION_LENGTH: Final = 20_000

# Beyond the time limit, what one evaluation may build: a value message is about 500 bytes
# and a batch at most 1,000 of them, so these leave room for any reshape of that.
MAX_DEPTH: Final = 200
MAX_ARRAY_LENGTH: Final = 100_000
MAX_STRING_LENGTH: Final = 4_000_000
MAX_RESULT_SIZE: Final = 8_000_000


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidTransform(
            f"unknown transform language '{language}'; the one supported is 'jsonata'",
            field="language",
        )
    return language


def _engine_error(exc: Exception) -> str:
    """An engine error as one line for a person: its message, JSONata code and position."""
    text = str(exc).strip() or type(exc).__name__
    code = getattr(exc, "code", None)
    position = getattr(exc, "position", None)
    where = f" at position {position}" if isinstance(position, int) else ""
    return f"{text} ({code}{where})" if code else text


class TimeLimit(TransformFailed):
    """The engine stopped the evaluation at its (wall-clock) time limit."""


@dataclass(frozen=True, slots=True, eq=False)
class Transform:
    """A compiled expression; ``apply`` may be called from any thread."""

    language: str
    expression: str
    _compiled: jlens.Expression

    def apply(self, body: bytes, timeout_ms: float) -> bytes:
        """The JSON bytes to send for ``body`` (JSON), or ``TransformFailed`` saying why: the
        expression failed or its result is undefined (nothing to send); ``TimeLimit`` when
        the engine stopped it after ``timeout_ms`` of wall-clock time."""
        try:
            result = self._compiled.evaluate_json(
                body.decode(), timeout=timeout_ms / 1000, max_depth=MAX_DEPTH,
                max_array_length=MAX_ARRAY_LENGTH, max_string_length=MAX_STRING_LENGTH,
                max_result_size=MAX_RESULT_SIZE,
            )
        except (jlens.JlensError, ValueError) as exc:
            if getattr(exc, "code", None) == "D1012":
                raise TimeLimit(time_limit_text(timeout_ms)) from None
            raise TransformFailed(_engine_error(exc)) from None
        if result is None:
            raise TransformFailed(
                "the expression's result is undefined (nothing matched): there is no body "
                "to send"
            )
        return result.encode()


def time_limit_text(timeout_ms: float) -> str:
    return f"the transform ran past its time limit of {timeout_ms:g} ms"


def compile(expression: str, language: str = "jsonata") -> Transform:  # noqa: A001 - the verb
    """``expression`` compiled, or ``InvalidTransform`` naming ``language`` or
    ``expression``."""
    check_language(language)
    if not expression.strip():
        raise InvalidTransform("the expression is empty")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidTransform(
            f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        compiled = jlens.Expression(expression)
    except (jlens.JlensError, ValueError) as exc:
        raise InvalidTransform(f"the expression does not parse: {_engine_error(exc)}") from None
    return Transform(language, expression, compiled)
