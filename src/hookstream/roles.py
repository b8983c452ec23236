"""The process roles (API, delivery worker, MQTT bridge) run together until SIGINT or SIGTERM.

Each role is imported only when the process runs it: ``hookstream worker`` never loads the
API, the console or the thermostat cloud, and ``hookstream mqtt`` never loads the HTTP sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hookstream import heap
from hookstream.services.runtime import Runtime

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)

# Set in a worker process ``serve`` started: its standard input is the parent's wake-up pipe.
SUPERVISED = "HOOKSTREAM_SUPERVISED"
# Set in an API process ``serve`` started: the listening socket it serves on, and the pipe
# its ingest wakes ``serve``'s delivery workers through.
LISTEN_FD = "HOOKSTREAM_LISTEN_FD"
WAKE_FD = "HOOKSTREAM_WAKE_FD"
READY_LINE = b"hookstream ready:"
# How long a worker process gets to finish its requests and write their outcomes at shutdown.
STOP_GRACE = 30.0


class RoleProcesses:
    """``serve``'s child processes of one role: delivery workers (``hookstream worker``) or
    further API processes (``hookstream api``, on the listening socket ``serve`` opened).

    Their log lines are relayed to this process's standard error; a child's readiness line
    is read (not relayed) so the parent tells one "hookstream ready" for all. Each child's
    standard input is a wake-up pipe: a byte per batch of ``Wakeup.set`` in the parent (on
    SQLite there is no NOTIFY), and end-of-file when the parent is gone, killed or not, so
    no child outlives it. A child that dies is started again after a second.
    """

    def __init__(self, role: str, count: int, on_ready: Callable[[], None], *,
                 env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()) -> None:
        self._role = role
        self._count = count
        self._on_ready = on_ready
        self._env = env or {}
        self._pass_fds = pass_fds
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._ready: set[int] = set()
        self._stopping = False
        self._wake_pending = False

    def wake(self) -> None:
        """Forward a wake-up to every child, at most once per turn of the event loop."""
        if self._wake_pending:
            return
        self._wake_pending = True
        asyncio.get_running_loop().call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_pending = False
        for proc in self._procs.values():
            if proc.stdin is not None and not proc.stdin.is_closing():
                with contextlib.suppress(OSError, RuntimeError):
                    proc.stdin.write(b"w")

    async def run(self) -> None:
        if self._count == 0:
            self._on_ready()
            return
        await asyncio.gather(*(self._keep(i) for i in range(self._count)))

    async def _keep(self, index: int) -> None:
        env = {**os.environ, SUPERVISED: str(os.getpid()), **self._env}
        env.pop("HOOKSTREAM_METRICS_LISTEN", None)  # the parent's /metrics covers them
        env.pop("NOTIFY_SOCKET", None)  # the parent tells systemd once all are ready
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hookstream", self._role, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, pass_fds=self._pass_fds,
                # Its own session: a terminal's Ctrl-C reaches the parent, which stops it.
                start_new_session=True,
            )
            self._procs[index] = proc
            assert proc.stdout is not None
            async for line in proc.stdout:
                if READY_LINE in line and index not in self._ready:
                    self._ready.add(index)
                    if len(self._ready) == self._count:
                        self._on_ready()
                    continue
                sys.stderr.buffer.write(line)
                sys.stderr.flush()
            code = await proc.wait()
            self._procs.pop(index, None)
            _process_gone(proc.pid)
            if self._stopping:
                return
            log.error("%s process %d (pid %d) exited with %s; starting it again in 1 s",
                      self._role, index + 1, proc.pid, code)
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Ask every child to stop (SIGTERM), and kill one still running after STOP_GRACE."""
        self._stopping = True
        procs = list(self._procs.values())
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE)
            except TimeoutError:
                log.error("%s process %d did not stop in %.0f s; killing it",
                          self._role, proc.pid, STOP_GRACE)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


class SharedListener:
    """The listening socket ``serve``'s API processes share (the kernel hands each new
    connection to one of them), and the pipe through which the other API processes wake
    this process's delivery workers (on SQLite there is no NOTIFY to do it)."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind((host, port))
        self.socket.listen(2048)
        self.socket.set_inheritable(True)
        self._wake_read, self.wake_fd = os.pipe()
        os.set_inheritable(self.wake_fd, True)

    def child_env(self) -> dict[str, str]:
        return {LISTEN_FD: str(self.socket.fileno()), WAKE_FD: str(self.wake_fd)}

    @property
    def fds(self) -> tuple[int, ...]:
        return (self.socket.fileno(), self.wake_fd)

    async def relay_wakeups(self, wakeup: Any) -> None:
        """Each byte another API process writes is a wake-up of this process's workers."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(self._wake_read, "rb"))
        try:
            while await reader.read(4096):
                wakeup.set()
        finally:
            transport.close()

    def close(self) -> None:
        self.socket.close()
        with contextlib.suppress(OSError):
            os.close(self.wake_fd)


