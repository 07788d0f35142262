"""The one implementation of VAE Lab's small JSON state files (hash cache, precision memory,
per-checkpoint preferences, download bookkeeping).

    prefs = JsonStateFile(path, clean=_clean_prefs, empty=dict, what="VAE preferences")
    prefs.read()                              # never raises: missing/corrupt/wrong types -> cleaned or empty
    prefs.update(lambda data: data.update(x=1))   # read-modify-write under a cross-process lock

Why each part:

* **Validated read, never fatal.** State files are written by this program but live in folders
  anyone can edit, copy between versions or truncate. A file that is not JSON, or whose parts
  have the wrong types, is logged once and treated as empty (or cleaned of the bad parts) —
  it may cost a re-hash or a retry, never a crash of `decode` or of model loading.
* **Read-modify-write under a lock.** Four processes each adding an entry must leave four entries:
  without a lock each one writes back the state it read and the last writer wins. The lock is a
  `filelock.FileLock` on `<file>.lock` (flock on POSIX: released by the kernel if a process dies).
* **Atomic replace.** The new content goes to a temp file in the same folder, then `os.replace`;
  a crash leaves the old file or the new one, never half of one. The temp file is removed if
  anything fails, and it is created with the user's umask (not mkstemp's 0600).
* **A corrupt file is not silently lost.** Before the first write over a file that could not be
  read, its bytes are kept as `<file>.corrupt` so a hand-edited preferences file can be recovered.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from vae_lab.files.atomic import create_temp, remove_quietly

log = logging.getLogger("vae_lab.state")

LOCK_TIMEOUT = 10.0  # seconds a writer waits for another one; state writes take milliseconds

_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


class StateReadError(ValueError):
    """Raised by a `clean` function when the document as a whole is unusable (then: empty)."""


def _warn_once(path: str, message: str) -> None:
    with _warned_lock:
        if (path, message) in _warned:
            return
        _warned.add((path, message))
    log.warning("VAE Lab: %s", message)


class JsonStateFile:
    """One JSON state file: `read()` validated and never fatal, `update()` atomic under a lock.

    `clean(data) -> value` turns the decoded JSON into the in-memory value, dropping parts of
    the wrong type; it raises `StateReadError` (or ValueError/TypeError) when nothing is usable.
    `empty()` is the value of a missing or unusable file. `dump(value)` the JSON to write.
    """

    def __init__(self, path: str | os.PathLike, *, clean: Callable[[Any], Any], empty: Callable[[], Any],
                 what: str, indent: int | None = None):
        self.path = os.fspath(path)
        self.clean, self.empty, self.what, self.indent = clean, empty, what, indent

    # ---- reading
    def _load(self) -> tuple[Any, bool]:
        """(value, file_was_unusable)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return self.empty(), False
        except OSError as err:
            _warn_once(self.path, f"cannot read {self.what} {self.path} ({err.strerror or err}); using none")
            return self.empty(), False
        try:
            return self.clean(json.loads(raw.decode("utf-8"))), False
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError) as err:
            reason = "not JSON" if isinstance(err, json.JSONDecodeError) else f"unusable content ({err})"
            _warn_once(self.path, f"{self.what} {self.path} is {reason}; treating it as empty")
            return self.empty(), True

    def read(self) -> Any:
        """The validated content; the empty value if the file is missing, unreadable or corrupt."""
        return self._load()[0]

    # ---- writing
    def lock(self, timeout: float = LOCK_TIMEOUT):
        """The cross-process lock guarding this file (a context manager)."""
        from filelock import FileLock

        return FileLock(self.path + ".lock", timeout=timeout)

    def update(self, change: Callable[[Any], Any]) -> Any:
        """Read, apply `change(value)` (it mutates the value, or returns a new one; returning the
        same object unchanged is fine), write back atomically, all under the lock. Returns the
        value written. Raises OSError (or filelock.Timeout) when the file cannot be written."""
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        with self.lock():
            value, unusable = self._load()
            changed = change(value)
            if changed is not None:
                value = changed
            if unusable:
                self._keep_corrupt()
            self._write(value)
            return value

    def _keep_corrupt(self) -> None:
        try:
            os.replace(self.path, self.path + ".corrupt")
            log.warning("VAE Lab: kept the unreadable %s as %s.corrupt", self.what, self.path)
        except OSError:
            pass

    def _write(self, value: Any) -> None:
        write_json_atomic(self.path, value, indent=self.indent)


def write_json_atomic(path: str | os.PathLike, value: Any, *, indent: int | None = None) -> None:
    """Replace `path` by `value` as JSON in one step (temp file in the same folder + os.replace).

    For files only one holder writes (a download's bookkeeping under its lock); shared state
    files use `JsonStateFile.update`. The temp file is removed if anything fails."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = create_temp(folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=indent, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


# --------------------------------------------------------------------------- cleaning helpers


def require_dict(data: Any, what: str = "the document") -> dict:
    if not isinstance(data, dict):
        raise StateReadError(f"{what} is a {type(data).__name__}, not an object")
    return data


def str_dict(data: Any) -> dict[str, str]:
    """The str -> str pairs of a mapping (anything else dropped)."""
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
