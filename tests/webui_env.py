"""A fresh fake A1111 WebUI per test, built on the stand-in `modules` in tests/webui_stub.

Use it from a test module with

    from webui_env import webui  # noqa: F401  (the fixture)

    def test_something(webui):
        webui.add_checkpoint("sd15.safetensors")           # models/Stable-diffusion
        webui.add_vae("vae-ft-mse.safetensors", seed=3)     # models/VAE
        webui.link_repo()                                  # this repository as extensions/vae-lab
        webui.start()                                      # imports + initialize + UI (+ model load)
        res = webui.txt2img("a cat", seed=1)               # through queue_lock, with closing(p)
        assert res.processed.sd_vae_name is None
        webui.shared.opts.sd_vae                           # any stand-in module: webui.<name>

Everything lives in a tmp dir (`webui.root` is `--data-dir`). `start(args=[...])` takes WebUI
command-line flags (the default adds `--no-half`, as CPU users run it; pass `half=True` to get
the real default fp16 VAE). On teardown every `modules.*` module (and any module that holds
references into them, e.g. `vae_lab.webui`) is purged from sys.modules, the Gradio patch is
undone and sys.path/env are restored, so the next test starts from nothing — like a restart.
A stand-in loaded before `start()` (a session-wide harness) is put back afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
STUB_ROOT = Path(__file__).resolve().parent / "webui_stub"


def _save_state_dict(path: Path, state_dict: dict, metadata: dict | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        import safetensors.torch
        safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path), metadata=metadata)
    else:
        torch.save({"state_dict": state_dict} if path.suffix == ".ckpt" else state_dict, str(path))
    return path


def vae_state_dict(seed: int = 1, kind: str = "sd1", dtype=torch.float32) -> dict:
    """Random kl-f8 weights in the LDM layout that fit the stand-in's model of `kind` (a fresh dict)."""
    return dict(_cached_vae_state_dict(seed, kind, dtype))


@functools.lru_cache(maxsize=32)
def _cached_vae_state_dict(seed, kind, dtype):
    from testkit.factories import random_kl_state_dict
    import stub_ldm
    return random_kl_state_dict(stub_ldm.vae_arch_for(kind), seed=seed, dtype=dtype)


def fp16_overflowing_vae_state_dict(seed: int = 1) -> dict:
    """A VAE that decodes fine in fp32 but whose activations overflow fp16 (inf -> NaN in the next
    GroupNorm), like SDXL's original VAE; its weights themselves stay representable in fp16."""
    sd = vae_state_dict(seed)
    key = "decoder.up.0.block.1.conv2.weight"
    sd[key] = sd[key] * 3e4
    return sd


@dataclass
class GenResult:
    images: list
    info_js: str
    html: str
    processed: object  # modules.processing.Processed (None if the generation raised)

    @property
    def info(self) -> dict:
        return json.loads(self.info_js) if self.info_js else {}


