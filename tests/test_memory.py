"""Peak tensor memory on CPU (runtime/memory.py): exact, and the same on torch 2.1 and current torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from vae_lab.runtime.memory import PeakMemory

ROOT = Path(__file__).resolve().parent.parent


def test_a_storage_counts_until_its_last_view_is_gone():
    with torch.inference_mode(), PeakMemory("cpu") as pm:
        x = torch.ones(1000)  # 4000 bytes
        y = x.view(10, 100)  # a view: no new storage, but it keeps x's alive
        del x
        z = torch.ones(1000)  # 8000 bytes live: x's storage lives on in y
        del y
        w = torch.ones(1000)  # still 8000: x's storage is gone now
        del z, w
    assert pm.peak_bytes == 8000


def test_storages_from_before_the_block_and_in_place_results_are_not_counted():
    before = torch.ones(1000)
    with torch.inference_mode(), PeakMemory("cpu") as pm:
        before.add_(1)  # in place
        v = before[:10]  # a view of an old storage
        s = before.sum()  # 4 bytes
        del v, s
    assert pm.peak_bytes == 4


def test_the_process_exits_cleanly_after_measuring():
    """torch 2.1: weak references to `untyped_storage()` wrappers made the interpreter crash at exit."""
    code = (
        "import torch\n"
        "from vae_lab.runtime.memory import PeakMemory\n"
        "conv = torch.nn.Conv2d(3, 8, 3)\n"
        "with torch.inference_mode(), PeakMemory('cpu') as pm:\n"
        "    out = [conv(torch.randn(1, 3, 32, 32)) for _ in range(3)]\n"
        "print(pm.peak_bytes)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) > 3 * 8 * 30 * 30 * 4
