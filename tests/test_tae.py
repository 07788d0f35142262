"""The TAE family with madebyollin's real TAEF2 weights: a real round trip of a real photo."""

from __future__ import annotations

import pytest
import torch

from vae_lab.runtime.engine import load_vae
from vae_lab.errors import BadVaeFile, IncompatibleVae
from vae_lab.files.imaging import array_to_tensor
from vae_lab.models.tae import TAE


def psnr(a, b) -> float:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) ** 2).mean() / 4  # on a [0, 1] scale
    return float(10 * torch.log10(1 / mse))


@pytest.fixture(scope="module")
def taef2(taef2_pair, tmp_path_factory):
    dec, _enc = taef2_pair
    state = tmp_path_factory.mktemp("state")
    return load_vae(dec, device="cpu", state_dir=state)


@pytest.fixture(scope="module")
def face(astronaut):
    return array_to_tensor(astronaut[:256, 128:384])  # the astronaut's face and helmet, 256x256


def test_taef2_pair_is_read_as_one_32_channel_tae(taef2):
    assert taef2.kind == "tae" and taef2.latent_channels == 32 and taef2.family == "flux2"
    assert taef2.has_encoder and taef2.has_decoder
    assert (taef2.scale, taef2.shift) == (1.0, 0.0)  # TAE latents are diffusion-space latents


def test_taef2_round_trip_of_a_real_photo(taef2, face):
    enc = taef2.encode(face, precision="fp32")
    assert enc.latents.shape == (1, 32, 32, 32) and enc.precision_used == "fp32"
    # FLUX.2 latents are roughly unit-scale and centred, not an image in disguise
    assert 0.3 < float(enc.latents.std()) < 3 and abs(float(enc.latents.mean())) < 0.5
    dec = taef2.decode(enc.latents, precision="fp32")
    assert dec.images.shape == face.shape and dec.fallback == []
    # measured 31.2 dB on the full 512x512 photo; a model without the pool branches gives 16.9 dB,
    # a [0,1]/[-1,1] mix-up 6.4 dB
    assert psnr(dec.images, face) > 27


def test_without_the_pool_branches_the_round_trip_is_poor(taef2_pair, face):
    sd = {}
    for half, path in zip(("decoder", "encoder"), taef2_pair):
        sd.update({f"{half}.{k}": v for k, v in torch.load(path, weights_only=True).items() if ".pool." not in k})
    model = TAE({k: v.float() for k, v in sd.items()}).eval()
    with torch.inference_mode():
        out = model.decode(model.encode(face))
    assert psnr(out, face) < 22


def test_sides_not_multiple_of_8_are_padded_and_cropped(taef2, face):
    odd = face[:, :, :203, :250]
    enc = taef2.encode(odd, precision="fp32")
    assert enc.image_size == (203, 250) and enc.latents.shape[-2:] == (26, 32)
    dec = taef2.decode(enc.latents, precision="fp32", size=enc.image_size)
    assert dec.images.shape == odd.shape
    assert psnr(dec.images, odd) > 26


def test_decoder_only_tae_cannot_encode(taef2_pair, tmp_path):
    dec, _ = taef2_pair
    alone = tmp_path / "lonely_decoder.pth"
    alone.write_bytes(dec.read_bytes())
    vae = load_vae(alone, device="cpu", state_dir=tmp_path)
    assert vae.has_decoder and not vae.has_encoder
    with pytest.raises(IncompatibleVae, match="no encoder"):
        vae.encode(torch.zeros(1, 3, 64, 64))


def test_mismatched_halves_are_rejected():
    sd = {"decoder.1.weight": torch.zeros(64, 16, 3, 3), "encoder.0.weight": torch.zeros(64, 3, 3, 3),
          "encoder.14.weight": torch.zeros(4, 64, 3, 3)}
    with pytest.raises(BadVaeFile, match="channel"):
        TAE(sd)
