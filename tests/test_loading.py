"""load_vae_file: every container and key layout, normalised to one state dict, and every bad file refused."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from factories import TINY_KL, TINY_KL16, random_kl_state_dict
from vae_files import assert_same_tensors, ldm_to_diffusers, unet_keys, write, write_diffusers_folder

from vae_lab.models.arch import SD_KL, KLArch, TAEArch
from vae_lab.models.shapes import expected_shapes
from vae_lab.errors import BadVaeFile, UnsafeFile
from vae_lab.files.loading import load_vae_file


@pytest.fixture(scope="module")
def sd():
    return random_kl_state_dict(TINY_KL, seed=1)


# --- containers and layouts -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, legacy, fmt",
    [
        ("v.safetensors", False, "safetensors"),
        ("v.ckpt", False, "pickle"),
        ("v.pt", False, "pickle"),
        ("v.pth", True, "pickle"),  # legacy (pre-zip) torch.save format
        ("v.bin", False, "pickle"),
    ],
)
def test_ldm_files_in_every_container(tmp_path, sd, name, legacy, fmt):
    path = write(sd, tmp_path / name, legacy=legacy)
    vae = load_vae_file(path)
    assert (vae.format, vae.layout, vae.kind) == (fmt, "ldm", "kl")
    assert vae.arch == TINY_KL
    assert vae.files == [str(path)]
    assert_same_tensors(vae.state_dict, sd)


def test_pickles_of_newer_protocols_load_quietly_or_are_refused_clearly(tmp_path, sd):
    """torch warns about every legacy pickle not written with protocol 2; the CLI must stay quiet."""
    import warnings

    path = tmp_path / "p3.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False, pickle_protocol=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_same_tensors(load_vae_file(path).state_dict, sd)
    # Protocol 4 frames are beyond torch's safe loader: refused, and the message says why.
    torch.save(sd, tmp_path / "p4.pt", pickle_protocol=4)
    with pytest.raises(UnsafeFile, match=r"p4.pt: refused: this pickle uses opcode 149, which torch's safe loader does not read; nothing"):
        load_vae_file(tmp_path / "p4.pt")


def test_container_is_recognised_by_content_not_extension(tmp_path, sd):
    path = write(sd, tmp_path / "x.safetensors")
    renamed = tmp_path / "looks-like-a.ckpt"
    path.rename(renamed)
    vae = load_vae_file(renamed)
    assert vae.format == "safetensors"
    assert_same_tensors(vae.state_dict, sd)


def test_state_dict_wrapper_with_loss_and_ema_extras(tmp_path, sd):
    inner = dict(sd)
    inner["loss.logvar"] = torch.zeros(())
    inner["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    inner["model_ema.decay"] = torch.tensor(0.9999)
    inner["model_ema.num_updates"] = torch.tensor(840000, dtype=torch.int32)
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": inner, "epoch": 3, "global_step": 840000}, path)
    vae = load_vae_file(path)
    assert vae.dropped_keys == 4
    assert vae.layout == "ldm"
    assert_same_tensors(vae.state_dict, sd)


@pytest.mark.parametrize("prefix", ["first_stage_model.", "model.first_stage_model.", "vae."])
@pytest.mark.parametrize("ext", [".safetensors", ".ckpt"])
def test_full_checkpoint_with_baked_vae(tmp_path, sd, prefix, ext):
    full = {prefix + k: v for k, v in sd.items()}
    full.update(unet_keys())
    if ext == ".ckpt":
        full[prefix + "loss.logvar"] = torch.zeros(())
    path = write(full, tmp_path / f"model{ext}")
    vae = load_vae_file(path)
    assert (vae.layout, vae.kind) == ("checkpoint", "kl")
    assert_same_tensors(vae.state_dict, sd)


@pytest.mark.parametrize("old_names", [False, True], ids=["to_q", "query"])
@pytest.mark.parametrize("bin_", [False, True], ids=["safetensors", "bin"])
def test_diffusers_folder(tmp_path, sd, old_names, bin_):
    folder = write_diffusers_folder(tmp_path / "vae", sd, TINY_KL, old_names=old_names, bin_=bin_)
    vae = load_vae_file(folder)
    assert (vae.format, vae.layout, vae.kind) == ("diffusers", "diffusers", "kl")
    assert vae.config["scaling_factor"] == 0.18215
    weights = "diffusion_pytorch_model.bin" if bin_ else "diffusion_pytorch_model.safetensors"
    assert vae.weights_file == str(folder / weights)
    assert_same_tensors(vae.state_dict, sd)


def test_diffusers_pipeline_folder_uses_its_vae_subfolder(tmp_path, sd):
    write_diffusers_folder(tmp_path / "pipe" / "vae", sd, TINY_KL)
    vae = load_vae_file(tmp_path / "pipe")
    assert_same_tensors(vae.state_dict, sd)


def test_diffusers_layout_single_file(tmp_path, sd):
    path = write(ldm_to_diffusers(sd), tmp_path / "diffusers-keys.safetensors")
    vae = load_vae_file(path)
    assert (vae.format, vae.layout) == ("safetensors", "diffusers")
    assert_same_tensors(vae.state_dict, sd)


def _real_diffusers_model(latent_channels=4):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32, 64, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=32,
        latent_channels=latent_channels,
    )


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "bin"])
def test_real_diffusers_autoencoderkl_save_pretrained(tmp_path, safe):
    model = _real_diffusers_model()
    model.save_pretrained(tmp_path / "real", safe_serialization=safe)
    vae = load_vae_file(tmp_path / "real")
    assert vae.layout == "diffusers"
    assert vae.arch == KLArch(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=4)
    # Our LDM tensors, renamed back with the independent test mapping, are exactly diffusers' own.
    assert_same_tensors(ldm_to_diffusers(vae.state_dict), dict(model.state_dict()))


def test_fp16_copy(tmp_path, sd):
    half = {k: v.half() for k, v in sd.items()}
    vae = load_vae_file(write(half, tmp_path / "half.safetensors"))
    assert all(t.dtype == torch.float16 for t in vae.state_dict.values())
    assert_same_tensors(vae.state_dict, half)


def test_sixteen_channels_without_quant_convs(tmp_path):
    sd16 = random_kl_state_dict(TINY_KL16, seed=2)
    vae = load_vae_file(write(sd16, tmp_path / "ae.safetensors"))
    assert vae.arch == TINY_KL16
    assert vae.latent_channels == 16 and not vae.arch.use_quant_conv
    folder = write_diffusers_folder(tmp_path / "flux-like", sd16, TINY_KL16, scaling_factor=0.3611, shift_factor=0.1159)
    assert_same_tensors(load_vae_file(folder).state_dict, sd16)


@pytest.mark.parametrize("half", ["encoder", "decoder"])
def test_kl_single_half(tmp_path, sd, half):
    keep = "quant_conv." if half == "encoder" else "post_quant_conv."
    part = {k: v for k, v in sd.items() if k.startswith(half + ".") or k.startswith(keep)}
    vae = load_vae_file(write(part, tmp_path / f"{half}.safetensors"))
    assert (vae.has_encoder, vae.has_decoder) == (half == "encoder", half == "decoder")
    assert vae.arch.latent_channels == 4
    assert_same_tensors(vae.state_dict, part)


# --- TAE -------------------------------------------------------------------------------------


def test_real_taef2_pair_from_either_half(taef2_pair):
    decoder, encoder = taef2_pair
    for given, sibling in ((decoder, encoder), (encoder, decoder)):
        vae = load_vae_file(given)
        assert vae.kind == "tae" and vae.layout == "tae" and vae.format == "pickle"
        assert vae.files == [str(given), str(sibling)]
        assert vae.arch == TAEArch(
            latent_channels=32,
            variant="taef2",
            encoder_pool_blocks=(11, 12, 13),
            decoder_pool_blocks=(3, 4, 5),
            has_encoder=True,
            has_decoder=True,
        )
        assert set(vae.state_dict) == set(expected_shapes(vae.arch))
    raw = torch.load(decoder, weights_only=True)
    assert torch.equal(vae.state_dict["decoder.1.weight"], raw["1.weight"])


def test_tae_half_without_sibling(tmp_path, taef2_pair):
    decoder, _ = taef2_pair
    alone = tmp_path / "taef2_decoder.pth"
    shutil.copyfile(decoder, alone)
    vae = load_vae_file(alone)
    assert (vae.has_encoder, vae.has_decoder) == (False, True)
    assert vae.files == [str(alone)]
    assert vae.arch.latent_channels == 32 and vae.arch.decoder_pool_blocks == (3, 4, 5)


def test_tae_sibling_with_other_latent_channels_is_refused(tmp_path, taef2_pair):
    decoder, _ = taef2_pair
    shutil.copyfile(decoder, tmp_path / "mix_decoder.pth")
    enc = {k.split(".", 1)[1]: torch.zeros(s) for k, s in expected_shapes(TAEArch(4, has_decoder=False)).items()}
    torch.save(enc, tmp_path / "mix_encoder.pth")
    with pytest.raises(BadVaeFile, match="mix_encoder.pth: has 4 latent channels"):
        load_vae_file(tmp_path / "mix_decoder.pth")


def test_diffusers_autoencoder_tiny_folder(tmp_path):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    model = AutoencoderTiny(latent_channels=16)
    model.save_pretrained(tmp_path / "tiny")
    vae = load_vae_file(tmp_path / "tiny")
    assert (vae.kind, vae.layout, vae.format) == ("tae", "tae-diffusers", "diffusers")
    assert vae.arch == TAEArch(latent_channels=16)
    ref = model.state_dict()
    # The diffusers decoder has no Clamp at index 0: its layer N is the .pth layer N + 1.
    assert torch.equal(vae.state_dict["decoder.1.weight"], ref["decoder.layers.0.weight"])
    assert torch.equal(vae.state_dict["decoder.19.bias"], ref["decoder.layers.18.bias"])
    assert torch.equal(vae.state_dict["encoder.14.weight"], ref["encoder.layers.14.weight"])


# --- refusals --------------------------------------------------------------------------------


class _PlantsAFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, sd, legacy):
    target = tmp_path / "pwned.txt"
    evil = dict(sd)
    evil["decoder.conv_out.bias"] = _PlantsAFile(str(target))
    path = tmp_path / "evil.ckpt"
    torch.save(evil, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeFile) as err:
        load_vae_file(path)
    assert not target.exists()
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused") and "open" in msg and "\n" not in msg


def test_pickle_with_os_system_names_the_global(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "sys.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(UnsafeFile, match=r"needs (posix|nt|os)\.system"):
        load_vae_file(path)


def _assert_bad(path, pattern):
    with pytest.raises(BadVaeFile) as err:
        load_vae_file(path)
    msg = str(err.value)
    assert msg.startswith(str(path) + ": "), msg
    assert "\n" not in msg
    assert pattern in msg, msg
    return msg


@pytest.mark.parametrize("ext", [".safetensors", ".ckpt"])
def test_truncated_files(tmp_path, sd, ext):
    path = write(sd, tmp_path / f"full{ext}")
    data = path.read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    _assert_bad(cut, "truncated or corrupt")


def test_legacy_pickle_truncated(tmp_path, sd):
    path = write(sd, tmp_path / "full.pt", legacy=True)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:-5000])
    _assert_bad(cut, "PyTorch file")


def test_garbage_empty_and_missing(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a model at all, just text")
    _assert_bad(junk, "not a safetensors or PyTorch weights file")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _assert_bad(empty, "empty file")
    _assert_bad(tmp_path / "nope.safetensors", "no such file")
    (tmp_path / "folder").mkdir()
    _assert_bad(tmp_path / "folder", "not a diffusers VAE")
    import pickle
    import zipfile

    for name in ("readme.txt", "docs/readme.txt"):
        with zipfile.ZipFile(tmp_path / "archive.ckpt", "w") as z:
            z.writestr(name, "hello")
        _assert_bad(tmp_path / "archive.ckpt", "a zip archive, but not a PyTorch file")
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"encoder.conv_in.weight": [1.0]}, protocol=2))
    _assert_bad(tmp_path / "plain.pkl", "a Python pickle, but not one written by torch.save")


def test_missing_extra_and_misshaped_tensors(tmp_path, sd):
    missing = dict(sd)
    del missing["decoder.up.2.block.1.conv2.weight"]
    del missing["encoder.mid.attn_1.q.bias"]
    msg = _assert_bad(write(missing, tmp_path / "missing.safetensors"), "2 missing tensors")
    assert "decoder.up.2.block.1.conv2.weight" in msg and "encoder.mid.attn_1.q.bias" in msg

    extra = dict(sd)
    extra["decoder.up.0.block.0.extra_conv.weight"] = torch.zeros(3)
    _assert_bad(write(extra, tmp_path / "extra.safetensors"), "1 unexpected tensor (decoder.up.0.block.0.extra_conv.weight)")

    wrong = dict(sd)
    wrong["decoder.norm_out.weight"] = torch.ones(7)
    _assert_bad(write(wrong, tmp_path / "wrong.safetensors"), "decoder.norm_out.weight [7] != [32]")


def test_four_channel_vae_without_its_quant_convs_is_incomplete(tmp_path, sd):
    """Only 16-channel VAEs (SD3/Flux.1) come without quant convs; an SD VAE stripped of them would decode wrong."""
    stripped = {k: v for k, v in sd.items() if "quant_conv." not in k}
    _assert_bad(write(stripped, tmp_path / "stripped.safetensors"), "4 missing tensors (post_quant_conv.bias, post_quant_conv.weight, quant_conv.bias, …)")


def test_many_missing_tensors_are_counted_not_all_listed(tmp_path, sd):
    part = {k: v for k, v in sd.items() if not k.endswith("norm1.bias")}
    n_missing = len(sd) - len(part)
    assert n_missing > 10
    msg = _assert_bad(write(part, tmp_path / "holes.safetensors"), f"{n_missing} missing tensors")
    assert msg.count("norm1.bias") == 3 and msg.endswith(", …)")


def test_not_a_vae(tmp_path):
    lora = {"lora_unet_down_blocks_0.alpha": torch.ones(()), "lora_unet_down_blocks_0.lora_up.weight": torch.zeros(4, 4)}
    _assert_bad(write(lora, tmp_path / "lora.safetensors"), "not a VAE")
    _assert_bad(write(unet_keys(), tmp_path / "unet-only.safetensors"), "Stable Diffusion checkpoint with no VAE")
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    _assert_bad(tmp_path / "list.pt", "not a VAE (the file holds a list")
    torch.save({}, tmp_path / "nothing.pt")
    _assert_bad(tmp_path / "nothing.pt", "no tensors")


def test_bookkeeping_next_to_unwrapped_weights_is_ignored(tmp_path, sd):
    path = tmp_path / "flat.ckpt"
    torch.save(dict(sd, epoch=3, global_step=10, note="trained on x", history=[1.0, 0.5]), path)
    vae = load_vae_file(path)
    assert vae.dropped_keys == 4
    assert_same_tensors(vae.state_dict, sd)
    broken = dict(sd)
    broken["decoder.conv_in.weight"] = "not a tensor"
    torch.save(broken, tmp_path / "broken.ckpt")
    _assert_bad(tmp_path / "broken.ckpt", "not a complete kl-f8 VAE: decoder.conv_in.weight missing")


def test_odd_names_and_shapes_are_one_line_errors_not_crashes(tmp_path, sd, taef2_pair):
    odd = ldm_to_diffusers(sd)
    odd["decoder.up_blocks.x.resnets.0.conv1.weight"] = torch.zeros(1)
    _assert_bad(write(odd, tmp_path / "odd.safetensors"), "1 unexpected tensor (decoder.up_blocks.x.resnets.0.conv1.weight)")
    flat = dict(sd)
    flat["encoder.conv_in.weight"] = torch.zeros(())
    _assert_bad(write(flat, tmp_path / "flat.safetensors"), "encoder.conv_in.weight has shape [], not a conv weight")
    enc = torch.load(taef2_pair[1], weights_only=True)
    enc["14.weight"] = torch.zeros(32, 64)
    _assert_bad(write(enc, tmp_path / "t_encoder.pth"), "encoder.14.weight has shape [32, 64], not a conv weight")
    torch.save({"model": sd}, tmp_path / "nested.ckpt")
    _assert_bad(tmp_path / "nested.ckpt", "not a VAE (1 entry, none in a known VAE layout, e.g. 'model')")


def test_integer_tensors_are_not_weights(tmp_path, sd):
    bad = dict(sd)
    bad["decoder.conv_out.bias"] = torch.zeros(3, dtype=torch.int64)
    _assert_bad(write(bad, tmp_path / "ints.pt"), "not floating point")


def test_unreadable_diffusers_config(tmp_path, sd):
    folder = write_diffusers_folder(tmp_path / "d", sd, TINY_KL)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(BadVaeFile, match="config.json: unreadable"):
        load_vae_file(folder)


def test_refusals_change_nothing_on_disk(tmp_path, sd):
    bad = dict(sd)
    del bad["decoder.conv_in.bias"]
    path = write(bad, tmp_path / "bad.safetensors")
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    with pytest.raises(BadVaeFile):
        load_vae_file(path)
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert before == after


def test_full_size_sd_shapes_validate(tmp_path):
    """The real SD kl-f8 configuration (248 tensors) is read back from shapes alone."""
    from vae_lab.models.arch import SD_KL

    shapes = expected_shapes(SD_KL)
    assert len(shapes) == 248
    sd = {k: torch.zeros(s, dtype=torch.float16) for k, s in shapes.items()}
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1, dtype=torch.int32)
    vae = load_vae_file(write(sd, tmp_path / "sd.safetensors"))
    assert vae.arch == SD_KL and len(vae.state_dict) == 248
    json.dumps(vae.metadata)


def test_lightning_checkpoint_with_callbacks_and_numpy_loads_without_running_anything(tmp_path, sd, monkeypatch):
    """What A1111's safe unpickler accepts (Lightning's ModelCheckpoint, numpy scalars/arrays) we read too,
    with the callback bound to an inert stand-in: its code is never imported or run."""
    import sys
    import types

    import numpy as np

    ran = []

    class ModelCheckpoint:
        def __init__(self):
            self.best_model_score = np.float64(1.25)

        def __setstate__(self, state):
            ran.append(state)

    ModelCheckpoint.__module__ = "pytorch_lightning.callbacks.model_checkpoint"
    ModelCheckpoint.__qualname__ = "ModelCheckpoint"
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    module.ModelCheckpoint = ModelCheckpoint
    monkeypatch.setitem(sys.modules, "pytorch_lightning", types.ModuleType("pytorch_lightning"))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.callbacks", types.ModuleType("pytorch_lightning.callbacks"))
    monkeypatch.setitem(sys.modules, "pytorch_lightning.callbacks.model_checkpoint", module)
    ckpt = {
        "state_dict": dict(sd, **{"loss.logvar": torch.zeros(())}),
        "callbacks": {ModelCheckpoint: {"best_model_score": np.float64(0.5), "history": np.arange(4)}},
        "checkpoint": ModelCheckpoint(),
        "pytorch-lightning_version": "1.4.2",
    }
    for legacy in (False, True):
        path = tmp_path / f"lightning-{legacy}.ckpt"
        torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
        vae = load_vae_file(path)
        assert_same_tensors(vae.state_dict, sd)
    assert ran == []


def _taesd_like(latent_channels, downscale):
    """A random TAE with madebyollin's exact module structure, built independently of vae_lab.models.arch."""
    import torch.nn as nn

    def conv(a, b, **kw):
        return nn.Conv2d(a, b, 3, padding=1, **kw)

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Sequential(conv(c, c), nn.ReLU(), conv(c, c), nn.ReLU(), conv(c, c))

    if downscale == 32:
        enc = [conv(3, 32, stride=2), nn.ReLU(), conv(32, 64, stride=2), nn.ReLU(), Block(64)]
        for _ in range(4):
            enc += [conv(64, 64, stride=2, bias=False), Block(64), Block(64), Block(64)]
        widths = [256, 128, 64, 64, 64, 64]
    else:
        enc = [conv(3, 64), Block(64)]
        for _ in range(3):
            enc += [conv(64, 64, stride=2, bias=False), Block(64), Block(64), Block(64)]
        widths = [64, 64, 64, 64]
    enc.append(conv(64, latent_channels))
    dec = [nn.Identity(), conv(latent_channels, widths[0]), nn.ReLU()]
    for a, b in zip(widths[:-1], widths[1:]):
        dec += [Block(a), Block(a), Block(a), nn.Upsample(scale_factor=2), conv(a, b, bias=False)]
    dec += [Block(widths[-1]), conv(widths[-1], 3)]
    return nn.Sequential(*enc).state_dict(), nn.Sequential(*dec).state_dict()


