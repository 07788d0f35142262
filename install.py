"""Run by the WebUI at launch (and once after installing from the Extensions tab).

VAE Lab needs nothing the WebUI does not already ship (torch, safetensors, requests, tqdm,
gradio, pillow, numpy), so this only checks and installs what is missing. It is cheap
and idempotent: on a normal launch it checks a few imports and exits.
"""

import launch

# (import name, pip requirement) — only what the WebUI may lack.
REQUIREMENTS = [
    ("safetensors", "safetensors"),
    ("requests", "requests"),
    ("tqdm", "tqdm"),
]

for module, requirement in REQUIREMENTS:
    if not launch.is_installed(module):
        launch.run_pip(f"install {requirement}", f"{requirement} for VAE Lab")
