"""Transforms run in child processes that can be killed: what bounds their time.

An evaluation is CPU-bound and cannot be interrupted from outside: the engine's own time
checks stop loops and recursion, but one built-in call on a huge value (a range of ten million
items mapped over another) runs for seconds or minutes between two checks, and a thread
cannot be stopped. So ``TransformRunner.apply`` sends the expression and the body to a small
pool of child processes (``python -m hookstream.pipeline.deliver.sandbox``) over pipes; the
child applies the engine's limits, and a child that has spent the time limit plus
``GRACE_MS`` of CPU on one evaluation without answering is killed (and replaced on the next
use): the transform has failed. The caller's event loop never runs an evaluation. A child also
caps its address space, so a runaway allocation ends that child, not the worker.

The limit is on CPU time, the evaluation's own (the child's, read from /proc), not on the wall
clock: on a busy machine a 10 µs evaluation may wait 100 ms for a core, and failing a good
expression for that would fail deliveries for good (a transform's failure is not retried).
Where /proc cannot be read, and in any case after ``WALL_CAP_SECONDS``, the wall clock
decides.

One round trip costs about 0.2 ms (an evaluation alone, 5-10 µs: bench/transforms.py), and
the two children answer 4,000-5,000 a second together on a busy 2-core machine; they start on
first use (about 0.1 s), so a process without transforms starts none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import sys
import time
from collections import OrderedDict
from typing import BinaryIO

from hookstream.errors import InvalidTransform, TransformFailed
from hookstream.pipeline.deliver import transform

log = logging.getLogger(__name__)

# The request: expression length, body length, time limit in ms; then the two.
_REQUEST = struct.Struct(">IId")
# The answer: 0 (the result follows) or 1 (an error's text follows), its length.
_ANSWER = struct.Struct(">BI")
# How much CPU past the time limit the parent lets the child spend before it kills it.
GRACE_MS = 25.0
# However starved of CPU a child is, it answers within this (else it is killed: a failure).
WALL_CAP_SECONDS = 5.0
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# What a child writes once it is ready, and how long it may take to start.
_READY = b"R"
STARTUP_SECONDS = 30.0
# Compiled expressions a child keeps (by their text).
_CACHE = 256
# A child's address space: room for the interpreter and the engine's limits, not for a runaway.
ADDRESS_SPACE = 2 * 1024**3


class _Child:
    """One child process and its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    async def ask(self, expression: bytes, body: bytes, timeout_ms: float) -> tuple[int, bytes]:
        self.stdin.write(_REQUEST.pack(len(expression), len(body), timeout_ms) + expression
                         + body)
        await self.stdin.drain()
        status, length = _ANSWER.unpack(await self.stdout.readexactly(_ANSWER.size))
        return status, await self.stdout.readexactly(length)

    def cpu_seconds(self) -> float | None:
        """The CPU time the child has used (user + system), or None where it cannot be read."""
        try:
            with open(f"/proc/{self.proc.pid}/stat", "rb") as stat:
                # After the command's name (in parentheses, which may hold spaces): fields 14
                # and 15 of proc(5), utime and stime, are the 12th and 13th.
                fields = stat.read().rpartition(b")")[2].split()
            return (int(fields[11]) + int(fields[12])) / _TICKS
        except (OSError, IndexError, ValueError):
            return None

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()


