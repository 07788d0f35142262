"""VAE Lab's entry point for the WebUI: registers everything, does nothing else.

The WebUI puts the extension root on sys.path only while this file is imported, so
`vae_lab` must be imported here, at the top (lazy imports would fail later in A1111).
All logic lives in `vae_lab.webui`.
"""

import vae_lab  # noqa: F401  (must be imported while the extension root is on sys.path)
import vae_lab.webui  # noqa: F401
from modules import scripts

from vae_lab.webui import VaeLabScript  # noqa: F401  (the WebUI registers Script subclasses it finds here)

vae_lab.webui.register(scripts.basedir())
