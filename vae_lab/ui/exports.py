"""What a run leaves to download: the metrics as CSV and JSON and the grid as PNG."""

from __future__ import annotations

import os
from pathlib import Path


def write_downloads(result, folder: str) -> list[str]:
    """The table as CSV and JSON and the side-by-side grid as PNG, in `folder`."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, text in (("vae_lab_metrics.csv", result.to_csv()), ("vae_lab_metrics.json", result.to_json())):
        p = os.path.join(folder, name)
        Path(p).write_text(text, encoding="utf-8")
        paths.append(p)
    p = os.path.join(folder, "vae_lab_grid.png")
    result.grid().save(p, compress_level=3)
    paths.append(p)
    return paths
