"""Per-checkpoint preferred VAE, kept in a small JSON file in the extension's data.

The file maps a checkpoint key (its path relative to the models folder, as the WebUI's
`CheckpointInfo.name`: stable, unlike the title that gains a hash) to a VAE file name
(a key of the WebUI's VAE list, i.e. a basename such as `vae-ft-mse-840000-ema-pruned.safetensors`).

    {"version": 1, "checkpoints": {"sd15/dreamshaper_8.safetensors": "vae-ft-mse-840000-ema-pruned.safetensors"}}

Reads and writes go through `vae_lab.state.jsonfile`: a corrupt file is logged and read as
"no preferences" (never breaking model loading), kept as `<file>.corrupt` on the next save;
writes are atomic and locked, so the tab and a second WebUI process cannot lose each other's entries.
"""

from __future__ import annotations

import os

from vae_lab.errors import VaeLabError
from vae_lab.state.jsonfile import JsonStateFile, require_dict, str_dict

VERSION = 1


class PreferencesError(VaeLabError):
    """The preferences file cannot be written."""


def _clean(data) -> dict[str, str]:
    prefs = require_dict(data).get("checkpoints")
    if not isinstance(prefs, dict):
        raise TypeError("no 'checkpoints' table")
    return str_dict(prefs)


class Preferences:
    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = JsonStateFile(self.path, clean=_clean, empty=dict, what="VAE preferences", indent=2)

    def all(self) -> dict[str, str]:
        return self._file.read()

    def get(self, checkpoint: str) -> str | None:
        return self._file.read().get(checkpoint)

    def set(self, checkpoint: str, vae: str | None) -> None:
        """Prefer `vae` for `checkpoint`; None (or "") removes the preference."""
        if not checkpoint:
            raise PreferencesError("no checkpoint given for the VAE preference")
        if self._file.read().get(checkpoint) == (vae or None):
            return

        def change(prefs: dict[str, str]) -> dict:
            if vae:
                prefs[checkpoint] = vae
            else:
                prefs.pop(checkpoint, None)
            return {"version": VERSION, "checkpoints": dict(sorted(prefs.items()))}

        try:
            self._file.update(change)
        except OSError as err:  # also filelock.Timeout: a lock held too long by a hung process
            raise PreferencesError(f"cannot write VAE preferences {self.path}: {err}") from None
