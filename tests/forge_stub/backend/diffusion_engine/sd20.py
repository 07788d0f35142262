"""backend/diffusion_engine/sd20.py: `StableDiffusion2` (`self.is_sd2 = True`, "WebUI Legacy")."""

from backend.diffusion_engine.base import StandInEngine


class StableDiffusion2(StandInEngine):
    flag = "is_sd2"
