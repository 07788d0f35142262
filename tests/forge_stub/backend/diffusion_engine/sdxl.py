"""backend/diffusion_engine/sdxl.py: `StableDiffusionXL` (`self.is_sdxl = True`, "WebUI Legacy")."""

from backend.diffusion_engine.base import StandInEngine


class StableDiffusionXL(StandInEngine):
    flag = "is_sdxl"
