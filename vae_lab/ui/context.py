"""What a host (the WebUI adapter, the standalone app) hands the tab, and what it gets back.

The tab imports nothing of the WebUI: folders, the last generation's latents, the lock that
keeps a comparison from competing with a generation, tokens and settings all come in here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from vae_lab.errors import VaeLabError
from vae_lab.ui.library import VaeEntry, scan_vae_dirs

PRECISIONS = ["auto", "fp32", "fp16", "bf16"]


@dataclass
class UiContext:
    """What the host gives the tab.

    vae_dirs: folders scanned for VAE files (the WebUI passes `models/VAE` and `--vae-dir`).
    list_vaes: returns the `VaeEntry` list for the multi-select; default: `scan_vae_dirs(vae_dirs)`.
    last_latents: returns the last generation's `LastLatents` or None
        (default `vae_lab.runtime.last_latents.get`).
    download_dir: where "Get VAEs" saves files (default: the first of `vae_dirs`).
    on_vaes_changed: called after a download (the WebUI refreshes its `sd_vae` list).
    extra: called with the `TabUi` inside the tab's input column (the WebUI adds its
        per-checkpoint controls there).
    device: torch device string for encode/decode, or None for the engine's choice.
    lock: held while encoding/decoding (the WebUI passes `modules.call_queue.queue_lock`, so a
        comparison waits for a running generation instead of competing for GPU memory).
    tokens: returns the download tokens from the host's settings (`{"hf": …, "civitai": …}`);
        None means the `HF_TOKEN` / `CIVITAI_API_TOKEN` environment variables only.
    precision: returns the default precision shown in the tab (the WebUI's "VAE Lab" setting).
    vae_list_outputs: returns the host's own components that list VAEs, each with a function
        giving its `gr.update` keywords; after a download they are updated too (the WebUI's
        Settings "SD VAE" dropdown, so a new file is in it at once).
    """

    vae_dirs: list[str] = field(default_factory=list)
    list_vaes: Callable[[], list[VaeEntry]] | None = None
    last_latents: Callable[[], Any] | None = None
    download_dir: str | None = None
    on_vaes_changed: Callable[[], None] | None = None
    extra: Callable[["TabUi"], None] | None = None
    device: str | None = None
    lock: Any = None
    tokens: Callable[[], dict] | None = None
    precision: Callable[[], str] | None = None
    vae_list_outputs: Callable[[], list] | None = None
    # what one request may ask for (vae_lab.limits / download.policy / ui.exposure)
    limits: Any = None  # `vae_lab.limits.Limits`; None: `Limits.default()`
    download_policy: Any = None  # `vae_lab.download.policy.HostPolicy`; None: public hosts only
    download_seconds: float | None = None  # overall limit of one download; None: the default

    def default_precision(self) -> str:
        value = self.precision() if self.precision else "auto"
        return value if value in PRECISIONS else "auto"

    def entries(self) -> list[VaeEntry]:
        return list(self.list_vaes() if self.list_vaes else scan_vae_dirs(self.vae_dirs))

    def get_last_latents(self):
        if self.last_latents is not None:
            return self.last_latents()
        from vae_lab.runtime import last_latents

        return last_latents.get()

    def target_dir(self) -> str:
        if self.download_dir:
            return self.download_dir
        if self.vae_dirs:
            return self.vae_dirs[0]
        raise VaeLabError("there is no VAE folder to download into")


@dataclass
class TabUi:
    """The tab's components, handed to `UiContext.extra` so a host can wire its own controls."""

    blocks: Any
    vaes: Any
    run: Any
    status: Any
    components: dict[str, Any] = field(default_factory=dict)

