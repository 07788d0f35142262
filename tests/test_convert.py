"""convert: any VAE to an A1111-loadable safetensors file, identity kept, nothing overwritten."""

from __future__ import annotations

import hashlib

import pytest
import torch
from factories import TINY_KL, random_kl_state_dict
from safetensors import safe_open
from safetensors.torch import load_file
from vae_files import assert_same_tensors, write, write_diffusers_folder

from vae_lab.models.shapes import expected_shapes
from vae_lab.files.convert import ConvertError, _place, convert
from vae_lab.errors import BadVaeFile, UnsafeFile
from vae_lab.identity.identify import inspect, weights_id
from vae_lab.files.loading import load_vae_file


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sd():
    return random_kl_state_dict(TINY_KL, seed=5)


def _meta(path):
    with safe_open(str(path), "pt") as f:
        return f.metadata()


def test_wrapped_ckpt_becomes_strict_ldm_safetensors(tmp_path, sd):
    src = tmp_path / "vae-ft-something.ckpt"
    torch.save({"state_dict": dict(sd, **{"loss.logvar": torch.zeros(()), "model_ema.num_updates": torch.tensor(3)})}, src)
    dst = tmp_path / "out.safetensors"
    result = convert(src, dst)
    out = load_file(str(dst))
    # Exactly the tensors A1111's strict load_state_dict expects, nothing else.
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes(TINY_KL)
    assert_same_tensors(out, sd)
    meta = _meta(dst)
    assert meta["vae_lab.source_name"] == "vae-ft-something.ckpt"
    assert meta["vae_lab.source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert meta["vae_lab.weights_id"] == weights_id(sd) == result.weights_id
    assert (meta["vae_lab.source_format"], meta["vae_lab.kind"], meta["vae_lab.latent_channels"]) == ("pickle", "kl", "4")
    assert result.dtype == "float32" and result.tensors == len(sd)


def test_diffusers_folder_to_ldm(tmp_path, sd):
    folder = write_diffusers_folder(tmp_path / "vae", sd, TINY_KL, old_names=True)
    convert(folder, tmp_path / "ldm.safetensors")
    vae = load_vae_file(tmp_path / "ldm.safetensors")
    assert vae.layout == "ldm"
    assert_same_tensors(vae.state_dict, sd)
    assert _meta(tmp_path / "ldm.safetensors")["vae_lab.source_layout"] == "diffusers"


def test_half_halves_the_size_and_keeps_the_weights_id(tmp_path, sd):
    src = write(sd, tmp_path / "full.safetensors")
    r32 = convert(src, tmp_path / "f32.safetensors")
    r16 = convert(src, tmp_path / "f16.safetensors", half=True)
    out = load_file(str(tmp_path / "f16.safetensors"))
    assert all(t.dtype == torch.float16 for t in out.values())
    assert r16.dtype == "float16" and r16.size_bytes < 0.55 * r32.size_bytes
    assert inspect(tmp_path / "f16.safetensors", cache=None).weights_id == r32.weights_id == weights_id(sd)


def test_existing_destination_is_never_overwritten(tmp_path, sd):
    src = write(sd, tmp_path / "v.ckpt")
    dst = tmp_path / "taken.safetensors"
    dst.write_bytes(b"precious")
    with pytest.raises(ConvertError, match="already exists; not overwriting"):
        convert(src, dst)
    assert dst.read_bytes() == b"precious"
    with pytest.raises(ConvertError, match="source file itself"):
        convert(write(sd, tmp_path / "same.safetensors"), tmp_path / "x" / ".." / "same.safetensors")


def test_destination_appearing_during_the_write_is_kept(tmp_path):
    tmp = tmp_path / ".part"
    tmp.write_bytes(b"new")
    dst = tmp_path / "late.safetensors"
    dst.write_bytes(b"someone else's")
    with pytest.raises(ConvertError, match="already exists"):
        _place(str(tmp), str(dst))
    assert dst.read_bytes() == b"someone else's"


def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, sd, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    src = write(sd, tmp_path / "v.pt")
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(ConvertError, match=r"x.safetensors: cannot write \(.*No space left on device"):
        convert(src, out / "x.safetensors")
    assert list(out.iterdir()) == []


def test_bad_destinations(tmp_path, sd):
    src = write(sd, tmp_path / "v.pt")
    with pytest.raises(ConvertError, match="must end in .safetensors"):
        convert(src, tmp_path / "v.ckpt")
    with pytest.raises(ConvertError, match="does not exist"):
        convert(src, tmp_path / "no" / "such" / "v.safetensors")


@pytest.mark.parametrize("problem", ["unsafe", "truncated", "incomplete"])
def test_bad_source_leaves_nothing_behind(tmp_path, sd, problem):
    out = tmp_path / "out"
    out.mkdir()
    if problem == "unsafe":
        src = tmp_path / "evil.ckpt"

        class Evil:
            def __reduce__(self):
                return (print, ("ran",))

        torch.save({"x": Evil()}, src)
        expected = UnsafeFile
    elif problem == "truncated":
        full = write(sd, tmp_path / "full.safetensors")
        src = tmp_path / "cut.safetensors"
        src.write_bytes(full.read_bytes()[:5000])
        expected = BadVaeFile
    else:
        src = write({k: v for k, v in sd.items() if "mid" not in k}, tmp_path / "holes.safetensors")
        expected = BadVaeFile
    with pytest.raises(expected):
        convert(src, out / "x.safetensors")
    assert list(out.iterdir()) == []


def test_tae_pair_becomes_one_file_with_both_halves(tmp_path, taef2_pair):
    decoder, _ = taef2_pair
    result = convert(decoder, tmp_path / "taef2.safetensors")
    assert result.kind == "tae" and result.dtype == "float16"
    vae = load_vae_file(tmp_path / "taef2.safetensors")
    assert vae.kind == "tae" and vae.has_encoder and vae.has_decoder
    assert vae.arch.variant == "taef2" and vae.arch.latent_channels == 32
    assert inspect(tmp_path / "taef2.safetensors", cache=None).weights_id == inspect(decoder, cache=None).weights_id
    assert _meta(tmp_path / "taef2.safetensors")["vae_lab.variant"] == "taef2"


def test_round_trip_through_diffusers_own_ldm_converter(tmp_path):
    """diffusers folder -> our LDM safetensors -> diffusers' `convert_ldm_vae_checkpoint` -> the same model.

    Two independent implementations of the mapping (ours, and the one diffusers uses for
    single-file checkpoints) must agree, and the rebuilt model must decode identically."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    torch.manual_seed(0)
    cfg = dict(
        block_out_channels=(32, 64, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=32,
        latent_channels=4,
    )
    model = AutoencoderKL(**cfg).eval()
    model.save_pretrained(tmp_path / "diffusers-vae")
    convert(tmp_path / "diffusers-vae", tmp_path / "ldm.safetensors", cache=None)

    ldm = load_file(str(tmp_path / "ldm.safetensors"))
    rebuilt = AutoencoderKL(**cfg).eval()
    rebuilt.load_state_dict(convert_ldm_vae_checkpoint(ldm, dict(model.config)), strict=True)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(rebuilt.decode(z).sample, model.decode(z).sample)
