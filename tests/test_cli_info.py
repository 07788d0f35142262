"""`python -m vae_lab info` / `convert`: JSON for machines, aligned text for people, exit 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import ROOT
from testkit.factories import TINY_KL, random_kl_state_dict
from vae_files import write

from vae_lab.cli.main import main

REQUIRED = {
    "path", "format", "layout", "kind", "latent_channels", "family", "has_encoder", "has_decoder",
    "file_sha256", "short_hash", "weights_id", "known", "scaling_factor", "shift_factor",
}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sd():
    return random_kl_state_dict(TINY_KL, seed=6)


def _run(capsys, *argv):
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_json(capsys, tmp_path, sd):
    path = write(sd, tmp_path / "v.ckpt")
    code, out, err = _run(capsys, "info", path, "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert REQUIRED <= set(data)
    assert data["path"] == str(path)
    assert (data["format"], data["layout"], data["kind"], data["latent_channels"]) == ("pickle", "ldm", "kl", 4)
    assert (data["has_encoder"], data["has_decoder"], data["known"], data["family"]) == (True, True, None, "unknown")
    assert data["short_hash"] == data["file_sha256"][:10]


def test_info_json_for_the_real_taef2_pair(capsys, taef2_pair):
    code, out, _ = _run(capsys, "info", taef2_pair[0], "--json")
    data = json.loads(out)
    assert code == 0
    assert (data["kind"], data["latent_channels"], data["family"], data["has_encoder"], data["has_decoder"]) == (
        "tae", 32, "flux2", True, True)


def test_info_text_is_aligned_field_lines(capsys, tmp_path, sd):
    code, out, _ = _run(capsys, "info", write(sd, tmp_path / "v.safetensors"))
    assert code == 0
    lines = out.strip().splitlines()
    first = lines[0]
    col = len(first) - len(first[first.index(":") + 1 :].lstrip())  # where the values start
    for line in lines:
        head, value = line[:col], line[col:]
        assert head.rstrip().endswith(":") and head.rstrip().count(":") == 1, line
        assert value.strip() and not value.startswith(" "), line
    fields = {line[:col].rstrip()[:-1]: line[col:] for line in lines}
    assert fields["kind"] == "kl" and fields["latent channels"] == "4"
    assert fields["known as"].startswith("no")
    assert fields["family"].startswith("unknown")


def test_convert_command(capsys, tmp_path, sd):
    src = write(sd, tmp_path / "v.ckpt")
    dst = tmp_path / "v.safetensors"
    code, out, _ = _run(capsys, "convert", src, dst, "--half", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["dst"] == str(dst) and data["dtype"] == "float16"
    code, out, _ = _run(capsys, "convert", src, tmp_path / "w.safetensors")
    assert code == 0 and out.startswith(f"wrote {tmp_path / 'w.safetensors'}:")
    code, out, err = _run(capsys, "convert", src, dst)
    assert code == 2 and out == ""
    assert err == f"error: {dst}: already exists; not overwriting it (choose another name or remove it)\n"


def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path, sd):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    code, out, err = _run(capsys, "info", junk)
    assert (code, out) == (2, "")
    assert err == f"error: {junk}: not a safetensors or PyTorch weights file\n"

    code, _, err = _run(capsys, "info", tmp_path / "missing.safetensors", "--json")
    assert code == 2 and err.startswith(f"error: {tmp_path / 'missing.safetensors'}: ") and err.count("\n") == 1


class _Plants:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_unsafe_pickle_from_the_command_line_runs_nothing(tmp_path):
    target = tmp_path / "planted.txt"
    evil = tmp_path / "evil.ckpt"
    torch.save({"decoder.conv_in.weight": _Plants(str(target))}, evil)
    proc = subprocess.run(
        [sys.executable, "-m", "vae_lab", "info", str(evil)],
        cwd=ROOT, capture_output=True, text=True, env={"VAE_LAB_CACHE_DIR": str(tmp_path / "c"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: {evil}: refused") and proc.stderr.count("\n") == 1
    assert "(it needs io.open)" in proc.stderr
    assert not target.exists()


def test_info_on_several_files_goes_on_past_a_bad_one(capsys, tmp_path, sd, taef2_pair):
    good = write(sd, tmp_path / "v.safetensors")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 broken zip")
    code, out, err = _run(capsys, "info", good, bad, taef2_pair[0], "--json")
    assert code == 2
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objects] == [str(good), str(taef2_pair[0])]
    assert err.startswith(f"error: {bad}: ") and err.count("\n") == 1
    code, out, _ = _run(capsys, "info", good, taef2_pair[0])
    assert code == 0 and out.count("\n\n") == 1 and out.count("file sha256:") == 2
