"""Swap VAE weights into a live module by reference: validate everything, then re-point tensors.

The WebUI switches VAEs with `sd_vae.reload_vae_weights`, which reads the file, moves the
whole diffusion model to the CPU and back and copies every tensor into the VAE module. Here a
swap writes nothing: each parameter is re-pointed (`param.data = tensor`) at a tensor that is
already in the module's dtype and on its device — a RAM-cache entry (`ramcache.RamCache.placed`)
or, for a source in another dtype/device, a fresh converted copy. The tensors the module held
come back as `SwapResult.previous`, so undoing a swap is another re-pointing. A swap of an
SD-size VAE takes well under a millisecond plus validation; nothing is reallocated.

Validation comes first and covers every tensor (names and shapes), so a swap that fails
leaves the module exactly as it was.

The hazard of sharing, and the guard against it: after a swap the module's tensors *are* the
cache's (or the kept-aside previous weights). Anything that then writes into the module in
place — the WebUI's own VAE reload or checkpoint load (`load_state_dict` copies into the
parameters) — would write into those shared tensors too. `swap_in` therefore marks the module
and installs a `load_state_dict` pre-hook (`guard`) that gives the module tensors of its own
(one clone) before any such load, on the module itself or on a model containing it. Moves
(`module.to(...)`, `.half()`) make new tensors and never write into old ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vae_lab.errors import IncompatibleVae
from vae_lab.files.layout import is_dropped
from vae_lab.files.loading import shape_problems

_SHARED = "_vae_lab_shares_tensors"  # module attribute: its tensors may be referenced elsewhere
_GUARDED = "_vae_lab_guard"  # module attribute: the pre-hook's handle
_SLOTS = "_vae_lab_slots"  # module attribute: `_slots` of the module, made once


@dataclass
class SwapResult:
    tensors: int
    bytes: int  # bytes the module's tensors hold now
    seconds: float
    converted: int = 0  # tensors that had to be converted (dtype/device) into fresh memory
    previous: dict = field(default_factory=dict, repr=False)  # the module's tensors before, by reference


def _slots(module) -> dict:
    """name -> (owning submodule, attribute, is_parameter), for every state-dict tensor of `module`.

    Walked once per module and kept on it: a VAE's module tree does not change, and walking its
    ~250 submodules would otherwise be most of what a swap costs."""
    cached = module.__dict__.get(_SLOTS)
    if cached is not None:
        return cached
    out = {}
    for mod_name, mod in module.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for n, p in mod._parameters.items():
            if p is not None:
                out[prefix + n] = (mod, n, True)
        non_persistent: set = getattr(mod, "_non_persistent_buffers_set", set())
        for n, b in mod._buffers.items():
            if b is not None and n not in non_persistent:
                out[prefix + n] = (mod, n, False)
    module.__dict__[_SLOTS] = out
    return out


def _current(slot):
    mod, n, is_param = slot
    return mod._parameters[n] if is_param else mod._buffers[n]


def _put(slot, tensor) -> None:
    """Make `slot` hold `tensor` (no copy)."""
    import torch.nn as nn

    mod, n, is_param = slot
    if not is_param:
        mod._buffers[n] = tensor
        return
    old = mod._parameters[n]
    if old.is_inference() or tensor.is_inference():
        # Forge builds its models in inference mode: re-pointing such a Parameter (`.data =`) at
        # another tensor leaves a hybrid that fails inside inference mode, so it gets a new one.
        mod._parameters[n] = nn.Parameter(tensor, requires_grad=old.requires_grad)
    else:
        old.data = tensor  # the Parameter object stays (hooks, references); its tensor changes


def tensors_of(module) -> dict:
    """The module's state-dict tensors, by reference (what `swap_in` puts back to undo a swap)."""
    return {k: _current(s).detach() for k, s in _slots(module).items()}


def check(module, state_dict, *, name: str = "this VAE") -> dict:
    """Pair each tensor slot of `module` with its source in `state_dict`, or raise.

    Raises `IncompatibleVae` (one line) on a missing tensor, an extra tensor or a shape
    that differs. Returns {name: (slot, source)} for `swap_in`.
    """
    slots = _slots(module)
    source = {k: v for k, v in state_dict.items() if not is_dropped(k)}
    problems = shape_problems(source, {k: _current(s).shape for k, s in slots.items()})
    if problems:
        raise IncompatibleVae(f"{name} does not fit the loaded model's VAE: " + "; ".join(problems))
    pairs = {}
    for key, slot in slots.items():
        src = source[key]
        if not src.is_floating_point() and _current(slot).is_floating_point():
            raise IncompatibleVae(f"{name}: tensor {key} is not floating point")
        pairs[key] = (slot, src)
    return pairs


def fits(tensor, like) -> bool:
    """Whether `tensor` can stand in for `like` as it is (same dtype and device)."""
    return tensor.dtype == like.dtype and tensor.device == like.device


def swap_in(module, state_dict, *, name: str = "this VAE", pairs: dict | None = None) -> SwapResult:
    """Validate `state_dict` against `module`, then put its tensors into the module by reference.

    A source tensor in another dtype or on another device than the module's tensor is converted
    into fresh memory first (never written into anything that exists). Returns the module's
    previous tensors in `.previous`; `swap_in(module, result.previous)` undoes the swap. `pairs`:
    what `check(module, state_dict)` returned, when the caller validated first.
    """
    import torch

    start = time.perf_counter()
    if pairs is None:
        pairs = check(module, state_dict, name=name)
    guard(module)
    previous, converted, nbytes = {}, 0, 0
    with torch.no_grad():
        for key, (slot, src) in pairs.items():
            old = _current(slot)
            src = src.detach()
            if not fits(src, old):
                src = src.to(device=old.device, dtype=old.dtype, copy=True)
                converted += 1
            previous[key] = old.detach()
            _put(slot, src)
            nbytes += src.numel() * src.element_size()
    setattr(module, _SHARED, True)
    return SwapResult(len(pairs), nbytes, time.perf_counter() - start, converted, previous)


def own_tensors(module) -> int:
    """Give `module` tensors nobody else holds (one clone each), if a swap left it sharing; returns
    how many tensors were cloned. Called by the guard before anything writes into the module."""
    import torch

    if not getattr(module, _SHARED, False):
        return 0
    count = 0
    with torch.no_grad():
        for slot in _slots(module).values():
            _put(slot, _current(slot).detach().clone())
            count += 1
    setattr(module, _SHARED, False)
    return count


def guard(module) -> None:
    """Install (once) the pre-hook that makes `module` own its tensors before a `load_state_dict`
    writes into them — on the module or on any model that contains it."""
    if getattr(module, _GUARDED, None) is not None:
        return

    def before_load(*_args, **_kwargs):
        own_tensors(module)

    # `_register_load_state_dict_pre_hook` exists in every torch VAE Lab supports (the public
    # name arrived in 2.5); the hook runs before this module's (and its children's) tensors are written.
    setattr(module, _GUARDED, module._register_load_state_dict_pre_hook(before_load))

