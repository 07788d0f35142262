"""The shipped catalog: schema, the facts it must carry, and hash look-ups."""

from __future__ import annotations

import copy
import json

import pytest

from vae_lab.identity import catalog
from vae_lab.identity.catalog import CatalogError


def _raw():
    return json.loads(catalog.CATALOG_PATH.read_text(encoding="utf-8"))


def test_shipped_catalog_validates_and_has_unique_ids_and_hashes():
    entries = catalog.load()
    assert len(entries) >= 30
    assert len({e.id for e in entries}) == len(entries)
    shas = [e.sha256 for e in entries if e.sha256]
    assert len(set(shas)) == len(shas)
    # Short hashes must stay unambiguous, or the A1111 "VAE hash" look-up would be useless.
    assert len({s[:10] for s in shas}) == len(shas)


def test_offered_entries_are_verified_downloadable_weight_files():
    offered = catalog.entries()
    assert {"sd-vae-ft-mse", "sd-vae-ft-ema", "sdxl-vae", "sdxl-vae-fp16-fix", "kl-f8-anime2", "flux1-ae"} <= {
        e.id for e in offered
    }
    for e in offered:
        assert e.downloadable and e.sha256
        assert all(u.startswith("https://") for u in e.urls)
    # Withdrawn / license-less files are known but not offered.
    for withdrawn in ("sdxl-vae-1.0", "orangemix-nai"):
        e = catalog.find(withdrawn)
        assert e is not None and not e.offered
        assert e not in offered and e in catalog.entries(offered_only=False)
    # A1111 keys the dropdown by basename: offered files must not collide.
    names = [e.filename for e in offered]
    assert len(set(names)) == len(names)


def test_facts_are_carried_exactly():
    mse = catalog.find("sd-vae-ft-mse")
    assert mse.size == 334_641_190 and mse.sha256_verified
    assert mse.sha256 == "735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75"
    assert "629b3ad3030ce36e15e70c5db7d91df0d60c627f" in mse.urls[0]
    assert mse.quality["coco2017"]["PSNR"] == "24.5 ± 3.7" and mse.quality["laion_aesthetics"]["rFID"] == 1.88
    fp16 = catalog.find("SDXL-VAE-FP16-Fix (madebyollin)")
    assert fp16.id == "sdxl-vae-fp16-fix" and fp16.size == 334_641_162 and fp16.family == "sdxl"
    flux = catalog.find("flux1-ae")
    assert flux.latent_channels == 16 and flux.family == "flux"
    assert catalog.find("sd35-vae").sha256_verified is False


def test_scaling_agrees_with_the_families():
    from vae_lab.identity.families import latent_scaling

    for e in catalog.entries(offered_only=False):
        assert (e.scaling_factor, e.shift_factor) == latent_scaling(e.kind, e.family, e.latent_channels), e.id
    assert (catalog.find("flux1-ae").scaling_factor, catalog.find("flux1-ae").shift_factor) == (0.3611, 0.1159)
    assert catalog.find("sdxl-vae").scaling_factor == 0.13025


def test_known_by_sha256_full_short_and_case():
    e = catalog.known_by_sha256("63AEECB90FF7BC1C115395962D3E803571385B61938377BC7089B36E81E92E2E")
    assert e.id == "sdxl-vae"
    assert catalog.known_by_sha256("735e4c3a44").id == "sd-vae-ft-mse"
    assert catalog.known_by_sha256("F921FB3F29").id == "orangemix-nai"  # not offered, still recognised
    assert catalog.known_by_sha256("0" * 64) is None
    assert catalog.known_by_sha256("735e4c3a4") is None  # 9 hex: not a short hash
    assert catalog.known_by_sha256("vae-ft-mse-840000-ema-pruned.safetensors") is None  # never a name


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["entries"][0].update(sha256="XYZ"), "64 lower-case hex"),
        (lambda d: d["entries"][0].pop("license"), "missing fields"),
        (lambda d: d["entries"][0].update(family="sd4"), "unknown family"),
        (lambda d: d["entries"][0].update(filename="../evil.safetensors"), "plain file name"),
        (lambda d: d["entries"][0].update(urls=["http://example.com/x.safetensors"]), "https://"),
        (lambda d: d["entries"][0].update(sha256=None, sha256_verified=False), "needs a sha256"),
        (lambda d: d["entries"][1].update(id=d["entries"][0]["id"]), "duplicate id"),
        (lambda d: d["entries"][0].update(size=True), "wrong type"),
        (lambda d: d["entries"][0].update(scaling_factor=False), "wrong type"),
        (lambda d: d["entries"][0].update(scaling_factor=0), "positive"),
        (lambda d: d.update(version=2), "version"),
    ],
)
def test_schema_rejects_bad_entries(mutate, message):
    data = copy.deepcopy(_raw())
    mutate(data)
    with pytest.raises(CatalogError, match=message):
        catalog.parse(data)
