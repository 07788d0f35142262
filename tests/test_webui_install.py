"""The extension's WebUI conventions: install.py, metadata.ini, scripts/, the index entry."""

from __future__ import annotations

import json
import runpy
import sys
import types
from pathlib import Path

from webui_env import webui  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
INDEX_TAGS = {"script", "localization", "tab", "dropdown", "ads", "training", "models", "UI related",
              "prompting", "editing", "manipulations", "online", "animation", "query", "science", "extras"}


def test_install_py_installs_nothing_the_webui_has_and_is_idempotent(webui):
    ext = webui.link_repo()
    webui.start(ui=False, load_model=False)
    for _ in range(2):  # every launch runs it: twice must be as cheap and quiet as once
        out = webui.launch.run_extension_installer(str(ext))
        assert out is not None  # it ran and did not fail
    assert webui.pip_calls() == []


def test_install_py_installs_only_what_is_missing(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(
        is_installed=lambda name: name != "tqdm",
        run_pip=lambda command, desc=None: calls.append((command, desc)),
    )
    monkeypatch.setitem(sys.modules, "launch", fake)
    runpy.run_path(str(ROOT / "install.py"), run_name="__main__")
    assert calls == [("install tqdm", "tqdm for VAE Lab")]


def test_extension_is_listed_and_its_script_loaded(webui):
    webui.add_checkpoint("sd15.safetensors")
    webui.link_repo()
    webui.start(ui=False)
    names = [e.name for e in webui.extensions.active()]
    assert "vae-lab" in names
    loaded = [d for d in webui.scripts.scripts_data if d.path.endswith("vae_lab.py")]
    assert [d.script_class.__name__ for d in loaded] == ["VaeLabScript"]  # no stray base class
    assert loaded[0].basedir == str(webui.extensions_dir / "vae-lab")
    cbs = {k for k, v in webui.script_callbacks.callback_map.items() if any(c.name.startswith("vae-lab/vae_lab.py/") for c in v)}
    assert cbs == {"callbacks_ui_settings", "callbacks_ui_tabs", "callbacks_model_loaded",
                   "callbacks_script_unloaded"}


def test_extension_index_entry():
    entry = json.loads((ROOT / "docs" / "extension-index.json").read_text())
    assert set(entry) >= {"name", "url", "description", "tags"}
    assert entry["url"].endswith(".git")
    assert set(entry["tags"]) <= INDEX_TAGS and "installed" not in entry["tags"]
    assert "online" not in entry["tags"]  # only one-time downloads of assets the user asks for
