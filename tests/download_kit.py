"""What the download tests share: a local file server per test, a private hash cache, what the
WebUI would list in a folder, and `get` (a download with test defaults: no tokens, no console)."""

from __future__ import annotations

import glob
import hashlib
import os
from pathlib import Path

import pytest

from testkit.httpserver import FileServer
from vae_lab.download import transfer
from vae_lab.download.tokens import TokenPolicy

NO_TOKENS = TokenPolicy(tokens={}, hosts={}, require_https=False)


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own identify hash cache, outside the folders it inspects."""
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path_factory.mktemp("hash-cache")))


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def listed(folder: Path) -> list[str]:
    """What A1111's refresh_vae_list would list in this folder."""
    found = []
    for ext in ("ckpt", "pt", "safetensors"):
        found += glob.glob(os.path.join(folder, f"**/*.{ext}"), recursive=True)
    return sorted(os.path.basename(p) for p in found)


def get(source, dest, **kw):
    kw.setdefault("tokens", NO_TOKENS)
    kw.setdefault("console", False)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("identify", False)
    return transfer.download(source, dest, **kw)
