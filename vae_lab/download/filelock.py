"""An exclusive, cross-process lock on a file next to a download's partial file.

`flock` on POSIX (released by the kernel if the process dies, so a killed download never
leaves a stale lock), `msvcrt.locking` on Windows. Acquisition is polled so that a waiting
download can still be cancelled. The holder removes the lock file before unlocking; a waiter
that then locks the removed file notices (different inode) and tries again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from vae_lab.errors import DownloadError


class LockCancelled(DownloadError):
    """Cancelled while waiting for the lock."""


class FileLock:
    """An exclusive lock on `path`, polled so cancellation works; None wait = wait forever."""

    def __init__(self, path: Path, cancelled: Callable[[], bool], wait: float | None, what: str = "this file"):
        self.path, self.cancelled, self.wait, self.what = path, cancelled, wait, what
        self.fd: int | None = None

    def acquire(self) -> bool:
        """True if it had to wait for another holder."""
        waited = False
        start = time.monotonic()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if _try_lock(fd):
                # The holder before us may have removed the file after we opened it.
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if same:
                    self.fd = fd
                    return waited
                _unlock(fd)
                os.close(fd)
                continue
            os.close(fd)
            waited = True
            if self.cancelled():
                raise LockCancelled("cancelled while waiting for another download of the same file")
            if self.wait is not None and time.monotonic() - start > self.wait:
                raise DownloadError(f"another download of {self.what} is still running")
            time.sleep(0.05)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # before unlocking, so a waiter re-checks the inode
        except OSError:
            pass
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        try:
            os.lseek(fd, 0, 0)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        except OSError:
            pass
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
