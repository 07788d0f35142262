"""Shared test fixtures: the real TAEF2 weights (tests/assets/taef2), real photos, the CPU kind.

Markers for the stack a test needs (registered in pyproject.toml; see docs/testing.md):

- `a1111`: needs the A1111 1.10 stand-in (tests/webui_stub), which is built on Gradio 3. Every test
  in a module that imports the stand-in helpers (`webui_env`, `webui_lab`) gets it automatically.
- `forge`: needs the Forge stand-in (tests/forge_stub), built on Gradio 4.

On a stack whose Gradio major does not fit, such tests are skipped with the reason. CI (.ci/run) runs
the current, the A1111 and the Gradio 4 stack. The Gradio 4 stack has the current stack's Python and
torch, and the A1111 stack's Pillow and numpy, so the core modules in `_CORE_MODULES` (no Gradio,
FastAPI, WebUI or browser in them) are not run a third time there; everything else runs everywhere.
"""

from __future__ import annotations

import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

from testkit import TAEF2_DECODER, TAEF2_DIR, TAEF2_ENCODER
from vae_lab.runtime import precision as prec

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# No test writes to the user's ~/.cache: hash cache, precision memory and extension data go to
# one temporary folder per session (tests that need a fresh cache still set their own).
_SESSION_STATE = tempfile.mkdtemp(prefix="vae-lab-tests-")
for _var, _sub in (("VAE_LAB_CACHE_DIR", "cache"), ("VAE_LAB_STATE_DIR", "state"), ("VAE_LAB_DATA_DIR", "data")):
    os.environ[_var] = os.path.join(_SESSION_STATE, _sub)

# Modules whose import means "this test drives the A1111 stand-in".
_A1111_HELPERS = {"webui_env", "webui_lab"}

# Test modules that use no Gradio, FastAPI, WebUI stand-in, app server or browser: on the Gradio 4
# stack (the current stack's Python + torch, the A1111 stack's Pillow + numpy) they would only
# repeat runs of the other two stacks. A module not listed here runs on every stack.
_CORE_MODULES = {
    "test_attention_window", "test_catalog", "test_cli", "test_cli_codec", "test_cli_compare", "test_cli_info",
    "test_compare", "test_convert", "test_engine", "test_eval", "test_grid", "test_loading", "test_memory",
    "test_metrics", "test_models_kl", "test_ramcache", "test_swap", "test_tae", "test_tiling", "test_units",
    "test_webui_core", "test_adv_tensors",
}


def _gradio_major() -> int | None:
    try:
        return int(metadata.version("gradio").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def pytest_report_header(config):
    import torch

    py = "%d.%d.%d" % sys.version_info[:3]
    gr = _gradio_major()
    return (f"stack: {os.environ.get('VAE_LAB_STACK', '(not set)')}; Python {py}, torch {torch.__version__}, "
            f"gradio {metadata.version('gradio') if gr else 'missing'}; "
            f"bf16 fast on this CPU: {prec.bf16_is_fast('cpu')} ({prec.FAST_BF16_ENV}={os.environ.get(prec.FAST_BF16_ENV, 'unset')})")


def _uses_a1111_stand_in(item) -> bool:
    mod = getattr(item, "module", None)
    if mod is None:
        return False
    return any(getattr(v, "__module__", None) in _A1111_HELPERS or getattr(v, "__name__", None) in _A1111_HELPERS
               for v in vars(mod).values())


def pytest_collection_modifyitems(config, items):
    major = _gradio_major()
    ui_stack_only = os.environ.get("VAE_LAB_STACK") == "gradio4"
    for item in items:
        if ui_stack_only and getattr(item, "module", None) is not None and \
                item.module.__name__.rsplit(".", 1)[-1] in _CORE_MODULES:
            item.add_marker(pytest.mark.skip(
                reason="core test without Gradio: run by the current and the A1111 stacks"))
            continue
        forge = item.get_closest_marker("forge") is not None  # the Forge stand-in is layered over the A1111 one
        if item.get_closest_marker("a1111") is None and not forge and _uses_a1111_stand_in(item):
            item.add_marker(pytest.mark.a1111)
        if item.get_closest_marker("a1111") is not None and major != 3:
            item.add_marker(pytest.mark.skip(
                reason=f"needs the A1111 stand-in (Gradio 3); this stack has gradio {major}.x"))
        if forge and (major is None or major < 4):
            item.add_marker(pytest.mark.skip(
                reason=f"needs the Forge stand-in (Gradio 4); this stack has gradio {major}.x"))


@pytest.fixture(params=["bf16-fast", "bf16-slow"])
def cpu_kind(request, monkeypatch) -> str:
    """Run the test as on a CPU where bf16 is fast (AMX) and as on one where it is not (AVX2 only),
    whatever this machine has, by forcing the probe (`VAE_LAB_FAST_BF16`)."""
    monkeypatch.setenv(prec.FAST_BF16_ENV, "1" if request.param == "bf16-fast" else "0")
    return request.param


@pytest.fixture(scope="session")
def taef2_pair() -> tuple[Path, Path]:
    """(decoder, encoder) paths of madebyollin's real TAEF2 weights, shipped in tests/assets/taef2."""
    if not TAEF2_DECODER.exists() or not TAEF2_ENCODER.exists():
        pytest.fail(f"the real TAEF2 weights are missing from {TAEF2_DIR} (they are part of the repository)")
    return TAEF2_DECODER, TAEF2_ENCODER


@pytest.fixture(scope="session")
def astronaut():
    """skimage's astronaut photo, 512x512 RGB uint8 (ships offline with scikit-image)."""
    from skimage import data

    return data.astronaut()
