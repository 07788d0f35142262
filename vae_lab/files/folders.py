"""What counts as a file here: regular files only, named like weights, found by one walker.

VAE folders are written by strangers' downloads and by users' `ln -s`: a FIFO named
`x.safetensors` blocks the first `open()` forever, a link to `/dev/zero` never ends a hash,
and a dangling link fails every `stat`. So every reader opens through `open_regular` (a
FIFO is opened non-blocking and refused before any read), and every listing goes through
`weight_files`, which keeps regular files (links followed) and skips hidden files and
folders, special files and dangling links, logging each skip.

Also here, because they are about files and not about any one reader: the weight-file
extensions, and the (path, size, mtime) key that tells two versions of a file apart.
"""

from __future__ import annotations

import logging
import os
import stat

from vae_lab.errors import BadVaeFile

log = logging.getLogger("vae_lab.files")

PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_EXTENSIONS = (".safetensors", *PICKLE_EXTENSIONS)
# A1111 globs models/VAE for these three only; .pth and .bin are read here but not listed there.
WEBUI_LISTED_EXTENSIONS = (".safetensors", ".ckpt", ".pt")


def is_weights_name(name: str, extensions=WEIGHT_EXTENSIONS) -> bool:
    """A visible file name ending in one of `extensions` (case-insensitive)."""
    return not name.startswith(".") and name.lower().endswith(extensions)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def regular_file_problem(path) -> str | None:
    """Why `path` is not a readable regular file (links followed), or None when it is one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a dangling link" if os.path.islink(path) else "no such file"
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    return None if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)


def open_regular(path, what: str = "file", error: type[Exception] = BadVaeFile):
    """`open(path, "rb")` for a regular file only; `error` (default `BadVaeFile`, one line) else.

    The file is opened with O_NONBLOCK and checked with fstat on the open descriptor, so a
    FIFO swapped in after a check cannot block the open, and the check and the read see the
    same file.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        problem = "a dangling link" if os.path.islink(path) else f"no such {what}"
        raise error(f"{path}: {problem}") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: {_kind(mode)}, not a regular {what}; only regular files are read")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def weight_files(folder, extensions=WEIGHT_EXTENSIONS) -> list[str]:
    """Weight files under `folder`, recursively, sorted by folder then name.

    Hidden files and folders (partial downloads, `.git`) are skipped; so are FIFOs, devices,
    sockets and dangling links, each with a log line. Links to regular files are kept (as the
    link's path); links to folders are not followed (no loops).
    """
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not is_weights_name(name, extensions):
                continue
            path = os.path.join(root, name)
            problem = regular_file_problem(path)
            if problem is None:
                found.append(path)
            else:
                log.warning("vae_lab: skipping %s: %s", path, problem)
    return found


def file_key(path) -> tuple[str, int, int]:
    """(absolute path, size, mtime in ns): changes when the file is replaced or rewritten.

    What every cache of per-file results is keyed on (hashes, identities, state dicts).
    Raises OSError when the file cannot be stat'ed.
    """
    ap = os.path.abspath(os.fspath(path))
    st = os.stat(ap)
    return ap, st.st_size, st.st_mtime_ns
