"""Our kl-f8 model against diffusers.AutoencoderKL on the same random weights (fp32)."""

from __future__ import annotations

import pytest
import torch

from diffusers_ref import diffusers_vae
from factories import TINY_KL, TINY_KL16, random_kl_state_dict
from vae_lab.models.arch import KLArch
from vae_lab.errors import BadVaeFile
from vae_lab.models import build_model


@pytest.mark.parametrize("arch", [TINY_KL, TINY_KL16], ids=["4ch-quant", "16ch-noquant"])
def test_decode_and_encode_equal_diffusers(arch):
    sd = random_kl_state_dict(arch, seed=3)
    ours = build_model("kl", sd, arch)
    ref = diffusers_vae(sd, arch)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, arch.z_channels, 8, 12, generator=gen)
    x = torch.rand(2, 3, 64, 40, generator=gen) * 2 - 1
    with torch.inference_mode():
        img_ours, img_ref = ours.decode(z), ref.decode(z).sample
        lat_ours, lat_ref = ours.encode(x), ref.encode(x).latent_dist.mean
    assert img_ours.shape == (2, 3, 64, 96)
    assert lat_ours.shape == (2, arch.z_channels, 8, 5)
    # the output is not trivially small: the comparison means something
    assert img_ref.abs().mean() > 0.05 and lat_ref.abs().mean() > 0.05
    assert (img_ours - img_ref).abs().max() <= 1e-4
    assert (lat_ours - lat_ref).abs().max() <= 1e-4


def test_a_wrong_weight_is_caught_by_the_comparison():
    """The equality test above can fail: one perturbed tensor moves the output."""
    sd = random_kl_state_dict(TINY_KL, seed=3)
    ref = diffusers_vae(sd, TINY_KL)
    sd["decoder.mid.attn_1.q.weight"] = sd["decoder.mid.attn_1.q.weight"] * 1.5
    ours = build_model("kl", sd, TINY_KL)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert (ours.decode(z) - ref.decode(z).sample).abs().max() > 1e-3


def test_strict_load_rejects_wrong_shapes_with_one_line():
    sd = random_kl_state_dict(TINY_KL)
    arch = KLArch(ch=32, ch_mult=(1, 2, 2, 4), num_res_blocks=1, z_channels=4)
    with pytest.raises(BadVaeFile) as err:
        build_model("kl", sd, arch)
    assert "\n" not in str(err.value)


def test_decoder_only_model_builds_without_encoder():
    arch = KLArch(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=4, has_encoder=False)
    sd = random_kl_state_dict(arch)
    model = build_model("kl", sd, arch)
    assert not model.has_encoder and model.has_decoder
    with torch.inference_mode():
        assert model.decode(torch.zeros(1, 4, 4, 4)).shape == (1, 3, 32, 32)


def test_models_are_built_without_random_init_and_never_alias_a_cache(monkeypatch):
    from factories import TINY_KL, random_kl_state_dict
    from vae_lab import models

    sd = random_kl_state_dict(TINY_KL, seed=4)
    key = "decoder.conv_in.weight"
    owned = models.build_model("kl", sd, TINY_KL)
    assert torch.equal(owned.state_dict()[key], sd[key])
    assert owned.state_dict()[key].data_ptr() != sd[key].data_ptr()  # a RAM cache's tensors stay its own
    assert all(p.device.type == "cpu" for p in owned.parameters())
    shared = models.build_model("kl", sd, TINY_KL, share=True)
    assert shared.state_dict()[key].data_ptr() == sd[key].data_ptr() or not models.can_assign()
    # torch without load_state_dict(assign=) (< 2.1): built normally, same weights
    monkeypatch.setattr(models, "can_assign", lambda: False)
    old = models.build_model("kl", sd, TINY_KL)
    assert torch.equal(old.state_dict()[key], sd[key])
