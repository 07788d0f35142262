"""Opaque ids for the VAE list: the page names a VAE by an id the server gave out, never by a path.

The tab's checkboxes and dropdowns send back whatever value the client puts there. With file
paths as values, any client could make the server load (and answer differently for) any file
on its disk. Instead each scanned entry gets an id (an HMAC of its real path under a key made
at start-up: stable while the process runs, meaningless outside it), and the handlers turn ids
back into entries of the app's own list. An id that is not in the list gets one message,
whether or not some file exists anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from vae_lab.errors import VaeLabError

_KEY = secrets.token_bytes(32)
PREFIX = "vae-"
UNKNOWN = "a chosen VAE is not in the VAE list (any more): press “Refresh list” and choose again"


class UnknownVae(VaeLabError):
    """An id that names no entry of the app's VAE list."""


def vae_id(entry_or_path) -> str:
    """The id the page sees for an entry (or its path)."""
    path = getattr(entry_or_path, "path", entry_or_path)
    digest = hmac.new(_KEY, os.path.realpath(os.fspath(path)).encode("utf-8", "surrogateescape"), hashlib.sha256)
    return PREFIX + digest.hexdigest()[:20]


def resolve(ids, entries) -> list:
    """The entries named by `ids`, in that order; `UnknownVae` for any id that is not one of them."""
    by_id = {vae_id(e): e for e in entries}
    out = []
    for i in ids or []:
        entry = by_id.get(i) if isinstance(i, str) else None
        if entry is None:
            raise UnknownVae(UNKNOWN)
        out.append(entry)
    return out


def resolve_paths(ids, entries) -> list[str]:
    return [e.path for e in resolve(ids, entries)]
