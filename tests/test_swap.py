"""Swapping weights into a live VAE module: validated first, copied in place, undoable."""

from __future__ import annotations

import pytest
import torch

from testkit.factories import TINY_KL, TINY_KL16, random_kl_state_dict
from vae_lab.models.arch import KLArch
from vae_lab.errors import IncompatibleVae
from vae_lab.runtime import swap


class FakeVae(torch.nn.Module):
    """A module whose state dict has exactly the LDM kl-f8 tensors of `arch` (no forward needed)."""

    def __init__(self, arch: KLArch = TINY_KL, seed: int = 0, dtype=torch.float32):
        super().__init__()
        sd = random_kl_state_dict(arch, seed=seed, dtype=dtype)
        self._names = {}
        for i, (k, v) in enumerate(sd.items()):
            name = f"p{i}"
            self.register_parameter(name, torch.nn.Parameter(v.clone()))
            self._names[k] = name

    def state_dict(self, *a, **kw):  # LDM key names, sharing storage with the parameters
        return {k: getattr(self, n).detach() for k, n in self._names.items()}


def _assert_equal_sd(module, sd):
    for k, v in module.state_dict().items():
        assert torch.equal(v, sd[k].to(v.dtype)), k


def test_copy_into_replaces_every_tensor_in_place():
    module = FakeVae(seed=0)
    ptrs = [p.data_ptr() for p in module.parameters()]
    new = random_kl_state_dict(TINY_KL, seed=1)
    res = swap.copy_into(module, new, name="b.safetensors")
    _assert_equal_sd(module, new)
    assert [p.data_ptr() for p in module.parameters()] == ptrs  # same storage, nothing reallocated
    assert res.tensors == len(new)
    assert res.bytes == sum(v.numel() * 4 for v in new.values())


def test_copy_keeps_the_module_dtype():
    module = FakeVae(seed=0, dtype=torch.float16)
    new = random_kl_state_dict(TINY_KL, seed=2)  # fp32 file into an fp16 VAE
    swap.copy_into(module, new)
    assert all(p.dtype == torch.float16 for p in module.parameters())
    _assert_equal_sd(module, new)


def test_ignored_keys_are_skipped():
    module = FakeVae(seed=0)
    new = random_kl_state_dict(TINY_KL, seed=3)
    new["model_ema.decay"] = torch.tensor(0.999)
    new["loss.discriminator.weight"] = torch.zeros(3)
    swap.copy_into(module, new)
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
    module = FakeVae(seed=0)
    before = swap.snapshot(module)
    bad = random_kl_state_dict(TINY_KL, seed=4)
    break_it(bad)
    with pytest.raises(IncompatibleVae, match=match):
        swap.copy_into(module, bad, name="bad.safetensors")
    _assert_equal_sd(module, before)


def test_16_channel_vae_refused_on_4_channel_module():
    module = FakeVae(TINY_KL, seed=0)
    before = swap.snapshot(module)
    with pytest.raises(IncompatibleVae, match="x16.safetensors does not fit"):
        swap.copy_into(module, random_kl_state_dict(TINY_KL16, seed=5), name="x16.safetensors")
    _assert_equal_sd(module, before)


def test_snapshot_is_an_independent_copy_that_undoes_a_swap():
    module = FakeVae(seed=0)
    saved = swap.snapshot(module)
    swap.copy_into(module, random_kl_state_dict(TINY_KL, seed=6))
    swap.copy_into(module, saved)
    _assert_equal_sd(module, random_kl_state_dict(TINY_KL, seed=0))