class TransformRunner:
    """Applies transforms in up to ``processes`` child processes, ``timeout_ms`` each."""

    def __init__(self, timeout_ms: float, processes: int = 2) -> None:
        self.timeout_ms = timeout_ms
        self._processes = processes
        self._idle: list[_Child] = []
        self._started = 0
        self._freed = asyncio.Condition()
        self._closed = False

    async def apply(self, expression: str, body: bytes) -> bytes:
        """The body to send: ``expression`` applied to ``body`` (JSON bytes), or
        ``TransformFailed`` (it failed, its result is undefined, or it ran past the limit)."""
        child = await self._acquire()
        started = time.monotonic()
        try:
            status, payload = await self._answer(child, expression, body)
        except TimeoutError:
            log.warning("a transform ran past %g ms (%.0f ms waited); its process is killed",
                        self.timeout_ms, (time.monotonic() - started) * 1000)
            await self._discard(child)
            raise TransformFailed(transform.time_limit_text(self.timeout_ms)) from None
        except (OSError, asyncio.IncompleteReadError):
            code = child.proc.returncode
            await self._discard(child)
            raise TransformFailed(
                f"the transform's process ended (exit status {code}): the expression may "
                "need more memory than a transform is given"
            ) from None
        except BaseException:
            # Cancelled mid-question: the answer would be read by the next caller.
            await asyncio.shield(self._discard(child))
            raise
        await self._release(child)
        if status != 0:
            raise TransformFailed(payload.decode(errors="replace"))
        return payload

    async def _answer(self, child: _Child, expression: str, body: bytes) -> tuple[int, bytes]:
        """The child's answer; TimeoutError once it has spent the limit and the grace period
        of CPU on it (or waited ``WALL_CAP_SECONDS``)."""
        budget = (self.timeout_ms + GRACE_MS) / 1000
        cpu_before = child.cpu_seconds()
        started = time.monotonic()
        asking = asyncio.ensure_future(child.ask(expression.encode(), body, self.timeout_ms))
        try:
            wait = budget
            while True:
                done, _ = await asyncio.wait({asking}, timeout=wait)
                if done:
                    return asking.result()
                cpu_now = child.cpu_seconds()
                if cpu_before is None or cpu_now is None:
                    raise TimeoutError  # no CPU clock: the wall clock decides
                spent = cpu_now - cpu_before
                left = budget - spent
                waited = time.monotonic() - started
                if left <= 0 or waited >= WALL_CAP_SECONDS:
                    raise TimeoutError
                # Starved, not slow: wait for the CPU it may still spend (at least one tick
                # of the CPU clock, which counts in 1/_TICKS s).
                wait = min(max(left, 1 / _TICKS), WALL_CAP_SECONDS - waited)
        finally:
            if not asking.done():
                asking.cancel()
                with contextlib.suppress(BaseException):
                    await asking

    async def close(self) -> None:
        """Stop the children (idle ones; busy ones are killed as their callers finish)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for child in idle:
            child.stdin.close()
            await child.kill()

    async def _acquire(self) -> _Child:
        async with self._freed:
            while not self._idle and self._started >= self._processes:
                await self._freed.wait()
            if self._idle:
                return self._idle.pop()
            self._started += 1
        proc = None
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", __name__,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            child = _Child(proc)
            # Started once it says so: its start (an interpreter, the engine) is not an
            # evaluation's time.
            ready = await asyncio.wait_for(child.stdout.readexactly(1), STARTUP_SECONDS)
            if ready != _READY:
                raise OSError(f"the transform process said {ready!r}")
        except BaseException:
            async with self._freed:
                self._started -= 1
                self._freed.notify()
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            raise
        return child

    async def _release(self, child: _Child) -> None:
        if self._closed:
            await child.kill()
            return
        async with self._freed:
            self._idle.append(child)
            self._freed.notify()

    async def _discard(self, child: _Child) -> None:
        await child.kill()
        async with self._freed:
            self._started -= 1
            self._freed.notify()


# --- the child -------------------------------------------------------------------------

def _read(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def _answer(stream: BinaryIO, status: int, payload: bytes) -> None:
    stream.write(_ANSWER.pack(status, len(payload)) + payload)
    stream.flush()


def _within(compiled: transform.Transform, body: bytes, limit_ms: float) -> bytes:
    """``compiled`` applied to ``body`` within ``limit_ms`` of this process's CPU time.

    The engine's own limit is on the wall clock: when it stops an evaluation that had far less
    of the CPU (the machine was busy), it runs again with more wall time."""
    wall_ms = limit_ms
    for _ in range(4):
        cpu_before = time.process_time()
        try:
            result = compiled.apply(body, wall_ms)
        except transform.TimeLimit:
            if (time.process_time() - cpu_before) * 1000 >= limit_ms / 2:
                break
            wall_ms *= 4
            continue
        if (time.process_time() - cpu_before) * 1000 > limit_ms:
            break  # one built-in call that finished late: late is late, however it ended
        return result
    raise TransformFailed(transform.time_limit_text(limit_ms))


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer requests until the parent closes the pipe."""
    compiled: OrderedDict[bytes, transform.Transform] = OrderedDict()
    stdout.write(_READY)
    stdout.flush()
    while True:
        header = _read(stdin, _REQUEST.size)
        if header is None:
            return
        expression_length, body_length, timeout_ms = _REQUEST.unpack(header)
        expression = _read(stdin, expression_length)
        body = _read(stdin, body_length)
        if expression is None or body is None:
            return
        try:
            compiled_expression = compiled.get(expression)
            if compiled_expression is None:
                compiled_expression = transform.compile(expression.decode())
                compiled[expression] = compiled_expression
                if len(compiled) > _CACHE:
                    compiled.popitem(last=False)
            else:
                compiled.move_to_end(expression)
            result = _within(compiled_expression, body, timeout_ms)
        except (TransformFailed, InvalidTransform) as exc:
            _answer(stdout, 1, str(exc).encode())
            continue
        _answer(stdout, 0, result)


def main() -> None:
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
