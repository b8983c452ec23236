"""The process roles (API, delivery worker, MQTT bridge) run together until SIGINT or SIGTERM.

Each role is imported only when the process runs it: ``hookstream worker`` never loads the
API, the console or the thermostat cloud, and ``hookstream mqtt`` never loads the HTTP sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hookstream.services.runtime import Runtime

if TYPE_CHECKING:
    import uvicorn

def _uvicorn_server(runtime: Runtime, on_started: Callable[[], None]) -> uvicorn.Server:
    import uvicorn

    from hookstream.web.app import create_app

    class Server(uvicorn.Server):
        """uvicorn without its own signal handling (run_roles stops every role in order), and
        telling readiness once it listens."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                on_started()

    config = uvicorn.Config(
        create_app(runtime),
        host=runtime.settings.host,
        port=runtime.settings.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="none",
        # A request still running at shutdown gets this long; its work is transactional.
        timeout_graceful_shutdown=10,
    )
    return Server(config)


async def run_roles(runtime: Runtime, *, api: bool, worker: bool, mqtt: bool = False) -> None:
    """Run the API, a delivery worker and/or the MQTT bridge until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings, readiness = runtime.settings, runtime.readiness
    for role, on in (("api", api), ("worker", worker), ("mqtt", mqtt)):
        if on:
            readiness.expect(role)
    health = None
    if not api and settings.metrics_listen:
        from hookstream.services.health import HealthServer

        health = HealthServer(settings.metrics_listen, runtime.db, readiness)
        health.start()
    server = _uvicorn_server(runtime, lambda: readiness.ready("api")) if api else None
    tasks: dict[str, asyncio.Task[None]] = {}
    if server is not None:
        tasks["api"] = asyncio.create_task(server.serve())
    if mqtt:
        from hookstream.mqtt.bridge import Bridge

        bridge = Bridge(settings, runtime.intake, runtime.wakeup,
                        on_subscribed=lambda: readiness.ready("mqtt"))
        tasks["mqtt"] = asyncio.create_task(bridge.run())
    if worker:
        from hookstream.pipeline.record.retention import Purger
        from hookstream.pipeline.worker import Worker

        delivery = Worker(settings, runtime.db, runtime.box, runtime.wakeup,
                          on_ready=lambda: readiness.ready("worker"))
        tasks["worker"] = asyncio.create_task(delivery.run())
        # Retention runs where workers run (every such process; they share the work).
        tasks["retention"] = asyncio.create_task(Purger(runtime.db, settings).run())
    if api or settings.metrics_listen:
        from hookstream.pipeline.record.queue_sampler import QueueSampler

        tasks["metrics"] = asyncio.create_task(
            QueueSampler(runtime.db, settings.metrics_sample_seconds).run()
        )
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopper, *tasks.values()], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        # Stop taking requests and MQTT messages first, then let the worker write what it has.
        if "mqtt" in tasks:
            tasks["mqtt"].cancel()  # finishes the batch it is storing, acks it, disconnects
        if server is not None:
            server.should_exit = True
            await asyncio.gather(tasks["api"], return_exceptions=True)
        if "mqtt" in tasks:
            await asyncio.gather(tasks["mqtt"], return_exceptions=True)
        for role in ("metrics", "retention", "worker"):
            if role in tasks:
                tasks[role].cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        if health is not None:
            await asyncio.to_thread(health.close)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for result in results:
        if isinstance(result, Exception):
            raise result
