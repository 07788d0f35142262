"""A fresh fake Forge per test: the A1111 stand-in with tests/forge_stub layered on top.

    from forge_env import forge  # noqa: F401  (the fixture)

    def test_something(forge):
        forge.add_checkpoint("sd15.safetensors")
        forge.add_vae("vae-a.safetensors", seed=1)
        forge.link_repo()
        forge.start()                         # startup; then the model is built, as a first generation would
        forge.choose_modules(["vae-a.safetensors"])   # the top bar's "VAE / Text Encoder"
        res = forge.txt2img("a cat", seed=1)  # forge_model_reload() rebuilds the model with vae-a

`FakeForge` is `webui_env.FakeWebUI` (files, config, generation, teardown) with
`tests/forge_stub` before `tests/webui_stub` on sys.path: `modules` is a namespace package,
so each `modules.<name>` comes from the Forge stand-in where Forge changed that module and
from the A1111 one where it did not (see tests/forge_stub/README.md). Runs only on Forge's
Gradio 4 stack (tests using it are marked `forge`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from webui_env import STUB_ROOT, FakeWebUI

FORGE_STUB = Path(__file__).resolve().parent / "forge_stub"


class FakeForge(FakeWebUI):
    stub_paths = (FORGE_STUB, STUB_ROOT)

    def start(self, args=(), *, half: bool = False, ui: bool = True, api: bool = False, load_model: bool = True):
        """Forge's startup only *selects* the checkpoint; with `load_model` the model is then
        built by `forge_model_reload()`, as the first generation would build it."""
        super().start(["--always-cpu", *args], half=half, ui=ui, api=api, load_model=True)
        if load_model:
            from modules import sd_models
            sd_models.forge_model_reload()
        return self

    def choose_modules(self, names: list[str]) -> bool:
        """The top bar's "VAE / Text Encoder" dropdown changed to `names` (basenames)."""
        from modules_forge import main_entry
        main_entry.refresh_models()
        return main_entry.modules_change(list(names))

    @property
    def main_entry(self):
        from modules_forge import main_entry
        return main_entry

    @property
    def backend_vae(self):
        """The loaded model's VAE object (`sd_model.forge_objects.vae`)."""
        return self.model.forge_objects.vae


@pytest.fixture
def forge(tmp_path, monkeypatch):
    """A fresh, not yet started fake Forge in tmp_path (see FakeForge)."""
    pytest.importorskip("gradio", minversion="4")
    ui = FakeForge(tmp_path / "forge", monkeypatch)
    try:
        yield ui
    finally:
        ui.close()


@pytest.fixture
def started_forge(forge):
    """A started fake Forge with one SD1 checkpoint and two VAEs (vae-a, vae-b), model built."""
    forge.add_checkpoint("sd15.safetensors", kind="sd1", vae_seed=0)
    forge.add_vae("vae-a.safetensors", seed=1)
    forge.add_vae("vae-b.safetensors", seed=2)
    forge.start()
    return forge
