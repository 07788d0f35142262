"""VAE Lab: get, identify, swap and compare the autoencoders of Stable Diffusion.

The core package is importable without the WebUI and imports nothing heavy here:
torch and friends are imported by the modules that need them.
"""

__version__ = "0.1.0"
