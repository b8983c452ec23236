"""The write lock SQLite writers of several processes queue on (``storage.database.FileLock``).

Two locks on one file exclude each other like two processes do (``flock`` is per open file)."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

from hookstream.storage.database import FileLock


def free(path: Path) -> bool:
    """Whether another open file could take the lock now."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops a lock taken here
    return True


async def test_a_waiter_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "db.lock"
    first, second = FileLock(path), FileLock(path)
    try:
        await first.acquire()
        waiting = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.05)  # give the waiter time to block (it must not get the lock)
        assert not waiting.done()
        first.release()
        await asyncio.wait_for(waiting, 5)
        assert not free(path)
        second.release()
        assert free(path)
    finally:
        first.close()
        second.close()


async def test_a_cancelled_waiter_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / "db.lock"
    first, second = FileLock(path), FileLock(path)
    try:
        await first.acquire()
        waiting = asyncio.create_task(second.acquire())
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        first.release()
        # The waiter's thread takes the lock once it is released, then gives it back.
        for _ in range(200):
            if free(path):
                break
            await asyncio.sleep(0.01)  # poll: the thread's release is not signalled
        assert free(path)
    finally:
        first.close()
        second.close()