def _wake_parent(fd: int) -> Callable[[], None]:
    """A ``Wakeup`` forward that writes a byte to ``serve``'s wake pipe, once a loop turn."""
    pending = False

    def send() -> None:
        nonlocal pending
        pending = False
        with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending anyway
            os.write(fd, b"w")

    def wake() -> None:
        nonlocal pending
        if not pending:
            pending = True
            asyncio.get_running_loop().call_soon(send)

    os.set_blocking(fd, False)
    return wake


def _process_gone(pid: int) -> None:
    """Drop a finished process's live gauges from the shared metrics (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


async def _read_wakeups(wakeup: Any, stop: asyncio.Event) -> None:
    """In a supervised worker: standard input's bytes are wake-ups; its end, a stop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        wakeup.set()
    log.info("the serve process is gone; stopping")
    stop.set()

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


async def run_roles(
    runtime: Runtime, *, api: bool, worker: bool, mqtt: bool = False, worker_processes: int = 0,
    api_processes: int = 1,
) -> None:
    """Run the API, a delivery worker and/or the MQTT bridge until SIGINT or SIGTERM; with
    ``worker_processes``, that many workers in child processes (``serve``) instead; with
    ``api_processes`` above one, the API in that many processes sharing one socket."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    settings, readiness = runtime.settings, runtime.readiness
    for role, on in (("api", api), ("worker", worker or worker_processes > 0), ("mqtt", mqtt)):
        if on:
            readiness.expect(role)
    health = None
    if not api and settings.metrics_listen:
        from hookstream.services.health import HealthServer

        health = HealthServer(settings.metrics_listen, runtime.db, readiness)
        health.start()
    # The API is ready once this process listens and, with API processes, all of them do.
    api_waits = {"here", "children"} if api and api_processes > 1 else {"here"}

    def api_ready(part: str) -> None:
        api_waits.discard(part)
        if not api_waits:
            readiness.ready("api")

    server = _uvicorn_server(runtime, lambda: api_ready("here")) if api else None
    tasks: dict[str, asyncio.Task[None]] = {}
    listener = api_children = None
    sockets: list[socket.socket] | None = None
    if api and api_processes > 1:
        listener = SharedListener(settings.host, settings.port)
        sockets = [listener.socket]
        api_children = RoleProcesses("api", api_processes - 1, lambda: api_ready("children"),
                                     env=listener.child_env(), pass_fds=listener.fds)
        tasks["api-processes"] = asyncio.create_task(api_children.run())
        tasks["api-wakeups"] = asyncio.create_task(listener.relay_wakeups(runtime.wakeup))
    elif api and os.environ.get(LISTEN_FD):  # one of serve's API processes
        sockets = [socket.socket(fileno=int(os.environ[LISTEN_FD]))]
        runtime.wakeup.forward_to(_wake_parent(int(os.environ[WAKE_FD])))
    if server is not None:
        tasks["api"] = asyncio.create_task(server.serve(sockets=sockets))
    if mqtt:
        from hookstream.mqtt.bridge import Bridge

        bridge = Bridge(settings, runtime.intake, runtime.wakeup,
                        on_subscribed=lambda: readiness.ready("mqtt"))
        tasks["mqtt"] = asyncio.create_task(bridge.run())
    if worker:
        from hookstream.pipeline.record.retention import Purger
        from hookstream.pipeline.worker import Worker

        delivery = Worker(settings, runtime.db, runtime.box, runtime.wakeup,
                          on_ready=lambda: readiness.ready("worker"), tracing=runtime.tracing)
        tasks["worker"] = asyncio.create_task(delivery.run())
        # Retention runs where workers run (every such process; they share the work).
        tasks["retention"] = asyncio.create_task(Purger(runtime.db, settings).run())
    # serve's first process samples the queue for every process (one /metrics).
    if (api or settings.metrics_listen) and not os.environ.get(LISTEN_FD):
        from hookstream.pipeline.record.queue_sampler import QueueSampler

        tasks["metrics"] = asyncio.create_task(
            QueueSampler(runtime.db, settings.metrics_sample_seconds).run()
        )
    children = None
    if worker_processes > 0:
        children = RoleProcesses("worker", worker_processes, lambda: readiness.ready("worker"))
        runtime.wakeup.forward_to(children.wake)
        tasks["workers"] = asyncio.create_task(children.run())
    if os.environ.get(SUPERVISED):
        tasks["wakeups"] = asyncio.create_task(_read_wakeups(runtime.wakeup, stop))
    # Every role is built and its modules imported: the heap of startup stays as it is.
    heap.settle()
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
        if api_children is not None:
            await api_children.stop()
        if "mqtt" in tasks:
            await asyncio.gather(tasks["mqtt"], return_exceptions=True)
        if children is not None:
            await children.stop()
        for role in ("metrics", "retention", "worker", "wakeups", "api-wakeups"):
            if role in tasks:
                tasks[role].cancel()
        results = await asyncio.gather(*tasks.values(), return_exceptions=True)
        if health is not None:
            await asyncio.to_thread(health.close)
        if listener is not None:
            listener.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for result in results:
        if isinstance(result, Exception):
            raise result
