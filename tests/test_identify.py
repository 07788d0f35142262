"""inspect / weights_id: identity survives re-saving, the catalog names files, shapes never guess a family."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys

import pytest
import torch
from factories import TINY_KL, TINY_KL16, random_kl_state_dict
from vae_files import ldm_to_diffusers, unet_keys, write, write_diffusers_folder

from vae_lab.identity import catalog, identify
from vae_lab.identity.identify import HashCache, inspect, weights_id


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sd():
    return random_kl_state_dict(TINY_KL, seed=3)


def _copies(sd, folder):
    """The same weights in every form a user may hold them."""
    wrapped = dict(sd, **{"loss.logvar": torch.zeros(()), "model_ema.decay": torch.tensor(0.999)})
    ckpt = folder / "wrapped.ckpt"
    torch.save({"state_dict": wrapped, "global_step": 5}, ckpt)
    full = {"first_stage_model." + k: v for k, v in sd.items()} | unet_keys()
    return {
        "safetensors": write(sd, folder / "a.safetensors"),
        "renamed": write(sd, folder / "totally-different-name.safetensors"),
        "zip pickle": write(sd, folder / "a.pt"),
        "legacy pickle": write(sd, folder / "b.pth", legacy=True),
        "wrapped ckpt": ckpt,
        "full checkpoint": write(full, folder / "model.safetensors"),
        "diffusers (to_q)": write_diffusers_folder(folder / "d1", sd, TINY_KL),
        "diffusers (query, .bin)": write_diffusers_folder(folder / "d2", sd, TINY_KL, old_names=True, bin_=True),
        "diffusers keys, one file": write(ldm_to_diffusers(sd), folder / "dk.safetensors"),
        "fp16": write({k: v.half() for k, v in sd.items()}, folder / "half.safetensors"),
        "fp16 ckpt": write({k: v.half() for k, v in sd.items()}, folder / "half.ckpt"),
    }


EXPECTED_FORMAT_LAYOUT_DTYPE = {
    "safetensors": ("safetensors", "ldm", "float32"),
    "renamed": ("safetensors", "ldm", "float32"),
    "zip pickle": ("pickle", "ldm", "float32"),
    "legacy pickle": ("pickle", "ldm", "float32"),
    "wrapped ckpt": ("pickle", "ldm", "float32"),
    "full checkpoint": ("safetensors", "checkpoint", "float32"),
    "diffusers (to_q)": ("diffusers", "diffusers", "float32"),
    "diffusers (query, .bin)": ("diffusers", "diffusers", "float32"),
    "diffusers keys, one file": ("safetensors", "diffusers", "float32"),
    "fp16": ("safetensors", "ldm", "float16"),
    "fp16 ckpt": ("pickle", "ldm", "float16"),
}


def test_weights_id_is_the_same_for_every_copy(tmp_path, sd):
    infos = {name: inspect(p, cache=None) for name, p in _copies(sd, tmp_path).items()}
    for name, info in infos.items():
        assert (info.format, info.layout, info.dtype) == EXPECTED_FORMAT_LAYOUT_DTYPE[name], name
        assert (info.kind, info.latent_channels, info.has_encoder, info.has_decoder) == ("kl", 4, True, True), name
        assert (info.family, info.known) == ("unknown", None), name
    ids = {name: info.weights_id for name, info in infos.items()}
    assert len(set(ids.values())) == 1, ids
    # ... while the file hashes differ, except for byte-identical files
    assert infos["renamed"].file_sha256 == infos["safetensors"].file_sha256
    assert infos["diffusers keys, one file"].file_sha256 == infos["diffusers (to_q)"].file_sha256
    assert len({info.file_sha256 for info in infos.values()}) == len(infos) - 2
    assert ids["safetensors"] == weights_id(sd)
    assert len(ids["safetensors"]) == 64 and int(ids["safetensors"], 16) >= 0


def test_weights_id_changes_with_the_weights(sd):
    other = random_kl_state_dict(TINY_KL, seed=4)
    assert weights_id(other) != weights_id(sd)
    nudged = dict(sd)
    nudged["decoder.conv_out.bias"] = sd["decoder.conv_out.bias"] + 0.01
    assert weights_id(nudged) != weights_id(sd)
    renamed = dict(sd)
    renamed["decoder.conv_out.bias2"] = renamed.pop("decoder.conv_out.bias")
    assert weights_id(renamed) != weights_id(sd)
    encoder_only = {k: v for k, v in sd.items() if not k.startswith(("decoder.", "post_quant"))}
    assert weights_id(encoder_only) != weights_id(sd)


def test_every_info_field_of_a_plain_kl_file(tmp_path, sd):
    path = write(sd, tmp_path / "vae.safetensors")
    info = inspect(path, cache=None)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.path == str(path)
    assert (info.format, info.layout, info.kind, info.variant) == ("safetensors", "ldm", "kl", "kl-f8")
    assert info.latent_channels == 4
    assert (info.has_encoder, info.has_decoder) == (True, True)
    assert info.file_sha256 == digest and info.short_hash == digest[:10]
    assert info.weights_id == weights_id(sd)
    # Unknown 4-channel kl-f8: the family is not guessed; the scaling is SD1's (what A1111 can run).
    assert (info.family, info.known, info.known_id) == ("unknown", None, None)
    assert (info.scaling_factor, info.shift_factor) == (0.18215, 0.0)
    assert info.dtype == "float32" and info.tensors == len(sd)
    assert info.size_bytes == path.stat().st_size


def test_unknown_16_channel_kl_is_not_guessed(tmp_path):
    info = inspect(write(random_kl_state_dict(TINY_KL16), tmp_path / "ae.safetensors"), cache=None)
    assert (info.latent_channels, info.family) == (16, "unknown")
    assert (info.scaling_factor, info.shift_factor) == (1.0, 0.0)


def test_diffusers_folder_hashes_its_weights_file_and_keeps_the_config_as_a_hint(tmp_path, sd):
    folder = write_diffusers_folder(tmp_path / "sdxl-like", sd, TINY_KL, scaling_factor=0.13025)
    info = inspect(folder, cache=None)
    weights = folder / "diffusion_pytorch_model.safetensors"
    assert info.file_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info.config_scaling_factor == 0.13025
    assert info.family == "unknown"  # the config is a hint; identity decides


def _pretend_file_hash(monkeypatch, real_hash_of, fake):
    real = identify.sha256_file
    monkeypatch.setattr(identify, "sha256_file", lambda p: fake if os.path.samefile(p, real_hash_of) else real(p))


@pytest.mark.parametrize(
    "entry_id, arch, family, scale",
    [
        ("sdxl-vae", TINY_KL, "sdxl", (0.13025, 0.0)),
        ("sd-vae-ft-mse", TINY_KL, "sd1", (0.18215, 0.0)),
        ("flux1-ae", TINY_KL16, "flux", (0.3611, 0.1159)),
    ],
)
def test_known_file_hash_names_the_vae_and_its_family(tmp_path, monkeypatch, entry_id, arch, family, scale):
    entry = catalog.find(entry_id)
    path = write(random_kl_state_dict(arch), tmp_path / "some-name.safetensors")
    _pretend_file_hash(monkeypatch, path, entry.sha256)
    info = inspect(path, cache=None)
    assert (info.known, info.known_id, info.known_via) == (entry.name, entry.id, "file")
    assert info.family == family
    assert info.short_hash == entry.sha256[:10]
    assert (info.scaling_factor, info.shift_factor) == scale


def test_converted_copy_keeps_its_identity_until_its_weights_change(tmp_path, monkeypatch, sd):
    from vae_lab.files.convert import convert

    entry = catalog.find("sdxl-vae")
    src = write(sd, tmp_path / "sdxl_vae.ckpt")
    _pretend_file_hash(monkeypatch, src, entry.sha256)
    cache = HashCache(str(tmp_path / "cache"))  # where identifying the source records its weights id
    convert(src, tmp_path / "copy.safetensors", half=True, cache=cache)
    info = inspect(tmp_path / "copy.safetensors", cache=cache)
    assert (info.known, info.known_via, info.family, info.converted_from) == (entry.name, "weights", "sdxl", "sdxl_vae.ckpt")
    # A machine that never verified the original cannot tell: the copy's metadata is not evidence.
    assert inspect(tmp_path / "copy.safetensors", cache=HashCache(str(tmp_path / "other"))).known is None

    # Same metadata, other weights: the recorded identity no longer applies.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "copy.safetensors"), "pt") as f:
        meta = f.metadata()
    write(random_kl_state_dict(TINY_KL, seed=9), tmp_path / "forged.safetensors", **meta)
    forged = inspect(tmp_path / "forged.safetensors", cache=cache)
    assert (forged.known, forged.family) == (None, "unknown")


def test_real_taef2_pair_is_a_32_channel_flux2_tae(taef2_pair):
    decoder, encoder = taef2_pair
    info = inspect(decoder, cache=None)
    assert (info.kind, info.variant, info.latent_channels, info.family) == ("tae", "taef2", 32, "flux2")
    assert (info.has_encoder, info.has_decoder) == (True, True)
    assert (info.scaling_factor, info.shift_factor) == (1.0, 0.0)
    assert info.dtype == "float16" and info.layout == "tae" and info.format == "pickle"
    assert info.file_sha256 == hashlib.sha256(decoder.read_bytes()).hexdigest()
    assert [f["path"] for f in info.files] == [str(decoder), str(encoder)]
    assert inspect(encoder, cache=None).weights_id == info.weights_id  # one VAE, whichever half is given


def test_tae_half_alone_is_still_flux2_by_shape(tmp_path, taef2_pair):
    shutil.copyfile(taef2_pair[1], tmp_path / "taef2_encoder.pth")
    info = inspect(tmp_path / "taef2_encoder.pth", cache=None)
    assert (info.has_encoder, info.has_decoder, info.family) == (True, False, "flux2")


def test_catalog_missing_means_nothing_is_known(tmp_path, monkeypatch, sd):
    monkeypatch.setitem(sys.modules, "vae_lab.identity.catalog", None)  # import now raises ImportError
    info = inspect(write(sd, tmp_path / "v.safetensors"), cache=None)
    assert info.known is None and info.family == "unknown"


def test_hash_cache_skips_rehashing_until_the_file_changes(tmp_path, monkeypatch, sd):
    path = write(sd, tmp_path / "v.safetensors")
    cache = HashCache(str(tmp_path / "c"))
    first = inspect(path, cache=cache)
    assert os.path.isfile(cache.path)

    def boom(*a, **k):
        raise AssertionError("hashed again")

    monkeypatch.setattr(identify, "sha256_file", boom)
    monkeypatch.setattr(identify, "weights_id", boom)
    again = inspect(path, cache=HashCache(str(tmp_path / "c")))  # a fresh object reads the JSON file
    assert (again.file_sha256, again.weights_id) == (first.file_sha256, first.weights_id)

    os.utime(path, ns=(1, 1))  # same bytes, other mtime: the cache entry no longer applies
    with pytest.raises(AssertionError, match="hashed again"):
        inspect(path, cache=HashCache(str(tmp_path / "c")))


def test_damaged_cache_is_ignored(tmp_path, sd):
    path = write(sd, tmp_path / "v.safetensors")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / HashCache.FILE).write_text("{ broken")
    info = inspect(path, cache=str(tmp_path / "c"))
    assert info.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_default_cache_folder_comes_from_the_environment(tmp_path, sd):
    inspect(write(sd, tmp_path / "v.safetensors"))
    assert (tmp_path / "cache" / HashCache.FILE).is_file()