class FakeWebUI:
    """One fake WebUI installation in a tmp dir; see the module docstring."""

    stub_paths: tuple = (STUB_ROOT,)  # put first on sys.path (a subclass may layer another stand-in on top)

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = root
        self.models_dir = root / "models"
        self.sd_dir = self.models_dir / "Stable-diffusion"
        self.vae_dir = self.models_dir / "VAE"
        self.extensions_dir = root / "extensions"
        self.config_path = root / "config.json"
        self.pip_log = root / "pip-calls.jsonl"
        for d in (self.sd_dir, self.vae_dir, self.extensions_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._mp = monkeypatch
        stubs = [str(p) for p in self.stub_paths]
        monkeypatch.setattr(sys, "path", stubs + [p for p in sys.path if p not in stubs])
        self.started = False
        self._saved_modules: dict = {}  # another stand-in (e.g. a session-wide one) to put back at close()
        self.demo = self.app = self.api_obj = None

    # ---------------------------------------------------------------- files
    def add_checkpoint(self, name: str = "sd15.safetensors", kind: str = "sd1", vae_seed: int = 0, *,
                       vae_state_dict_: dict | None = None, folder: Path | None = None, metadata: dict | None = None) -> Path:
        """A checkpoint with a baked VAE (`first_stage_model.*`, random weights from `vae_seed`) and fake unet keys."""
        import stub_ldm
        sd = stub_ldm.fake_unet_state_dict(kind, seed=vae_seed + 100)
        vae = vae_state_dict_ if vae_state_dict_ is not None else vae_state_dict(vae_seed, kind)
        sd.update({f"first_stage_model.{k}": v for k, v in vae.items()})
        return _save_state_dict((folder or self.sd_dir) / name, sd, metadata)

    def add_vae(self, name: str, seed: int = 1, *, kind: str = "sd1", state_dict: dict | None = None,
                folder: Path | None = None, mtime: float | None = None) -> Path:
        """A VAE file (safetensors, or a plain pickle for .pt/.ckpt) in models/VAE (or `folder`)."""
        sd = state_dict if state_dict is not None else vae_state_dict(seed, kind)
        path = _save_state_dict((folder or self.vae_dir) / name, sd)
        if mtime is not None:
            os.utime(path, (mtime, mtime))
        return path

    def set_checkpoint_metadata(self, checkpoint: Path, **fields) -> Path:
        """The card editor's `<checkpoint>.json` (e.g. vae="x.safetensors")."""
        path = checkpoint.with_suffix(".json")
        data = json.loads(path.read_text()) if path.exists() else {}
        data.update(fields)
        path.write_text(json.dumps(data))
        return path

    def write_config(self, **settings):
        """config.json as saved by the WebUI (only these keys will be in opts.data at start)."""
        data = json.loads(self.config_path.read_text()) if self.config_path.exists() else {}
        data.update(settings)
        self.config_path.write_text(json.dumps(data, indent=4))

    def add_extension(self, name: str, files: dict[str, str]) -> Path:
        """An extension dir under extensions/ with the given files ({"scripts/x.py": source, …})."""
        base = self.extensions_dir / name
        for rel, text in files.items():
            p = base / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        base.mkdir(parents=True, exist_ok=True)
        return base

    def link_repo(self, name: str = "vae-lab") -> Path:
        """This repository as an installed extension (a symlink, as a git clone would sit there)."""
        target = self.extensions_dir / name
        if not target.exists():
            target.symlink_to(ROOT, target_is_directory=True)
        return target

    # ---------------------------------------------------------------- lifecycle
    def start(self, args=(), *, half: bool = False, ui: bool = True, api: bool = False, load_model: bool = True):
        """Import the stand-in and run the WebUI's startup: extensions, models, scripts, VAE list,
        model load, before_ui, create_ui (unless ui=False), Api (api=True), app_started."""
        assert not self.started, "start() once per test; use reload_ui() to re-import scripts"
        argv = ["--data-dir", str(self.root)]
        if not half and "--no-half" not in args:
            argv.append("--no-half")
        if not load_model:
            argv.append("--skip-load-model-at-start")
        argv += list(args)
        self._mp.setenv("WEBUI_STUB_ARGS", " ".join(_quote(a) for a in argv))
        self._mp.setenv("WEBUI_STUB_PIP_LOG", str(self.pip_log))
        self._mp.setenv("SD_WEBUI_CACHE_FILE", str(self.root / "cache.json"))
        self._mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        self._saved_modules = purge_stand_in()
        self.started = True
        from modules import initialize
        self.demo, self.app, self.api_obj = initialize.start(ui=ui, api=api)
        return self

    def reload_ui(self):
        from modules import initialize
        self.demo = initialize.reload_ui()
        return self.demo

    def close(self):
        """Forget this WebUI; a stand-in that was loaded before start() (e.g. by a session-scoped
        harness) is put back, with its Gradio patch."""
        if self.started:
            purge_stand_in()
            sys.modules.update(self._saved_modules)
            for name in GRADIO_PATCHES:
                ext = self._saved_modules.get(name)
                if ext is not None:
                    ext.install()
            self._saved_modules = {}
        self.started = False

    def __getattr__(self, name):
        """`webui.sd_vae`, `webui.shared`, … : the stand-in's `modules.<name>` (after start())."""
        if name.startswith("_") or not self.__dict__.get("started"):
            raise AttributeError(name)
        import importlib
        try:
            return importlib.import_module(f"modules.{name}")
        except ModuleNotFoundError as e:
            raise AttributeError(name) from e

    @property
    def launch(self):
        import launch
        return launch

    @property
    def model(self):
        """The loaded model without loading one (`sd_models.model_data.sd_model`)."""
        from modules import sd_models
        return sd_models.model_data.sd_model

    @property
    def api(self):
        if self.api_obj is None:
            from modules.api.api import Api
            from modules import call_queue
            self.api_obj = Api(self.app, call_queue.queue_lock)
        return self.api_obj

    # ---------------------------------------------------------------- generation
    def script_args(self, tab: str = "txt2img", **by_title) -> list:
        """The tab's script_args as the UI would send them: every input's default value, with
        `by_title={"Script title": [values…]}` written at that script's args_from (title is
        matched case-insensitively; an unknown title raises KeyError)."""
        from modules import scripts
        runner = scripts.scripts_txt2img if tab == "txt2img" else scripts.scripts_img2img
        args = [0] + [getattr(c, "value", None) for c in runner.inputs[1:]]
        for title, values in by_title.items():
            script = runner.script(title.replace("_", " "))
            if script is None:
                script = next((s for s in runner.scripts if s.title().lower() == title.lower()), None)
            if script is None:
                raise KeyError(f"no script titled {title!r} in {tab}; have {[s.title() for s in runner.scripts]}")
            values = list(values)
            assert len(values) <= script.args_to - script.args_from, f"{title} takes {script.args_to - script.args_from} args"
            args[script.args_from:script.args_from + len(values)] = values
        return args

    def txt2img(self, prompt: str = "a photo", *, negative_prompt: str = "", seed: int = 1, steps: int = 2,
                width: int = 64, height: int = 64, batch_size: int = 1, n_iter: int = 1, cfg_scale: float = 7.0,
                enable_hr: bool = False, hr_scale: float = 2.0, hr_upscaler: str = "Latent", denoising_strength: float = 0.7,
                hr_checkpoint_name: str = "Use same checkpoint", override_settings_texts=(), scripts: dict | None = None,
                script_args: list | None = None, selectable: int = 0) -> GenResult:
        """Press Generate on the txt2img tab: `call_queue.wrap_gradio_gpu_call(txt2img.txt2img)` with the
        tab's values. `scripts={"Title": [args]}` sets a script's UI values; `selectable` picks the
        "Script" dropdown index; `script_args` replaces the whole list."""
        from modules import call_queue, txt2img
        if script_args is None:
            by_title = {"Sampler": [steps, "Euler", "Automatic"], "Seed": [seed, False, -1, 0.0, 0, 0]}
            by_title.update(scripts or {})
            script_args = self.script_args("txt2img", **by_title)
            script_args[0] = selectable
        txt2img.last_processed = None
        fn = call_queue.wrap_gradio_gpu_call(txt2img.txt2img, extra_outputs=[None, '', ''])
        out = fn("task(stand-in)", types.SimpleNamespace(username=None), prompt, negative_prompt, [], n_iter, batch_size,
                 cfg_scale, height, width, enable_hr, denoising_strength, hr_scale, hr_upscaler, 0, 0, 0,
                 hr_checkpoint_name, "Use same sampler", "Use same scheduler", "", "", list(override_settings_texts),
                 *script_args)
        return GenResult(out[0] or [], out[1] or "", "".join(str(x) for x in out[2:] if x), txt2img.last_processed)

    def img2img(self, init_image, prompt: str = "a photo", *, seed: int = 1, steps: int = 2, width: int = 64,
                height: int = 64, batch_size: int = 1, n_iter: int = 1, denoising_strength: float = 0.5,
                override_settings_texts=(), scripts: dict | None = None, script_args: list | None = None) -> GenResult:
        from modules import call_queue, img2img
        if script_args is None:
            by_title = {"Sampler": [steps, "Euler", "Automatic"], "Seed": [seed, False, -1, 0.0, 0, 0]}
            by_title.update(scripts or {})
            script_args = self.script_args("img2img", **by_title)
        img2img.last_processed = None
        fn = call_queue.wrap_gradio_gpu_call(img2img.img2img, extra_outputs=[None, '', ''])
        out = fn("task(stand-in)", types.SimpleNamespace(username=None), prompt, "", init_image, n_iter, batch_size, 7.0,
                 denoising_strength, height, width, list(override_settings_texts), *script_args)
        return GenResult(out[0] or [], out[1] or "", "".join(str(x) for x in out[2:] if x), img2img.last_processed)

    def pip_calls(self) -> list[dict]:
        """run_pip calls recorded so far, from this process and from install.py subprocesses."""
        if not self.pip_log.exists():
            return []
        return [json.loads(line) for line in self.pip_log.read_text().splitlines() if line.strip()]


def _quote(a: str) -> str:
    import shlex
    return shlex.quote(str(a))


_STDLIB = os.path.dirname(os.__file__)


# The stand-ins' global Gradio patches: A1111's (typo as in the original) and Forge's.
GRADIO_PATCHES = ("modules.gradio_extensons", "modules.gradio_extensions")


def _is_stand_in_name(name: str) -> bool:
    top = name.split(".", 1)[0]
    return top in ("modules", "modules_forge", "backend") or name in ("launch", "stub_ldm")


def purge_stand_in() -> dict:
    """Forget the stand-in: drop `modules.*`, `launch`, `stub_ldm` and every module holding
    references into them (e.g. `vae_lab.webui`), and undo the Gradio component patch.
    Returns what was dropped ({name: module})."""
    for patch in GRADIO_PATCHES:
        ext = sys.modules.get(patch)
        if ext is not None:
            ext.uninstall()
    stand_in = {name: mod for name, mod in list(sys.modules.items()) if _is_stand_in_name(name)}
    if not stand_in:
        return {}
    ids = {id(m) for m in stand_in.values()}
    for name in stand_in:
        sys.modules.pop(name, None)
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None) or ""
        if mod is None or not file or "site-packages" in file or file.startswith(_STDLIB):
            continue
        try:
            values = list(vars(mod).values())
        except TypeError:
            continue
        for v in values:
            if id(v) in ids or (not isinstance(v, type(sys)) and _is_stand_in_name(str(getattr(type(v), "__module__", "")))):
                stand_in[name] = sys.modules.pop(name)
                break
    # A package goes as a unit (e.g. all of `vae_lab.webui` when its `a1111` module held `modules`):
    # a stale sibling would otherwise hand the next start objects built on the old stand-in.
    packages = {name.rpartition(".")[0] for name in stand_in if "." in name and not _is_stand_in_name(name)}
    for name in list(sys.modules):
        if any(name == pkg or name.startswith(pkg + ".") for pkg in packages):
            stand_in[name] = sys.modules.pop(name)
    return stand_in


@pytest.fixture
def webui(tmp_path, monkeypatch):
    """A fresh, not yet started fake WebUI in tmp_path (see FakeWebUI)."""
    ui = FakeWebUI(tmp_path / "webui", monkeypatch)
    try:
        yield ui
    finally:
        ui.close()


@pytest.fixture
def started_webui(webui):
    """A started fake WebUI with one SD1 checkpoint and two VAEs (vae-a, vae-b), no extensions."""
    webui.add_checkpoint("sd15.safetensors", kind="sd1", vae_seed=0)
    webui.add_vae("vae-a.safetensors", seed=1)
    webui.add_vae("vae-b.safetensors", seed=2)
    webui.start()
    return webui
