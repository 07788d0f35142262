"""Swap VAE weights into a live module: validate everything first, then copy in place.

The WebUI switches VAEs with `sd_vae.reload_vae_weights`, which moves the whole diffusion
model to the CPU and back around a `load_state_dict`. Here the new weights are copied
straight into the tensors of the existing VAE module (`copy_` casts dtype and moves to
the module's device), so nothing else moves and nothing is reallocated.

Validation comes first and covers every tensor (names and shapes), so a swap that fails
leaves the module exactly as it was: no half-copied VAE.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from vae_lab.errors import IncompatibleVae
from vae_lab.files.layout import is_dropped
from vae_lab.files.loading import shape_problems


@dataclass
class SwapResult:
    tensors: int
    bytes: int
    seconds: float


def check(module, state_dict, *, name: str = "this VAE") -> list[tuple]:
    """Pair each tensor of `module` with its source in `state_dict`, or raise.

    Raises `IncompatibleVae` (one line) on a missing tensor, an extra tensor or a shape
    that differs. Returns [(target, source), ...] for `copy_into`.
    """
    targets = module.state_dict()
    source = {k: v for k, v in state_dict.items() if not is_dropped(k)}
    problems = shape_problems(source, {k: v.shape for k, v in targets.items()})
    if problems:
        raise IncompatibleVae(f"{name} does not fit the loaded model's VAE: " + "; ".join(problems))
    pairs = []
    for key, dst in targets.items():
        src = source[key]
        if not src.is_floating_point() and dst.is_floating_point():
            raise IncompatibleVae(f"{name}: tensor {key} is not floating point")
        pairs.append((dst, src))
    return pairs


def copy_into(module, state_dict, *, name: str = "this VAE") -> SwapResult:
    """Validate `state_dict` against `module`, then copy it into the module's tensors.

    Dtype and device stay the module's. On any validation error nothing is written.
    """
    import torch

    start = time.perf_counter()
    pairs = check(module, state_dict, name=name)
    nbytes = 0
    with torch.no_grad():
        for dst, src in pairs:
            dst.copy_(src)
            nbytes += dst.numel() * dst.element_size()
    if pairs and pairs[0][0].device.type == "cuda":
        torch.cuda.synchronize(pairs[0][0].device)
    return SwapResult(len(pairs), nbytes, time.perf_counter() - start)


def snapshot(module) -> dict:
    """A CPU copy of `module`'s weights (what to copy back to undo a swap)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
