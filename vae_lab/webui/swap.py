"""Swapping the VAE of the host's loaded model from RAM, with the host's bookkeeping.

Swaps never go through the WebUI's own VAE reload (A1111's `sd_vae.reload_vae_weights` reads
the file, moves the whole model to the CPU and back and copies every tensor): the weights come
from `vae_lab.runtime.ramcache`, already in the VAE module's dtype and on its device, and are
put in by reference (`vae_lab.runtime.swap.swap_in`), after a family check. The checkpoint's own
VAE is kept aside by reference too (no copy), and so is a VAE the WebUI loaded itself, so
swapping back copies nothing either. Validation comes first, so a refused or broken VAE
changes nothing.
"""

from __future__ import annotations

import logging
import os

from vae_lab.errors import VaeLabError
from vae_lab.runtime import swap as weights
from vae_lab.webui import state, vaes
from vae_lab.webui.state import ActiveSwap, display

log = logging.getLogger(__name__)


def swap_vae(model, vae_file: str | None, *, source: str, check: bool = True) -> bool:
    """Put `vae_file` (None: the checkpoint's own VAE) into `model` from RAM.

    Validates first (family, then every tensor's name and shape); on any error raises
    `VaeLabError` and the model keeps its VAE. Returns False when it was already in use.
    """
    session = state.current()
    host = session.host
    with session.lock:
        current = host.loaded_vae_file(model)
        if vaes.same_file(current, vae_file):
            session.status.file, session.status.source = current, source
            return False
        module = host.vae_module(model)
        if module is None:
            raise VaeLabError(host.unsupported() or "the loaded model has no VAE module VAE Lab can swap")
        if vae_file is None:
            base = host.base_vae(model)
            if base is None:
                raise VaeLabError("the checkpoint's own VAE is not in memory; reload the checkpoint to get it back")
            with host.writing_weights():
                weights.swap_in(module, base, name="the checkpoint's own VAE")
        else:
            if check:
                vaes.checked(model, vae_file)
            cache = session.ram_cache()
            like = _a_weight(module)
            tensors = cache.placed(vae_file, vaes.read_state_dict, device=like.device, dtype=like.dtype)
            name = os.path.basename(vae_file)
            pairs = weights.check(module, tensors, name=name)  # before anything changes
            with host.writing_weights():
                if current is None:
                    host.keep_base_vae(model)  # the checkpoint's own VAE, kept aside by reference
                elif not _placed_in_cache(cache, current, like):
                    # The WebUI loaded it from disk: keep its tensors (by reference) so swapping
                    # back neither reads the disk nor copies.
                    cache.put_placed(current, weights.tensors_of(module))
                weights.swap_in(module, tensors, name=name, pairs=pairs)
        host.mark_loaded(model, vae_file)
        session.status.file, session.status.source, session.status.note = vae_file, source, ""
        return True


def _a_weight(module):
    """One floating point tensor of `module`: the dtype and device its weights live in."""
    for t in module.parameters():
        if t.is_floating_point():
            return t
    raise VaeLabError("the loaded model's VAE has no weights VAE Lab can swap")


def _placed_in_cache(cache, path: str, like) -> bool:
    """Whether `path`'s weights are in `cache` in `like`'s dtype and device (True for a file that is gone)."""
    try:
        return cache.has_placed(path, device=like.device, dtype=like.dtype)
    except OSError:
        return True  # a file that is gone: nothing to key its weights by


def begin_generation_swap(p, model, target: str | None) -> bool:
    """Swap `target` in for the generation `p`, to be undone by `restore_generation_vae`."""
    session = state.current()
    host = session.host
    with session.lock:
        previous, prev_source = host.loaded_vae_file(model), session.status.source
        if not swap_vae(model, target, source="this generation's choice (VAE Lab)"):
            return False
        session.active = ActiveSwap(previous, prev_source, target, id(p), host.checkpoint_file(model))
    return True


def restore_generation_vae(reason: str = "") -> None:
    """Put back the VAE that was in use before a per-generation swap (idempotent, never raises)."""
    session = state.current()
    with session.lock:
        active, session.active = session.active, None
        if active is None:
            return
        model = session.host.loaded_model()
        if model is None:
            return
        try:
            swap_vae(model, active.previous, source=active.previous_source, check=False)
        except Exception as err:  # never let a restore failure break the WebUI's cleanup
            log.error("VAE Lab: could not restore %s%s: %s", display(active.previous), reason, err)
