"""What the app needs at run time is requirements.txt alone: `bash dev.sh serve` installs only that,
so no module of vae_lab may import a test-only package (scikit-image, diffusers, playwright, pytest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_ONLY = ("skimage", "diffusers", "playwright", "pytest", "testkit")

BLOCKER = r'''
import importlib, pkgutil, runpy, sys

class TestOnly:
    """Refuse the test-only packages, as if they were not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in %r:
            raise ModuleNotFoundError(f"No module named {name!r} (test-only)")

sys.meta_path.insert(0, TestOnly())
import vae_lab
for m in pkgutil.walk_packages(vae_lab.__path__, "vae_lab."):
    if not m.name.startswith(("vae_lab.webui", "vae_lab.__main__")):  # webui: imports A1111's `modules`
        importlib.import_module(m.name)
from vae_lab.ui.app import build_app
from vae_lab.ui.tab import UiContext
build_app(UiContext(vae_dirs=[sys.argv[1]]))
sys.argv = ["vae_lab"] + sys.argv[2:]
runpy.run_module("vae_lab", run_name="__main__")
''' % (TEST_ONLY,)


def test_requirements_txt_lists_no_test_package():
    names = {re.split(r"[<>=!~\[ ;]", line.strip())[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith(("#", "-"))}
    assert not names & {"pytest", "diffusers", "scikit-image", "playwright", "ruff", "mypy"}
    assert {"torch", "gradio", "safetensors", "pillow", "numpy"} <= names


def test_the_app_and_a_comparison_run_without_any_test_package(taef2_pair, astronaut, tmp_path):
    from PIL import Image

    dec, enc = taef2_pair
    img = tmp_path / "photo.png"
    Image.fromarray(astronaut[::4, ::4]).save(img)  # 128x128
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, str(dec.parent), "compare", "--image", str(img), "--vae", str(dec),
         "--encoder", str(enc), "--precision", "fp32", "--out", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "grid.png").is_file()
