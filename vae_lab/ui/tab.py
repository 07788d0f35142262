"""The comparison tab, as hosts import it: `build_tab(UiContext(...))`.

The tab is split by job: `context.py` (what the host gives), `library.py` (the VAE list),
`render.py` (HTML), `exports.py` (files to download), `handlers.py` (what the buttons do),
`blocks.py` (the Gradio layout), `gradio_compat.py` (Gradio 3.41 vs 4). This module only
names the public parts, so the WebUI adapter and the app need one import.
"""

from __future__ import annotations

from vae_lab.ui.blocks import build_tab
from vae_lab.ui.context import PRECISIONS, TabUi, UiContext
from vae_lab.ui.handlers import (ENCODER_FIRST, ENCODER_OWN, NO_REFERENCE, SOURCE_FILE, SOURCE_IMAGE, SOURCE_LAST,
                                 SOURCES, TILINGS, TabLogic, load_latent_input)
from vae_lab.ui.library import VaeEntry, incompatibility, scan_vae_dirs, vae_choices
from vae_lab.ui.render import metrics_table, pair_labels, render_pair, render_view, status_line

__all__ = [
    "build_tab", "UiContext", "TabUi", "TabLogic", "VaeEntry", "scan_vae_dirs", "vae_choices", "incompatibility",
    "load_latent_input", "render_view", "render_pair", "metrics_table", "status_line", "pair_labels",
    "PRECISIONS", "TILINGS", "SOURCES", "SOURCE_IMAGE", "SOURCE_LAST", "SOURCE_FILE", "ENCODER_FIRST",
    "ENCODER_OWN", "NO_REFERENCE",
]
