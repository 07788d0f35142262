"""State files under attack: corrupt content of every wrong type, concurrent writers, failing
replaces, permissions. State files may cost time when damaged, never a command."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from factories import TINY_KL, random_kl_state_dict
from vae_files import write

from vae_lab.identity import catalog, identify
from vae_lab.identity.identify import HashCache, inspect
from vae_lab.runtime import precision as prec
from vae_lab.state.preferences import Preferences

ROOT = Path(__file__).resolve().parents[2]

# Every shape a hand-edit, an old version or a truncation can leave.
WRONG_DOCUMENTS = [
    b"", b"{", b"\x00\xff\xfe binary", b"null", b"5", b'"text"', b"[]", b"[1, 2]", b"true",
    b"[" * 100_000,  # deep nesting: json's RecursionError
]
WRONG_HASH_CACHES = [
    {"version": 1, "entries": []}, {"version": 1, "entries": "x"}, {"version": 1, "entries": 5},
    {"version": 1, "entries": None}, {"version": 1, "entries": {"k": 5}}, {"version": 1, "entries": {"k": [1]}},
    {"version": 1, "entries": {"k": {"sha256": 5, "weights_id": ["x"]}}}, {"version": "1"}, {"version": 1},
]
WRONG_PRECISION_MEMORIES = [
    {"wid": 5}, {"wid": "fp16"}, {"wid": [1]}, {"wid": {"decode": 5}}, {"wid": {"decode": "fp16"}},
    {"wid": {"decode": [None, 3, "fp99", {"a": 1}]}}, {"wid": {"decode": None, "decode_works": 7}},
]
WRONG_PREFERENCES = [
    {"checkpoints": []}, {"checkpoints": "x"}, {"version": 1}, {"checkpoints": None},
]


def _docs(extra):
    return WRONG_DOCUMENTS + [json.dumps(d).encode() for d in extra]


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory):
    return write(random_kl_state_dict(TINY_KL, seed=77), tmp_path_factory.mktemp("v") / "v.safetensors")


@pytest.mark.parametrize("content", _docs(WRONG_HASH_CACHES))
def test_a_hash_cache_of_any_wrong_shape_never_breaks_identify(tmp_path, vae_file, content):
    (tmp_path / HashCache.FILE).write_bytes(content)
    info = inspect(vae_file, cache=HashCache(str(tmp_path)))
    assert info.file_sha256 == identify.sha256_file(str(vae_file))
    # ... and the next run reads what this one wrote.
    again = HashCache(str(tmp_path))
    assert again.get("sha256", [str(vae_file)]) == info.file_sha256
    assert again.get("weights_id", [str(vae_file)]) == info.weights_id


def test_a_hash_cache_with_wrong_entries_breaks_no_cli_command(tmp_path, vae_file):
    (tmp_path / HashCache.FILE).write_text(json.dumps({"version": 1, "entries": []}))
    env = {**os.environ, "VAE_LAB_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "vae_lab", "info", str(vae_file)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content", _docs(WRONG_PRECISION_MEMORIES))
def test_a_precision_memory_of_any_wrong_shape_never_breaks_decode(tmp_path, content):
    from vae_lab.runtime.engine import Vae

    (tmp_path / prec.STATE_FILE).write_bytes(content)
    vae = Vae.from_state_dict(random_kl_state_dict(TINY_KL, seed=1), arch=TINY_KL, family="sd1", weights_id="wid",
                              device="cpu", state_dir=tmp_path)
    out = vae.decode(torch.zeros(1, 4, 4, 4), precision="fp32", tile=False)
    assert out.images.shape[-2:] == (32, 32)
    mem = prec.PrecisionMemory(tmp_path)
    assert all(p in prec.PRECISIONS for p in mem.failed("wid", "decode"))
    mem.record("wid", "decode", ["fp16"], "fp32")
    assert prec.PrecisionMemory(tmp_path).failed("wid", "decode") == ["fp16"]


@pytest.mark.parametrize("content", _docs(WRONG_PREFERENCES))
def test_preferences_of_any_wrong_shape_are_read_as_none_and_kept_aside(tmp_path, content):
    path = tmp_path / "checkpoint-vaes.json"
    path.write_bytes(content)
    assert Preferences(path).get("sd15.safetensors") is None
    Preferences(path).set("sd15.safetensors", "a.safetensors")
    assert Preferences(path).all() == {"sd15.safetensors": "a.safetensors"}
    assert (tmp_path / "checkpoint-vaes.json.corrupt").read_bytes() == content


# --------------------------------------------------------------------------- concurrent writers

WRITERS, PER_WRITER = 4, 15


def _write_many(kind: str, folder: str, files: list[str], me: int) -> None:
    for i in range(PER_WRITER):
        if kind == "hashes":
            HashCache(folder).put("sha256", [files[me * PER_WRITER + i]], f"{me:02d}{i:062d}")
        elif kind == "precision":
            prec.PrecisionMemory(folder).record(f"wid-{me}-{i}", "decode", ["fp16"], "fp32")
        else:
            Preferences(os.path.join(folder, "prefs.json")).set(f"ckpt-{me}-{i}", "vae.safetensors")


@pytest.mark.parametrize("kind", ["hashes", "precision", "preferences"])
def test_four_processes_writing_distinct_entries_lose_none(tmp_path, kind):
    files = []
    for n in range(WRITERS * PER_WRITER):
        f = tmp_path / "files" / f"f{n}"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x")
        files.append(str(f))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(kind, str(tmp_path), files, me)) for me in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    if kind == "hashes":
        cache = HashCache(str(tmp_path))
        found = [cache.get("sha256", [f]) for f in files]
        assert all(found), f"{found.count(None)} of {len(files)} entries lost"
    elif kind == "precision":
        mem = prec.PrecisionMemory(tmp_path)
        lost = [(m, i) for m in range(WRITERS) for i in range(PER_WRITER) if mem.failed(f"wid-{m}-{i}", "decode") != ["fp16"]]
        assert not lost, f"{len(lost)} entries lost"
    else:
        prefs = Preferences(tmp_path / "prefs.json").all()
        assert len(prefs) == WRITERS * PER_WRITER
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temp files left


# --------------------------------------------------------------------------- failing replace, permissions


def test_a_failing_replace_leaves_no_temp_file_and_the_old_content(tmp_path, monkeypatch, vae_file):
    cache = HashCache(str(tmp_path))
    cache.put("sha256", [str(vae_file)], "a" * 64)
    before = (tmp_path / HashCache.FILE).read_bytes()

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", refuse)
    HashCache(str(tmp_path)).put("weights_id", [str(vae_file)], "b" * 64)  # the cache only saves time: no error
    prec.PrecisionMemory(tmp_path).record("wid", "decode", ["fp16"], "fp32")
    monkeypatch.undo()
    assert (tmp_path / HashCache.FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [HashCache.FILE]


def test_state_and_converted_files_get_the_users_umask_not_0600(tmp_path, vae_file):
    from vae_lab.files.convert import convert

    old = os.umask(0o022)
    try:
        convert(vae_file, tmp_path / "out.safetensors", cache=None)
        prec.PrecisionMemory(tmp_path).record("wid", "decode", ["fp16"], "fp32")
        Preferences(tmp_path / "p.json").set("a", "b.safetensors")
        HashCache(str(tmp_path)).put("sha256", [str(vae_file)], "c" * 64)
    finally:
        os.umask(old)
    for name in ("out.safetensors", prec.STATE_FILE, "p.json", HashCache.FILE):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


# --------------------------------------------------------------------------- identity comes from the catalog


def test_a_file_cannot_name_itself_after_a_catalog_vae(tmp_path):
    """Metadata claiming to be `convert`'s copy of the SDXL VAE, next to its own (matching) weights id."""
    sd = random_kl_state_dict(TINY_KL, seed=78)
    sdxl = catalog.find("sdxl-vae")
    forged = write(sd, tmp_path / "totally-sdxl.safetensors", **{
        "vae_lab.source_sha256": sdxl.sha256, "vae_lab.weights_id": identify.weights_id(sd),
        "vae_lab.known": sdxl.name, "vae_lab.family": "sdxl",
    })
    for cache in (None, HashCache(str(tmp_path / "cache"))):
        info = inspect(forged, cache=cache)
        assert (info.known, info.known_id, info.known_via, info.family) == (None, None, None, "unknown")


def test_a_latent_file_whose_replace_fails_leaves_no_temp(tmp_path, monkeypatch):
    from vae_lab.files.latents import save_latents

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        save_latents(tmp_path / "l.safetensors", torch.zeros(1, 4, 2, 2))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []
