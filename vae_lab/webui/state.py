"""The adapter's one state object (`Session`), created each time the WebUI loads the script.

Everything that outlives one call (the host, the RAM cache, identities already read, the VAE
in use and who chose it, an undone per-generation swap, what the Settings page showed) lives
here instead of in module globals, so a (re)load starts clean and tests need no module reloads.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from vae_lab.runtime.ramcache import RamCache
from vae_lab.webui.host import Host

MB = 1024 * 1024


def display(vae_file: str | None) -> str:
    return os.path.basename(vae_file) if vae_file else "the checkpoint's own VAE"


@dataclass
class VaeStatus:
    """The VAE in use and who chose it (the "VAE in use: … — chosen by …" line)."""

    file: str | None = None
    source: str = "the WebUI"
    note: str = ""

    def text(self) -> str:
        s = f"VAE in use: {display(self.file)} — chosen by {self.source}"
        return s + (f" ({self.note})" if self.note else "")


@dataclass
class ActiveSwap:
    """A per-generation VAE that must be undone."""

    previous: str | None
    previous_source: str
    target: str | None
    owner: int  # id() of the processing object
    checkpoint: str | None = None  # the checkpoint file it was applied to


@dataclass
class Session:
    host: Host
    ext_dir: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)  # one swap at a time
    cache: RamCache | None = None
    infos: dict = field(default_factory=dict)  # file_key -> VaeInfo, from the read that cached it
    status: VaeStatus = field(default_factory=VaeStatus)
    active: ActiveSwap | None = None
    settings_shown: tuple | None = None  # (checkpoint, value) the Settings page last showed
    status_views: list = field(default_factory=list)  # the accordions' "VAE in use" lines (txt2img, img2img)

    def ram_cache(self) -> RamCache:
        """The process-wide weights cache (swaps and the tab), sized by the Settings budgets."""
        budget = int(self.host.option("vae_lab_ram_cache_mb", 1024)) * MB
        device_budget = int(self.host.option("vae_lab_device_cache_mb", 512)) * MB
        if self.cache is None:
            self.cache = RamCache(budget, device_budget)
        elif (self.cache.budget, self.cache.device_budget) != (budget, device_budget):
            self.cache.set_budget(budget, device_budget)
        return self.cache


_session: Session | None = None


def start(host: Host, ext_dir: str | None) -> Session:
    """A fresh session for this load of the script (startup or Reload UI).

    Only pure data carries over from the previous one: the cached weights and identities
    (a Reload UI should not read every VAE from disk again).
    """
    global _session
    old = _session
    _session = Session(host=host, ext_dir=ext_dir)
    if old is not None:
        _session.cache, _session.infos = old.cache, old.infos
    return _session


def current() -> Session:
    if _session is None:
        raise RuntimeError("VAE Lab's WebUI adapter was not started (scripts/vae_lab.py calls vae_lab.webui.init)")
    return _session
