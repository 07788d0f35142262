"""Shared test fixtures: the real TAEF2 weights in ../shared/models and real photos."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# No test writes to the user's ~/.cache: hash cache, precision memory and extension data go to
# one temporary folder per session (tests that need a fresh cache still set their own).
_SESSION_STATE = tempfile.mkdtemp(prefix="vae-lab-tests-")
for _var, _sub in (("VAE_LAB_CACHE_DIR", "cache"), ("VAE_LAB_STATE_DIR", "state"), ("VAE_LAB_DATA_DIR", "data")):
    os.environ[_var] = os.path.join(_SESSION_STATE, _sub)

SHARED_MODELS = Path(os.environ.get("VAE_LAB_SHARED_MODELS", ROOT.parent / "shared" / "models"))
TAEF2_DECODER = SHARED_MODELS / "taef2_decoder.pth"
TAEF2_ENCODER = SHARED_MODELS / "taef2_encoder.pth"


@pytest.fixture(scope="session")
def taef2_pair() -> tuple[Path, Path]:
    """(decoder, encoder) paths of madebyollin's real TAEF2 weights (never copied into the repo)."""
    if not TAEF2_DECODER.exists() or not TAEF2_ENCODER.exists():
        pytest.fail(f"the real TAEF2 weights are missing from {SHARED_MODELS}")
    return TAEF2_DECODER, TAEF2_ENCODER


@pytest.fixture(scope="session")
def astronaut():
    """skimage's astronaut photo, 512x512 RGB uint8 (ships offline with scikit-image)."""
    from skimage import data

    return data.astronaut()
