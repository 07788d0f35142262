"""Swapping weights into a live VAE module: validated first, put in by reference, undoable,
and never written into tensors that something else (a cache) holds."""

from __future__ import annotations

import pytest
import torch

from testkit.factories import TINY_KL, TINY_KL16, random_kl_state_dict
from vae_lab.errors import IncompatibleVae
from vae_lab.models import build_model
from vae_lab.runtime import swap


def _module(seed=0, dtype=torch.float32, arch=TINY_KL):
    """A real kl-f8 module tree (LDM tensor names, as the WebUI's `first_stage_model`)."""
    return build_model("kl", random_kl_state_dict(arch, seed=seed), arch).to(dtype)


def _assert_equal_sd(module, sd):
    for k, v in module.state_dict().items():
        assert torch.equal(v, sd[k].to(v.dtype)), k


def _copy(module):
    """The module's weights in memory of their own."""
    return {k: v.clone() for k, v in module.state_dict().items()}


def _ptrs(module):
    return {k: v.data_ptr() for k, v in module.state_dict().items()}


def test_swap_in_puts_the_tensors_in_by_reference_and_keeps_the_parameter_objects():
    module = _module(seed=0)
    params = {n: p for n, p in module.named_parameters()}
    new = random_kl_state_dict(TINY_KL, seed=1)
    res = swap.swap_in(module, new, name="b.safetensors")
    _assert_equal_sd(module, new)
    assert _ptrs(module) == {k: new[k].data_ptr() for k in _ptrs(module)}  # the source's memory: no copy
    assert all(params[n] is p for n, p in module.named_parameters())  # hooks and references stay valid
    assert (res.tensors, res.converted) == (len(new), 0)
    assert res.bytes == sum(v.numel() * 4 for v in new.values())


def test_previous_tensors_undo_a_swap_by_reference():
    module = _module(seed=0)
    own = {k: v.clone() for k, v in module.state_dict().items()}
    ptrs = _ptrs(module)
    res = swap.swap_in(module, random_kl_state_dict(TINY_KL, seed=6))
    swap.swap_in(module, res.previous)
    _assert_equal_sd(module, own)
    assert _ptrs(module) == ptrs  # the module's very own tensors are back


def test_a_source_in_another_dtype_is_converted_into_fresh_memory_not_written_into_the_module():
    module = _module(seed=0, dtype=torch.float16)
    old = {k: v for k, v in module.state_dict().items()}
    old_values = {k: v.clone() for k, v in old.items()}
    new = random_kl_state_dict(TINY_KL, seed=2)  # fp32 file into an fp16 VAE
    res = swap.swap_in(module, new)
    assert all(p.dtype == torch.float16 for p in module.parameters())
    _assert_equal_sd(module, new)
    assert res.converted == len(new)
    for k, v in old.items():  # the module's previous tensors (maybe a cache's) were not written
        assert torch.equal(v, old_values[k]), k
        assert res.previous[k].data_ptr() == v.data_ptr()


def test_ignored_keys_are_skipped():
    module = _module(seed=0)
    new = random_kl_state_dict(TINY_KL, seed=3)
    new["model_ema.decay"] = torch.tensor(0.999)
    new["loss.discriminator.weight"] = torch.zeros(3)
    swap.swap_in(module, new)
    _assert_equal_sd(module, new)


@pytest.mark.parametrize(
    "break_it, match",
    [
        (lambda sd: sd.pop("decoder.conv_out.weight"), "missing"),
        (lambda sd: sd.__setitem__("decoder.extra.weight", torch.zeros(1)), "unexpected"),
        (lambda sd: sd.__setitem__("decoder.conv_out.weight", torch.zeros(3, 32, 1, 1)), "shape"),
    ],
)
def test_failed_validation_leaves_module_untouched(break_it, match):
    module = _module(seed=0)
    ptrs, before = _ptrs(module), _copy(module)
    bad = random_kl_state_dict(TINY_KL, seed=4)
    break_it(bad)
    with pytest.raises(IncompatibleVae, match=match):
        swap.swap_in(module, bad, name="bad.safetensors")
    _assert_equal_sd(module, before)
    assert _ptrs(module) == ptrs


def test_16_channel_vae_refused_on_4_channel_module():
    module = _module(seed=0)
    before = _copy(module)
    with pytest.raises(IncompatibleVae, match="x16.safetensors does not fit"):
        swap.swap_in(module, random_kl_state_dict(TINY_KL16, seed=5), name="x16.safetensors")
    _assert_equal_sd(module, before)


def test_a_load_state_dict_after_a_swap_does_not_write_into_the_shared_tensors():
    """The WebUI's own reload (`load_state_dict` on the VAE, or on the model containing it) after
    a by-reference swap: the module gets tensors of its own first; the cache entry is untouched."""
    cached = random_kl_state_dict(TINY_KL, seed=7)
    cached_values = {k: v.clone() for k, v in cached.items()}
    module = _module(seed=0)
    res = swap.swap_in(module, cached)
    other = random_kl_state_dict(TINY_KL, seed=8)
    module.load_state_dict(other)  # the WebUI's `_load_vae_dict`
    _assert_equal_sd(module, other)
    for k in cached:
        assert torch.equal(cached[k], cached_values[k]), k

    parent = torch.nn.Module()  # the WebUI's checkpoint load: `model.load_state_dict(...)` on the whole model
    parent.first_stage_model = module
    swap.swap_in(module, res.previous)  # shares the kept-aside tensors again
    kept = {k: v.clone() for k, v in res.previous.items()}
    parent.load_state_dict({f"first_stage_model.{k}": v for k, v in cached.items()})
    _assert_equal_sd(module, cached)
    for k, v in res.previous.items():
        assert torch.equal(v, kept[k]), k


def test_own_tensors_is_a_no_op_for_a_module_that_never_shared():
    module = _module(seed=0)
    assert swap.own_tensors(module) == 0
    swap.swap_in(module, random_kl_state_dict(TINY_KL, seed=1))
    assert swap.own_tensors(module) == len(module.state_dict())
    assert swap.own_tensors(module) == 0  # once


def test_an_independent_copy_swaps_in_and_the_original_comes_back():
    module = _module(seed=0)
    saved = _copy(module)
    assert all(saved[k].data_ptr() != v.data_ptr() for k, v in module.state_dict().items())
    swap.swap_in(module, random_kl_state_dict(TINY_KL, seed=6))
    swap.swap_in(module, saved)
    _assert_equal_sd(module, random_kl_state_dict(TINY_KL, seed=0))


def test_a_module_built_in_inference_mode_swaps_and_still_runs_in_both_modes():
    """Forge builds its VAE under `torch.inference_mode()` and decodes under it (or `no_grad`):
    a swap in and out, and the guard's clone before a load, must leave a module that runs in both."""
    with torch.inference_mode():
        module = _module(seed=0)
    z = torch.randn(1, TINY_KL.latent_channels, 4, 4)
    new = random_kl_state_dict(TINY_KL, seed=1)
    with torch.inference_mode():
        expected = build_model("kl", new, TINY_KL).decode(z)
        res = swap.swap_in(module, new)
        assert torch.allclose(module.decode(z), expected)
    with torch.no_grad():
        assert torch.allclose(module.decode(z), expected)
    with torch.inference_mode():
        swap.swap_in(module, res.previous)
        module.load_state_dict(random_kl_state_dict(TINY_KL, seed=2))  # Forge's own reload: the guard clones first
        module.decode(z)
    with torch.no_grad():
        module.decode(z)
    assert all(torch.equal(new[k], v) for k, v in random_kl_state_dict(TINY_KL, seed=1).items())
