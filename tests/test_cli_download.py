"""`python -m vae_lab catalog` and `download` as a user runs them: exit codes, one-line errors, JSON."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from testkit.httpserver import FileServer
from vae_lab.identity import catalog
from vae_lab.identity.catalog import CatalogEntry
from vae_lab.cli.main import main


@pytest.fixture(scope="module")
def blob() -> bytes:
    """A real tiny kl-f8 VAE (random weights, LDM layout) as safetensors bytes."""
    from safetensors.torch import save

    from testkit.factories import TINY_KL, random_kl_state_dict

    return save(random_kl_state_dict(TINY_KL, seed=5))


@pytest.fixture(autouse=True)
def private_hash_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path_factory.mktemp("hash-cache")))


def fake_entry(url: str, data: bytes, **kw) -> CatalogEntry:
    base = dict(id="test-vae", name="Test VAE", filename="test-vae.safetensors", urls=(url,), size=len(data),
                sha256=hashlib.sha256(data).hexdigest(), sha256_verified=True, family="sd1", latent_channels=4,
                scaling_factor=0.18215, shift_factor=0.0, kind="kl", format="safetensors", license="MIT",
                description="a test entry", offered=True, notes="", quality=None)
    base.update(kw)
    return CatalogEntry(**base)


@pytest.fixture
def with_entries(monkeypatch):
    """Replace the shipped catalog with the given entries for one test."""

    def use(*entries):
        monkeypatch.setattr(catalog, "_all", lambda: tuple(entries))
        catalog._by_sha.cache_clear()

    yield use
    catalog._by_sha.cache_clear()


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_download_url_json(tmp_path, capsys, blob):
    with FileServer() as srv:
        srv.add_file("/m/weights.safetensors", blob)
        code, out, err = run_cli(capsys, "download", srv.url("/m/weights.safetensors"), "--dir", str(tmp_path),
                                 "--sha256", hashlib.sha256(blob).hexdigest(), "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["path"] == str(tmp_path / "weights.safetensors") and res["verified"] is True
    assert res["sha256"] == hashlib.sha256(blob).hexdigest() and res["short_hash"] == res["sha256"][:10]
    assert os.listdir(tmp_path) == ["weights.safetensors"]
    assert res["info"]["kind"] == "kl" and res["info"]["latent_channels"] == 4 and res["family"] == "unknown"


def test_download_by_catalog_name_then_catalog_shows_it_present(tmp_path, capsys, blob, with_entries):
    with FileServer() as srv:
        srv.add_file("/e.safetensors", blob)
        with_entries(fake_entry(srv.url("/e.safetensors"), blob))
        code, out, err = run_cli(capsys, "download", "Test VAE", "--dir", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "downloaded" in out and "verified (catalog)" in out and "known: Test VAE [test-vae]" in out
    assert "identified: kl, 4 latent channels" in out
    # Renamed locally: presence is by hash, not by name.
    os.rename(tmp_path / "test-vae.safetensors", tmp_path / "renamed.safetensors")
    (tmp_path / "other.safetensors").write_bytes(blob + b"x")
    code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json")
    listing = json.loads(out)
    assert listing["entries"][0]["present"] == [str(tmp_path / "renamed.safetensors")]
    assert listing["unknown_files"] == [str(tmp_path / "other.safetensors")]
    code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path))
    assert code == 0 and "✔  test-vae" in out and "renamed.safetensors" in out


def test_catalog_hides_unoffered_entries_unless_all(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json")
    ids = {e["id"] for e in json.loads(out)["entries"]}
    assert "sdxl-vae-fp16-fix" in ids and "orangemix-nai" not in ids
    code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json", "--all")
    assert "orangemix-nai" in {e["id"] for e in json.loads(out)["entries"]}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["download", "no-such-vae"], "neither a catalog name"),
        (["download", "orangemix-nai"], "not offered for download"),
        (["download", "ftp://127.0.0.1/x.safetensors"], "only http:// and https://"),
        (["download", "https://127.0.0.1:1/x.safetensors", "--sha256", "xyz"], "64 hex"),
        (["download", "https://127.0.0.1:1/x.safetensors", "--filename", "../x.safetensors"], "leave the target"),
    ],
)
def test_refusals_exit_2_with_one_line(tmp_path, capsys, argv, message):
    code, out, err = run_cli(capsys, *argv, "--dir", str(tmp_path / "VAE"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not (tmp_path / "VAE").exists() or os.listdir(tmp_path / "VAE") == []


def test_http_failure_exits_2(tmp_path, capsys):
    with FileServer() as srv:
        code, _, err = run_cli(capsys, "download", srv.url("/gone.safetensors"), "--dir", str(tmp_path))
    assert code == 2 and "HTTP 404" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_catalog_listing_hashes_each_file_once(tmp_path, capsys, blob, monkeypatch):
    from vae_lab.identity import hashing

    (tmp_path / "a.safetensors").write_bytes(blob)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.ckpt").write_bytes(blob + b"!")
    (tmp_path / ".c.safetensors.vaelab-part").write_bytes(blob)  # a partial: never listed or hashed
    calls = []
    real = hashing.sha256_file
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or real(p))
    for _ in range(2):
        code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json")
        assert code == 0
        assert sorted(json.loads(out)["unknown_files"]) == [str(tmp_path / "a.safetensors"),
                                                           str(tmp_path / "sub" / "b.ckpt")]
    assert sorted(calls) == [str(tmp_path / "a.safetensors"), str(tmp_path / "sub" / "b.ckpt")]


def test_listing_keeps_what_identify_cached(tmp_path, capsys, blob):
    """The catalog shares identify's cache file; it must not write back a stale copy of it."""
    from vae_lab.identity import hashing, identify

    (tmp_path / "a.safetensors").write_bytes(blob)
    catalog.presence(tmp_path)
    info = identify.inspect(str(tmp_path / "a.safetensors"))  # caches a's weights id
    (tmp_path / "b.safetensors").write_bytes(blob + b"!")
    code, _, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json")  # caches b's SHA-256
    assert code == 0
    assert hashing.HashCache().get("weights_id", [str(tmp_path / "a.safetensors")]) == info.weights_id


