"""Files that appear whole or not at all, created with the user's normal permissions.

`tempfile.mkstemp` creates mode 0600 files, which is right for secrets and wrong for VAEs and
state files that other tools (or another user of the WebUI) read. `create_temp` opens its file
with 0666 and lets the kernel apply the umask, like `open()` does, with no process-wide umask
juggling that would race with other threads.
"""

from __future__ import annotations

import os
import secrets


def create_temp(folder: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """(fd, path) of a new empty file in `folder` (same file system as its final place), mode 0666 & ~umask."""
    folder = os.fspath(folder)
    for _ in range(100):
        path = os.path.join(folder, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        return fd, path
    raise FileExistsError(f"cannot create a temporary file in {folder}")


def reserve_temp(folder: str | os.PathLike, prefix: str, suffix: str = ".tmp") -> tuple[str, int]:
    """(path, mode) of a new empty temp file for a writer that opens the path itself (safetensors'
    `save_file` may recreate it privately: chmod it to `mode`, the umask-respecting one, before placing it)."""
    fd, path = create_temp(folder, prefix, suffix)
    mode = os.fstat(fd).st_mode & 0o7777
    os.close(fd)
    return path, mode


def remove_quietly(path: str | os.PathLike | None) -> None:
    """Delete `path` if it is there; a cleanup step never raises."""
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def place_new(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move the finished file `src` to `dst` only if `dst` does not exist, even if it appears meanwhile.

    A hard link never overwrites; where links are unsupported (FAT, some network shares) it falls
    back to check-then-rename. Raises FileExistsError when `dst` exists; `src` is then left as it is.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(dst):
            raise FileExistsError(dst) from None
        os.replace(src, dst)
        return
    os.unlink(src)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename in `path` durable (POSIX; a no-op where directories cannot be opened)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
