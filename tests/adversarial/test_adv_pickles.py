"""Hostile pickles: nothing from the file runs, nothing crashes the process, one line of error.

The numpy case segfaulted `info`, `convert` and `decode` before numpy globals became inert
stand-ins (a forged dtype state makes raw bytes into object pointers).
"""

from __future__ import annotations

import pytest

import hostile as H


@pytest.fixture
def latents(tmp_path):
    """A valid 4-channel latent file, so that `decode` gets as far as reading the VAE."""
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "lat.safetensors"
    save_file({"latent_tensor": torch.zeros(1, 4, 8, 8)}, str(path), metadata={"format": "vae_lab.latent"})
    return path

COMMANDS = {
    "info": lambda vae, tmp, lat: ["info", vae],
    "convert": lambda vae, tmp, lat: ["convert", vae, tmp / "out.safetensors"],
    "decode": lambda vae, tmp, lat: ["decode", "--latents", lat, "--vae", vae, "--out", tmp / "out.png"],
}


def _attack(tmp_path, latents, path, command, *words):
    before = H.files_under(tmp_path)
    proc = H.run_cli(*COMMANDS[command](path, tmp_path, latents), cwd=tmp_path)
    msg = H.assert_refused(proc, str(path), *words)
    assert H.files_under(tmp_path) == before, "the run wrote a file"
    return msg


@pytest.mark.parametrize("command", COMMANDS)
def test_numpy_with_forged_object_pointers_does_not_crash(tmp_path, latents, command):
    path = H.write_pt(tmp_path / "forged.pt", H.numpy_forged_pointers())
    assert path.stat().st_size < 1024
    _attack(tmp_path, latents, path, command)


def test_numpy_in_a_legacy_pickle_does_not_crash(tmp_path, latents):
    path = H.write_legacy_pt(tmp_path / "forged.ckpt", H.numpy_forged_pointers(), [])
    _attack(tmp_path, latents, path, "info")


def test_numpy_values_next_to_weights_become_nothing(tmp_path):
    """A checkpoint with a numpy score next to its weights still loads (the score is dropped)."""
    import numpy as np
    import torch

    if not hasattr(torch.serialization, "safe_globals"):
        pytest.skip("torch < 2.5 has no safe_globals: such files are refused there (safe, stricter)")
    from factories import TINY_KL, random_kl_state_dict

    from vae_lab.files.loading import load_vae_file

    sd = random_kl_state_dict(TINY_KL)
    path = tmp_path / "with_numpy.ckpt"
    torch.save({"state_dict": sd, "best_score": np.float64(0.25), "hist": np.arange(3)}, path)
    vae = load_vae_file(path)
    assert set(vae.state_dict) == set(sd)


def test_global_os_system_is_not_run(tmp_path, latents):
    marker = tmp_path / "pwned"
    pkl = H.PROTO2 + H.call("os", "system", H.s(f"touch {marker}")) + H.STOP
    path = H.write_pt(tmp_path / "rce.pt", pkl)
    _attack(tmp_path, latents, path, "info", "refused", "nothing in it was run")
    assert not marker.exists()


def test_builtins_exec_through_reduce_is_not_run(tmp_path, latents):
    marker = tmp_path / "pwned"
    pkl = H.PROTO2 + H.call("builtins", "exec", H.s(f"open({str(marker)!r}, 'w')")) + H.STOP
    path = H.write_legacy_pt(tmp_path / "rce.ckpt", pkl, [])
    _attack(tmp_path, latents, path, "info", "refused")
    assert not marker.exists()


@pytest.mark.parametrize("case", ["build_on_dict", "build_on_tensor", "build_on_stand_in"])
def test_build_on_odd_objects(tmp_path, latents, case):
    if case == "build_on_dict":
        body = H.EMPTY_DICT + H.EMPTY_DICT + H.s("__class__") + H.i(1) + H.SETITEM + H.BUILD
    elif case == "build_on_tensor":  # BUILD calls Tensor.set_(*state): aim it past the storage
        body = H.tensor("0", 4, (4,), (1,)) + H.tup(H.i(0), H.i(10**9) + H.TUPLE1, H.i(1) + H.TUPLE1) + H.BUILD
    else:  # the Lightning callback stand-in, given a state that would be code elsewhere
        body = (H.call("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
                + H.EMPTY_DICT + H.s("__reduce__") + H.call("os", "getcwd") + H.SETITEM + H.BUILD)
    pkl = H.PROTO2 + H.EMPTY_DICT + H.s("x") + body + H.SETITEM + H.STOP
    path = H.write_pt(tmp_path / f"{case}.pt", pkl, {"0": b"\0" * 16})
    _attack(tmp_path, latents, path, "info")


def test_deep_nesting(tmp_path, latents):
    depth = 200_000  # far past the interpreter's recursion limit
    pkl = H.PROTO2 + H.EMPTY_LIST * depth + H.APPEND * (depth - 1) + H.STOP
    path = H.write_pt(tmp_path / "deep.pt", pkl)
    _attack(tmp_path, latents, path, "info", "not a VAE")


def test_dict_that_contains_itself(tmp_path, latents):
    pkl = H.PROTO2 + H.EMPTY_DICT + b"q\x00" + H.s("state_dict") + b"h\x00" + H.SETITEM + H.STOP
    path = H.write_pt(tmp_path / "loop.pt", pkl)
    _attack(tmp_path, latents, path, "info", "not a VAE")


@pytest.mark.parametrize("op", ["huge_put", "get_unset", "huge_string"])
def test_huge_memo_indices_and_lengths(tmp_path, latents, op):
    if op == "huge_put":  # LONG_BINPUT 2**32-1, then fetch it back
        body = H.EMPTY_DICT + b"r\xff\xff\xff\xff" + H.s("k") + b"j\xff\xff\xff\xff" + H.SETITEM
    elif op == "get_unset":  # LONG_BINGET of an index never stored
        body = b"j\xfe\xff\xff\x7f"
    else:  # BINUNICODE claiming 4 GB in a 100-byte pickle
        body = b"X\xff\xff\xff\xff" + b"abc"
    path = H.write_pt(tmp_path / f"{op}.pt", H.PROTO2 + body + H.STOP)
    _attack(tmp_path, latents, path, "info")