@pytest.mark.parametrize("channels, downscale, variant", [(4, 8, "taesd"), (16, 8, "taesd"), (32, 32, "f32")])
def test_tae_pth_pairs_of_every_variant(tmp_path, channels, downscale, variant):
    enc, dec = _taesd_like(channels, downscale)
    torch.save(enc, tmp_path / "tae_encoder.pth")
    write(dec, tmp_path / "tae_decoder.safetensors")  # halves in different containers still pair up
    vae = load_vae_file(tmp_path / "tae_encoder.pth")
    assert vae.arch == TAEArch(latent_channels=channels, variant=variant, downscale=downscale)
    assert vae.files == [str(tmp_path / "tae_encoder.pth"), str(tmp_path / "tae_decoder.safetensors")]
    assert len(vae.state_dict) == len(enc) + len(dec)


def test_tae_halves_of_different_scales_are_refused(tmp_path):
    enc, _ = _taesd_like(32, 8)
    _, dec = _taesd_like(32, 32)
    torch.save(enc, tmp_path / "odd_encoder.pth")
    torch.save(dec, tmp_path / "odd_decoder.pth")
    with pytest.raises(BadVaeFile, match="odd_decoder.pth: scales 32x, but .*odd_encoder.pth scales 8x"):
        load_vae_file(tmp_path / "odd_encoder.pth")


