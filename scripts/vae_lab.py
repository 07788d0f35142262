"""VAE Lab's entry point for the WebUI: registers everything, does nothing else.

The WebUI puts the extension root on sys.path only while this file is imported, so
`vae_lab` must be imported here, at the top (lazy imports would fail later in A1111).
Callbacks are registered from this file so the WebUI names them `vae-lab/vae_lab.py/<category>`
(what metadata.ini ordering and the callback-order settings refer to). All logic lives in
the package `vae_lab.webui`.
"""

import vae_lab  # noqa: F401  (must be imported while the extension root is on sys.path)
import vae_lab.webui
from modules import script_callbacks, scripts

from vae_lab.webui import VaeLabScript  # noqa: F401  (the WebUI registers Script subclasses it finds here)

vae_lab.webui.init(scripts.basedir())
script_callbacks.on_ui_settings(vae_lab.webui.on_ui_settings)
script_callbacks.on_ui_tabs(vae_lab.webui.on_ui_tabs)
script_callbacks.on_model_loaded(vae_lab.webui.on_model_loaded)
if vae_lab.webui.wants_pasted_infotext():  # Forge: a pasted "VAE" goes to the accordion, not a reload
    script_callbacks.on_infotext_pasted(vae_lab.webui.on_infotext_pasted)
script_callbacks.on_script_unloaded(vae_lab.webui.on_script_unloaded)
