"""backend/diffusion_engine/sd35.py: `StableDiffusion3` (`self.is_sd3 = True`, "WebUI Legacy")."""

from backend.diffusion_engine.base import StandInEngine


class StableDiffusion3(StandInEngine):
    flag = "is_sd3"
