"""Core pieces behind the WebUI adapter that need no WebUI: preferences and the family check."""

from __future__ import annotations

import json

import pytest

from vae_lab.identity import compatibility as compat
from vae_lab.errors import IncompatibleVae
from vae_lab.state.preferences import Preferences, PreferencesError


def test_preferences_roundtrip_and_removal(tmp_path):
    path = tmp_path / "data" / "preferences.json"
    prefs = Preferences(path)
    assert prefs.get("sd15/a.safetensors") is None
    prefs.set("sd15/a.safetensors", "vae-ft-mse.safetensors")
    prefs.set("xl/b.safetensors", "sdxl_vae.safetensors")
    assert Preferences(path).get("sd15/a.safetensors") == "vae-ft-mse.safetensors"
    assert json.loads(path.read_text())["checkpoints"]["xl/b.safetensors"] == "sdxl_vae.safetensors"
    prefs.set("sd15/a.safetensors", None)
    assert prefs.all() == {"xl/b.safetensors": "sdxl_vae.safetensors"}
    assert not list(path.parent.glob(".preferences.json.*"))  # no temp files left behind


def test_corrupt_preferences_file_is_never_fatal_and_not_lost(tmp_path, caplog):
    path = tmp_path / "preferences.json"
    path.write_text("{not json")
    assert Preferences(path).get("x") is None  # model loading goes on
    assert "treating it as empty" in caplog.text
    Preferences(path).set("x", "y.safetensors")
    assert Preferences(path).get("x") == "y.safetensors"
    assert (tmp_path / "preferences.json.corrupt").read_text() == "{not json"  # the old bytes are kept


def test_unwritable_preferences_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "preferences.json").mkdir()  # cannot be replaced by a file
    with pytest.raises(PreferencesError, match="cannot write VAE preferences"):
        Preferences(folder / "preferences.json").set("x", "y.safetensors")
    assert sorted(p.name for p in folder.iterdir()) == ["preferences.json", "preferences.json.lock"]  # no temp left


def test_preferences_with_a_wrong_typed_entry_keep_the_others(tmp_path):
    path = tmp_path / "checkpoint-vaes.json"
    path.write_text(json.dumps({"version": 1, "checkpoints": {"a": 5, "b": ["x"], "c": "c.safetensors"}}))
    assert Preferences(path).all() == {"c": "c.safetensors"}
    Preferences(path).set("d", "d.safetensors")
    assert Preferences(path).all() == {"c": "c.safetensors", "d": "d.safetensors"}


@pytest.mark.parametrize(
    "flags, family",
    [({}, "sd1"), ({"is_sdxl": True}, "sdxl"), ({"is_sd3": True, "latent_channels": 16}, "sd3"),
     ({"latent_channels": 16}, "unknown")],
)
def test_model_family(flags, family):
    assert compat.model_family(**flags) == family


def _check(vae_family, vae_channels, model_family, model_channels, **kw):
    return compat.check("x.safetensors", vae_family=vae_family, vae_channels=vae_channels,
                        model_family=model_family, model_channels=model_channels, **kw)


def test_family_verdicts():
    assert _check("sd1", 4, "sd1", 4).level == compat.OK
    sdxl_on_sd1 = _check("sdxl", 4, "sd1", 4)
    assert sdxl_on_sd1.level == compat.REFUSE and "SDXL VAE" in sdxl_on_sd1.message
    with pytest.raises(IncompatibleVae, match="wrong colours"):
        sdxl_on_sd1.raise_if_refused()
    assert _check("sdxl", 4, "sd1", 4, refuse_wrong_family=False).level == compat.WARN
    assert _check("unknown", 4, "sd1", 4).level == compat.WARN
    assert _check(None, 4, "sdxl", 4).level == compat.WARN
    # the shape always tells, whatever the setting
    ch = _check("unknown", 16, "sd1", 4, refuse_wrong_family=False)
    assert ch.level == compat.REFUSE and "16-channel" in ch.message
    tae = compat.check("taesd_decoder.pth", vae_family="sd1", vae_channels=4, vae_kind="tae",
                       model_family="sd1", model_channels=4)
    assert tae.level == compat.REFUSE
