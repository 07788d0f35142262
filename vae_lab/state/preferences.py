"""Per-checkpoint preferred VAE, kept in a small JSON file in the extension's data.

The file maps a checkpoint key (its path relative to the models folder, as the WebUI's
`CheckpointInfo.name`: stable, unlike the title that gains a hash) to a VAE file name
(a key of the WebUI's VAE list, i.e. a basename such as `vae-ft-mse-840000-ema-pruned.safetensors`).

    {"version": 1, "checkpoints": {"sd15/dreamshaper_8.safetensors": "vae-ft-mse-840000-ema-pruned.safetensors"}}

Writes are atomic (temp file + rename) so a crash never leaves a half-written file; a
corrupt file is reported once and treated as empty rather than breaking model loading.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading

from vae_lab.errors import VaeLabError

VERSION = 1


class PreferencesError(VaeLabError):
    """The preferences file exists but cannot be read or written."""


class Preferences:
    def __init__(self, path):
        self.path = os.fspath(path)
        self._lock = threading.Lock()

    def _read(self) -> dict[str, str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            raise PreferencesError(f"cannot read VAE preferences {self.path}: {err}") from None
        prefs = data.get("checkpoints") if isinstance(data, dict) else None
        if not isinstance(prefs, dict):
            raise PreferencesError(f"cannot read VAE preferences {self.path}: no 'checkpoints' table")
        return {str(k): str(v) for k, v in prefs.items() if isinstance(v, str)}

    def _write(self, prefs: dict[str, str]) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".vae-prefs-", suffix=".json", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": VERSION, "checkpoints": dict(sorted(prefs.items()))}, f, indent=2)
                f.write("\n")
            os.chmod(tmp, 0o644)  # mkstemp makes it private; this is no secret
            os.replace(tmp, self.path)
        except OSError as err:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise PreferencesError(f"cannot write VAE preferences {self.path}: {err}") from None

    def all(self) -> dict[str, str]:
        with self._lock:
            return self._read()

    def get(self, checkpoint: str) -> str | None:
        with self._lock:
            return self._read().get(checkpoint)

    def set(self, checkpoint: str, vae: str | None) -> None:
        """Prefer `vae` for `checkpoint`; None (or "") removes the preference."""
        if not checkpoint:
            raise PreferencesError("no checkpoint given for the VAE preference")
        with self._lock:
            prefs = self._read()
            if vae:
                if prefs.get(checkpoint) == vae:
                    return
                prefs[checkpoint] = vae
            elif checkpoint in prefs:
                del prefs[checkpoint]
            else:
                return
            self._write(prefs)