def test_an_unreadable_file_does_not_break_the_listing(tmp_path, capsys, blob, monkeypatch):
    from vae_lab.identity import hashing
    from vae_lab.errors import BadVaeFile

    (tmp_path / "a.safetensors").write_bytes(blob)
    (tmp_path / "locked.safetensors").write_bytes(blob + b"!")
    (tmp_path / "gone.safetensors").symlink_to(tmp_path / "nowhere.safetensors")
    real = hashing.sha256_file

    def sha256_file(path):  # what identify raises for a file without read permission
        if path.endswith("locked.safetensors"):
            raise BadVaeFile(f"{path}: cannot read (Permission denied)")
        return real(path)

    monkeypatch.setattr(hashing, "sha256_file", sha256_file)
    code, out, err = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json")
    assert code == 0, err
    assert json.loads(out)["unknown_files"] == [str(tmp_path / "a.safetensors")]


def test_default_folder_comes_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAE_LAB_VAE_DIR", str(tmp_path / "envdir"))
    code, out, _ = run_cli(capsys, "catalog", "--json")
    assert code == 0 and json.loads(out)["dir"] == str(tmp_path / "envdir")
    assert json.loads(out)["dir_exists"] is False


def test_catalog_mirrors_are_tried_in_order(tmp_path, blob, with_entries):
    from vae_lab.download.transfer import download
    from vae_lab.download.tokens import TokenPolicy

    with FileServer() as srv:
        srv.add_file("/mirror/e.safetensors", blob)
        entry = fake_entry(srv.url("/gone/e.safetensors"), blob)
        with_entries(entry.__class__(**{**entry.__dict__, "urls": (srv.url("/gone/e.safetensors"),
                                                                    srv.url("/mirror/e.safetensors"))}))
        res = download("test-vae", tmp_path, tokens=TokenPolicy(), console=False, identify=False)
        assert res.url == srv.url("/mirror/e.safetensors") and res.verified
        assert [r.path for r in srv.log] == ["/gone/e.safetensors", "/mirror/e.safetensors"]
        with_entries(entry.__class__(**{**entry.__dict__, "urls": (srv.url("/a.safetensors"),
                                                                    srv.url("/b.safetensors"))}))
        with pytest.raises(Exception, match=r"HTTP 404.*and 1 mirror\(s\) failed too"):
            download("test-vae", tmp_path / "x", tokens=TokenPolicy(), console=False, identify=False)


def test_a_recognised_file_that_is_not_offered_is_still_named(tmp_path, capsys, blob, with_entries):
    (tmp_path / "anything.vae.pt").write_bytes(blob)
    with_entries(fake_entry("https://example.invalid/x.safetensors", blob, id="withdrawn-vae", offered=False))
    code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path))
    assert code == 0 and "anything.vae.pt: recognised as Test VAE [withdrawn-vae], not offered" in out
    code, out, _ = run_cli(capsys, "catalog", "--dir", str(tmp_path), "--json")
    listing = json.loads(out)
    assert listing["recognised_not_listed"] == {"withdrawn-vae": [str(tmp_path / "anything.vae.pt")]}
    assert listing["unknown_files"] == [] and listing["entries"] == []