def test_older_torch_without_safe_globals_is_stricter_but_still_safe(tmp_path, sd, monkeypatch):
    """A1111 ships torch 2.1, which has weights_only but no safe_globals: plain files still load,
    anything beyond tensors is refused."""
    import numpy as np

    monkeypatch.delattr(torch.serialization, "safe_globals")
    assert_same_tensors(load_vae_file(write(sd, tmp_path / "plain.ckpt")).state_dict, sd)
    torch.save({"state_dict": sd, "score": np.float64(0.5)}, tmp_path / "numpy.ckpt")
    with pytest.raises(UnsafeFile, match="numpy"):
        load_vae_file(tmp_path / "numpy.ckpt")


def test_unreadable_file_is_one_line(tmp_path, sd, monkeypatch):
    from vae_lab.files import readers

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(readers, "sniff", denied)
    _assert_bad(write(sd, tmp_path / "locked.safetensors"), "cannot read (Permission denied)")


def test_expected_shapes_are_read_off_the_modules_and_match_the_real_sd_vae():
    """The SD kl-f8 VAE has 248 tensors and 83.65 M parameters (a real file's counts)."""
    import math

    shapes = expected_shapes(SD_KL)
    assert len(shapes) == 248
    assert round(sum(math.prod(s) for s in shapes.values()) / 1e6, 2) == 83.65
    assert shapes["decoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    encoder_only = expected_shapes(KLArch(has_decoder=False))
    assert encoder_only and all(k.startswith(("encoder.", "quant_conv.")) for k in encoder_only)
