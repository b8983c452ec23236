"""The HTTP client adapter: POSTs a webhook (``http11``) and reports what happened."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from yarl import URL

from hookstream.errors import ConnectError, DeliveryError, TargetRefused, TimeoutError_
from hookstream.pipeline.deliver.addresses import REFUSED_HINT, IPNetwork, TargetPolicy
from hookstream.pipeline.deliver.http11 import HttpError, Pool, Resolver, Target, Timeouts
from hookstream.pipeline.deliver.retry import ABORT_HEADER_VALUE

if TYPE_CHECKING:
    from hookstream.pipeline.deliver.brokers import Brokers
    from hookstream.settings import Settings

RESPONSE_EXCERPT = 1024
_DRAIN_LIMIT = 64 * 1024
_MOST_TARGETS = 4096  # URLs remembered parsed and checked


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """One POST's outcome: a status (when the receiver answered) or an error."""

    started_at: float
    duration_ms: int
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after: str | None = None
    abort: bool = False  # the receiver answered webhook-delivery: abort-message
    refused: bool = False  # the target is one outgoing requests may not reach (TargetRefused)
    timed_out: bool = False  # no complete answer within the timeout (TimeoutError_)
    # The connector's transform failed on this body: nothing was sent (TransformFailed).
    transform_failed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class SystemResolver:
    """The system's name lookups (``getaddrinfo`` in the loop's threads), in the shape of
    aiohttp's resolvers (which tests inject); aiohttp itself is not imported by a worker."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[dict[str, Any]]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG
        )
        answers = []
        for fam, _, proto, _, address in infos:
            addr = address[0]
            if fam == socket.AF_INET6 and len(address) > 3 and address[3]:
                addr = f"{addr}%{address[3]}"  # link-local: the interface goes with it
            answers.append({"hostname": host, "host": addr, "port": address[1],
                            "family": fam, "proto": proto, "flags": socket.AI_NUMERICHOST})
        if not answers:
            raise OSError(f"{host} has no address")
        return answers

    async def close(self) -> None:
        return None


class GuardedResolver:
    """Resolves names and drops addresses outgoing requests may not reach.

    Connecting to the address checked here (not a second lookup) is what defeats DNS
    rebinding.
    """

    def __init__(self, policy: TargetPolicy, inner: Resolver | None = None) -> None:
        self._inner = inner or SystemResolver()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        results = await self._inner.resolve(host, port, family)
        allowed, refused = [], []
        for r in results:
            why = self._policy.address_refusal(r["host"])
            if why is None:
                allowed.append(r)
            else:
                refused.append(f"{r['host']}: {why}")
        if not allowed:
            raise TargetRefused(
                f"{host} resolves only to refused addresses ({'; '.join(refused) or 'none'}); "
                + REFUSED_HINT
            )
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class Sender:
    """Every POST of a worker: keep-alive pools by destination (``http11.Pool``), guarded DNS."""

    def __init__(
        self,
        *,
        allow_private: bool,
        connect_timeout: float,
        total_timeout: float,
        max_connections: int,
        allowed_networks: Iterable[IPNetwork | str] = (),
        https_only: bool = False,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``resolver`` replaces the system's DNS lookups (tests), its answers guarded;
        ``ssl_context`` the system's trusted roots."""
        networks = tuple(ipaddress.ip_network(n) for n in allowed_networks)
        self.policy = TargetPolicy(allow_private, networks, https_only)
        self._timeouts = Timeouts(connect=connect_timeout, total=total_timeout)
        self._targets: dict[str, Target | TargetRefused] = {}
        self._pool = Pool(limit=max_connections, resolver=GuardedResolver(self.policy, resolver),
                          ssl_context=ssl_context)
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._brokers: Brokers | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, max_connections: int, resolver: Resolver | None = None
    ) -> Sender:
        """A sender with the deployment's timeouts and target rules."""
        return cls(
            allow_private=settings.allow_private_targets,
            allowed_networks=settings.allowed_target_networks,
            https_only=settings.https_only,
            connect_timeout=settings.connect_timeout,
            total_timeout=settings.request_timeout,
            max_connections=max_connections,
            resolver=resolver,
        )

    def check_target(self, url: str) -> Target:
        """The URL, parsed; TargetRefused by its scheme or IP-literal host (names are checked
        by the resolver, and an IP literal is connected to without one).

        Remembered per URL: a connector's few routes are parsed once, not per delivery."""
        known = self._targets.get(url)
        if known is None:
            why = self.policy.url_refusal(url)
            known = TargetRefused(why) if why is not None else Target.of(URL(url))
            if len(self._targets) >= _MOST_TARGETS:
                self._targets.clear()
            self._targets[url] = known
        if isinstance(known, TargetRefused):
            raise TargetRefused(str(known))
        return known

    def clear_dns_cache(self) -> None:
        """Look every name up again at its next connection."""
        self._pool.clear_dns_cache()

    def timeout(self, connect: float | None, total: float | None) -> Timeouts:
        """A connector's own timeouts, falling back to the deployment's."""
        if connect is None and total is None:
            return self._timeouts
        return Timeouts(connect=connect or self._timeouts.connect,
                        total=total or self._timeouts.total)

    async def post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        timeout: Timeouts | None = None,
    ) -> AttemptResult:
        started = time.time()
        t0 = time.perf_counter()

        def done(**kw: Any) -> AttemptResult:
            return AttemptResult(
                started_at=started, duration_ms=int((time.perf_counter() - t0) * 1000), **kw
            )

        try:
            resp = await self._pool.post(
                self.check_target(url), headers, body, timeout or self._timeouts,
                excerpt=RESPONSE_EXCERPT, drain=_DRAIN_LIMIT,
            )
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded attempt
            # A refused target is not worth retrying: the policy gives up on it at once.
            mapped = map_error(exc)
            return done(error=describe_error(exc), refused=isinstance(mapped, TargetRefused),
                        timed_out=isinstance(mapped, TimeoutError_))
        return done(
            status_code=resp.status,
            # PostgreSQL's text refuses NUL; the excerpt is for people anyway.
            response_body=resp.body.decode("utf-8", "replace").replace("\x00", "\ufffd")
            or None,
            retry_after=resp.headers.get("retry-after"),
            abort=resp.headers.get("webhook-delivery", "").strip().lower() == ABORT_HEADER_VALUE,
        )

    async def post_form(
        self, url: str, form: dict[str, str], basic: tuple[str, str], limit: int = 64 * 1024
    ) -> tuple[int, bytes]:
        """POST a form (an OAuth2 token request); the status and up to ``limit`` bytes of body.

        Failures raise the most specific DeliveryError.
        """
        try:
            parsed = self.check_target(url)
            # RFC 6749 2.3.1: client id and secret are form-encoded, then HTTP Basic.
            pair = f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}".encode()
            headers = {
                "Accept": "application/json",
                "Authorization": "Basic " + base64.b64encode(pair).decode(),
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "hookstream/0.1",
            }
            resp = await self._pool.post(parsed, headers, urlencode(form).encode(),
                                         self._timeouts, excerpt=limit, drain=limit)
            return resp.status, resp.body
        except DeliveryError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to the most specific DeliveryError
            raise map_error(exc) from exc

    @property
    def brokers(self) -> Brokers:
        """Broker connectors' connections (opened on first use), under the same guard."""
        if self._brokers is None:
            from hookstream.pipeline.deliver.brokers import Brokers  # imports this module

            self._brokers = Brokers(GuardedResolver(self.policy, self._resolver),
                                    tls_only=self.policy.https_only,
                                    ssl_context=self._ssl_context)
        return self._brokers

    async def close(self) -> None:
        if self._brokers is not None:
            await self._brokers.close()
        await self._pool.close()


def describe_error(exc: BaseException) -> str:
    """A short, stable description of a client failure for the attempt log."""
    mapped = map_error(exc)
    return f"{type(mapped).__name__.rstrip('_')}: {mapped}"


def map_error(exc: BaseException) -> DeliveryError:
    """The most specific DeliveryError for a client or OS error (original in __cause__)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TargetRefused):
            return cause
        cause = cause.__cause__
    mapped: DeliveryError
    if isinstance(exc, TimeoutError):
        mapped = TimeoutError_("no complete answer within the timeout")
    elif isinstance(exc, OSError | HttpError):
        mapped = ConnectError(str(exc) or type(exc).__name__)
    else:
        mapped = DeliveryError(str(exc) or type(exc).__name__)
    mapped.__cause__ = exc
    return mapped
