"""Which precision to run a VAE at, what to fall back to, and what we learned last time.

`auto` means fp16 on CUDA and MPS, bf16 on CPUs with native bf16 matrix units (AMX),
fp32 on other CPUs (bf16 and fp16 are emulated there and many times slower).

After a half-precision pass, *any* NaN or Inf in the output counts as a failure (the
WebUI only checks for an all-NaN tensor, which misses partial overflow) and the pass is
retried at the next safer precision: fp16 -> bf16 (where bf16 is fast) -> fp32.
Failures are remembered per weights id in a small JSON file so that the next call for
the same VAE starts at the precision that works.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from vae_lab.errors import VaeLabError

PRECISIONS = ("fp32", "bf16", "fp16")
STATE_FILE = "precision.json"

log = logging.getLogger("vae_lab.runtime")


def dtype_of(precision: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def check_precision(precision: str) -> str:
    if precision not in ("auto",) + PRECISIONS:
        raise VaeLabError(f"unknown precision {precision!r} (want auto, fp32, fp16 or bf16)")
    return precision


def _cpu_has_amx_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def bf16_is_fast(device) -> bool:
    """True where bf16 runs natively: CUDA GPUs with bf16 support, CPUs with AMX."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        return _cpu_has_amx_bf16()
    return False


def auto_precision(device) -> str:
    import torch

    dev = torch.device(device)
    if dev.type in ("cuda", "mps"):
        return "fp16"
    return "bf16" if bf16_is_fast(dev) else "fp32"


def fallback_chain(precision: str, device) -> list[str]:
    """The precisions to try, in order, for a request of `precision` on `device`."""
    check_precision(precision)
    first = auto_precision(device) if precision == "auto" else precision
    if first == "fp16":
        return ["fp16", "bf16", "fp32"] if bf16_is_fast(device) else ["fp16", "fp32"]
    if first == "bf16":
        return ["bf16", "fp32"]
    return ["fp32"]


def is_finite(tensor) -> bool:
    """No NaN and no Inf anywhere (not just "not all NaN")."""
    import torch

    return bool(torch.isfinite(tensor).all())


def default_state_dir() -> Path:
    env = os.environ.get("VAE_LAB_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vae_lab"


class PrecisionMemory:
    """weights id -> precisions that failed (per operation), kept in `<state dir>/precision.json`.

    The file is small and human-readable; a missing or corrupt file (or one whose values have
    the wrong types) is treated as empty, never as an error. Writes go through
    `vae_lab.state.jsonfile`: atomic, and locked so concurrent processes keep each other's entries.
    """

    def __init__(self, state_dir=None):
        from vae_lab.state.jsonfile import JsonStateFile

        self.path = Path(state_dir or default_state_dir()) / STATE_FILE
        self._file = JsonStateFile(self.path, clean=_clean_memory, empty=dict, what="the precision memory", indent=1)

    def failed(self, weights_id: str | None, op: str) -> list[str]:
        if not weights_id:
            return []
        return list(self._file.read().get(weights_id, {}).get(op, []))

    def record(self, weights_id: str | None, op: str, failed: list[str], worked: str) -> None:
        """Remember that `failed` gave NaN/Inf and `worked` was finite for this VAE."""
        if not weights_id or not failed:
            return

        def add(data: dict) -> None:
            entry = data.setdefault(weights_id, {})
            entry[op] = sorted(set(entry.get(op, [])) | set(failed))
            entry[f"{op}_works"] = worked
            entry["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        try:
            self._file.update(add)
        except OSError as err:  # a read-only state dir, a lock timeout: costs a retry next time, nothing more
            log.debug("precision memory not written: %s", err)

    def forget(self, weights_id: str) -> None:
        try:
            self._file.update(lambda data: data.pop(weights_id, None) and None)
        except OSError as err:
            log.debug("precision memory not written: %s", err)


def _clean_memory(data) -> dict:
    """Keep entries shaped {op: [precision, ...], "<op>_works": precision, "updated": text}."""
    from vae_lab.state.jsonfile import require_dict

    kept = {}
    for wid, entry in require_dict(data).items():
        if not isinstance(wid, str) or not isinstance(entry, dict):
            continue
        clean = {}
        for key, value in entry.items():
            if key == "updated" or key.endswith("_works"):
                if isinstance(value, str) and (key == "updated" or value in PRECISIONS):
                    clean[key] = value
            elif isinstance(value, list):
                good = sorted({p for p in value if isinstance(p, str) and p in PRECISIONS})
                if good:
                    clean[key] = good
        if clean:
            kept[wid] = clean
    return kept
