"""Lying tensors: a file may not make tensors out of bytes it does not hold.

Before: stride-0 views made a 20 KB `.pt` into a complete VAE (`convert` wrote it out in
full), a storage could claim gigabytes behind a 16-byte record (torch 2.1 allocates it), a
deflated record inflated in memory, and a legacy file's storage count was allocated as is.
"""

from __future__ import annotations

import pytest

import hostile as H

CONVERT = lambda vae, tmp: ["convert", vae, tmp / "out.safetensors"]  # noqa: E731


def _refused(tmp_path, args, *words):
    before = H.files_under(tmp_path)
    msg = H.assert_refused(H.run_cli(*args, cwd=tmp_path), *words)
    assert H.files_under(tmp_path) == before, "the run wrote a file"
    return msg


@pytest.mark.parametrize("command", ["info", "convert"])
def test_stride0_views_are_refused(tmp_path, command):
    path = H.stride0_vae(tmp_path / "stride0.pt")
    assert path.stat().st_size < 64 * 1024
    args = ["info", path] if command == "info" else CONVERT(path, tmp_path)
    _refused(tmp_path, args, str(path), "stride-0")


def test_views_sharing_one_storage_are_refused(tmp_path):
    path = H.shared_storage_vae(tmp_path / "shared.pt")
    _refused(tmp_path, CONVERT(path, tmp_path), str(path), "file has")


def test_storage_larger_than_its_record(tmp_path):
    # 4 GB claimed behind 16 bytes: torch 2.1 allocates the 4 GB before reading the record.
    pkl = H.state_dict({"encoder.conv_in.weight": H.tensor("0", 1 << 30, (1 << 30,), (1,))})
    path = H.write_pt(tmp_path / "claim.pt", pkl, {"0": b"\0" * 16})
    _refused(tmp_path, ["info", path], "4,294,967,296 bytes", "record holds 16")


def test_legacy_storage_count_larger_than_the_file(tmp_path):
    pkl = H.state_dict({"encoder.conv_in.weight": H.tensor("0", 1 << 31, (4,), (1,), legacy=True)})
    path = H.write_legacy_pt(tmp_path / "claim.ckpt", pkl, [("0", 1 << 31, b"\0" * 16)])
    _refused(tmp_path, ["info", path], "8,589,934,592 bytes")


def test_legacy_storage_smaller_than_the_pickle_claims(tmp_path):
    pkl = H.state_dict({"encoder.conv_in.weight": H.tensor("0", 1 << 20, (1 << 20,), (1,), legacy=True)})
    path = H.write_legacy_pt(tmp_path / "claim.ckpt", pkl, [("0", 4, b"\0" * 16)])
    _refused(tmp_path, ["info", path], "claims 4,194,304 bytes")


def test_zip_bomb_is_refused_before_inflating(tmp_path):
    path = H.deflated_bomb(tmp_path / "bomb.pt", 1 << 30)  # 1 GB of zeros in ~1 MB
    assert path.stat().st_size < 4 << 20
    _refused(tmp_path, ["info", path], "compressed")


def test_latent_pt_with_stride0_view_is_refused(tmp_path):
    shape = (1, 4, 4096, 4096)  # 268 MB once made contiguous, 4 bytes in the file
    path = H.write_pt(tmp_path / "lat.pt", H.PROTO2 + H.tensor("0", 1, shape, (0, 0, 0, 0)) + H.STOP, {"0": b"\0" * 4})
    vae = H.stride0_vae(tmp_path / "vae.pt")  # never reached: the latents are read first or refused alike
    _refused(tmp_path, ["decode", "--latents", path, "--vae", vae, "--out", tmp_path / "o.png"], "refused")


# safetensors refuses these itself (0.4.2, A1111's pin, and 0.8); kept so that stays true.
SAFETENSORS_LIES = {
    "overlapping": ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                     "b": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
    "past_the_end": ({"a": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4 * 10**9]}}, b"\0" * 16),
    "shape_bigger_than_range": ({"a": {"dtype": "F32", "shape": [100], "data_offsets": [0, 16]}}, b"\0" * 16),
    "shape_overflow": ({"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}, b"\0" * 16),
    "gap": ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16),
}


@pytest.mark.parametrize("case", SAFETENSORS_LIES)
def test_lying_safetensors_headers(tmp_path, case):
    header, data = SAFETENSORS_LIES[case]
    path = H.write_safetensors(tmp_path / f"{case}.safetensors", header, data)
    _refused(tmp_path, ["info", path], str(path))
