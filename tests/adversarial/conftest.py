"""Adversarial tests: hostile files, each run through the real CLI in a child process with
bounded memory, output and time (see `hostile.run_cli`)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file


@pytest.fixture
def latents(tmp_path):
    """A valid 4-channel latent file, so that `decode` gets as far as reading the VAE."""
    path = tmp_path / "lat.safetensors"
    save_file({"latent_tensor": torch.zeros(1, 4, 8, 8)}, str(path), metadata={"format": "vae_lab.latent"})
    return path


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "in.png"
    Image.new("RGB", (16, 16), (120, 60, 200)).save(path)
    return path
