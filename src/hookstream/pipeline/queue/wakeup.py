"""Wake-up hints for the claimer. Hints only: the claimer also polls, so a lost hint delays
work by at most one poll interval and never loses it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from hookstream.storage.database import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class Wakeup:
    """An event the claimer sleeps on, set by in-process producers, timers and NOTIFY."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._forward: list[Callable[[], None]] = []

    def forward_to(self, callback: Callable[[], None]) -> None:
        """Also call ``callback`` on every ``set`` (``serve`` wakes its worker processes)."""
        self._forward.append(callback)

    def set(self) -> None:
        self._event.set()
        for callback in self._forward:
            callback()

    def nudge(self) -> None:
        """Wake this process's claimer only (its own attempts ended: not news for others)."""
        self._event.set()

    def at(self, when: float) -> None:
        """Wake at loop time ``when`` (keeps only the earliest pending timer)."""
        if when >= self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = when
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._event.set()

    async def wait(self, timeout: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the event is set, and the claim loop then never stops.
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            pass
        self._event.clear()


class PostgresListener:
    """LISTENs on the due channel with its own connection and reconnects when it drops."""

    def __init__(self, dsn: str, wakeup: Wakeup) -> None:
        self._dsn = dsn
        self._wakeup = wakeup

    def _on_notify(self, *_args: Any) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        delay = 0.5
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                delay = 0.5
                self._wakeup.set()  # anything notified while disconnected
                while not conn.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the listener is a hint; polling goes on
                log.warning("LISTEN connection failed (%s); polling meanwhile", exc)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close(timeout=2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
