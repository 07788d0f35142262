"""backend/diffusion_engine/sd15.py: `StableDiffusion` (`self.is_sd1 = True`, "WebUI Legacy")."""

from backend.diffusion_engine.base import StandInEngine


class StableDiffusion(StandInEngine):
    flag = "is_sd1"
