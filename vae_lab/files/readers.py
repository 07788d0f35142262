"""Opening VAE containers without running anything that is in them.

Three containers exist in the wild: safetensors files, PyTorch pickles (`.ckpt`, `.pt`,
`.pth`, `.bin`; zip-based or the legacy format) and diffusers folders (`config.json` +
`diffusion_pytorch_model.safetensors` or `.bin`). The container is recognised by its
first bytes, not its extension, because renamed files are common.

Pickles are only ever read with `torch.load(weights_only=True)`: a file that needs any
global beyond plain tensors and containers is refused with `UnsafeFile`, and nothing in it
runs; numpy objects become inert stand-ins, never numpy. Before torch sees a pickle, its
structure is checked against the file (`vae_lab.files.torchfile`: no compressed records, no
storage larger than its bytes). Only regular files are opened (`vae_lab.files.folders`).
Everything that goes wrong is reported as one line that starts with the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vae_lab.errors import BadVaeFile, UnsafeFile
from vae_lab.files.folders import open_regular, regular_file_problem

# Where a diffusers folder keeps its weights, in order of preference (safetensors first).
DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)

# Pickles larger than this are memory-mapped (zip format only), so that reading the VAE out
# of a 7 GB full checkpoint does not load the UNet into RAM.
MMAP_ABOVE_BYTES = 1 << 30


@dataclass
class RawFile:
    """A container as read from disk, before any key normalisation."""

    path: str  # the weights file actually read (inside a diffusers folder: the weights file)
    format: str  # "safetensors" | "pickle" | "diffusers"
    files: list[str]
    content: Any  # a mapping of names to tensors (lazy for safetensors), or what the pickle held
    config: dict | None = None  # a diffusers folder's config.json
    metadata: dict = field(default_factory=dict)  # a safetensors file's __metadata__


class LazySafetensors(Mapping):
    """The tensors of a safetensors file, read one at a time on access.

    Only the header is parsed up front, so the VAE inside a multi-GB checkpoint is read
    without touching the rest of the file.
    """

    def __init__(self, path: str):
        from safetensors import safe_open

        self._path = path
        self._file = safe_open(path, framework="pt", device="cpu")
        self._keys = list(self._file.keys())
        self._key_set = set(self._keys)
        self.metadata = dict(self._file.metadata() or {})

    def __getitem__(self, key):
        if key not in self._key_set:
            raise KeyError(key)
        try:
            return self._file.get_tensor(key)
        except Exception as err:  # a tensor that points past the end of a damaged file
            raise BadVaeFile(f"{self._path}: cannot read tensor {key!r}: {_one_line(err)}") from None

    def __contains__(self, key):
        return key in self._key_set

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("…" if len(text) > 200 else "")


def sniff(path: str) -> str:
    """The container format from the first bytes: "safetensors", "zip-pickle", "pickle" or "unknown"."""
    with open_regular(path) as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "zip-pickle"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"  # 8-byte header length, then JSON; a bad length is reported by safetensors
    return "unknown"


def read_safetensors(path: str) -> RawFile:
    from safetensors import SafetensorError

    try:
        lazy = LazySafetensors(path)
    except SafetensorError as err:
        raise BadVaeFile(f"{path}: truncated or corrupt safetensors file ({_one_line(err)})") from None
    except (OSError, ValueError) as err:
        raise BadVaeFile(f"{path}: cannot read safetensors file ({_one_line(err)})") from None
    return RawFile(path=path, format="safetensors", files=[path], content=lazy, metadata=lazy.metadata)


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)|but got <class '([\w.]+)'>|Unsupported class ([\w.]+)")
_OPCODE_RE = re.compile(r"Unsupported operand (\d+)")


class InertStandIn:
    """What a training-callback object in a Lightning checkpoint becomes: nothing.

    LDM training checkpoints (the original kl-f8 release, many `.ckpt` VAEs) carry a
    `ModelCheckpoint` in their `callbacks`. A1111's own safe unpickler accepts that name;
    here the name is bound to this empty class, so the file loads and no code from it runs.
    """

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


# numpy objects that training scripts pickle next to the weights (losses, scores, RNG states).
# They are never weights, and numpy rebuilds them from raw bytes it trusts: a forged dtype
# state turns 16 bytes into object pointers and segfaults the process. So these names are
# bound to `InertStandIn`: the file loads, the values become nothing, numpy never runs.
_NUMPY_NAMES = (
    *[f"{core}.multiarray.{fn}" for core in ("numpy.core", "numpy._core") for fn in ("scalar", "_reconstruct")],
    "numpy.dtype",
    "numpy.ndarray",
    *[f"numpy.dtypes.{n}DType" for n in (
        "Bool", "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Long", "ULong",
        "LongLong", "ULongLong", "Byte", "UByte", "Short", "UShort", "Int", "UInt", "Float16", "Float32",
        "Float64", "LongDouble", "Complex64", "Complex128", "CLongDouble", "Object", "Bytes", "Str", "Void",
        "DateTime64", "TimeDelta64", "String",
    )],
)


def _latin1_bytes(text="", encoding="latin1", errors="strict") -> bytes:
    """What numpy's py2-compatible pickles use `_codecs.encode(text, "latin1")` for; nothing else."""
    if isinstance(text, str) and encoding in ("latin1", "latin-1") and errors == "strict":
        return text.encode("latin-1", "replace")
    return b""


def _compat_globals() -> list:
    """The extra globals A1111's `modules/safe.py` accepts beyond plain tensors, made harmless.

    numpy constructors and the Lightning callback are bound to `InertStandIn` (see
    `_NUMPY_NAMES`); py2's `set` is `set`. Nothing here rebuilds an object from the file.
    """
    return [
        *[(InertStandIn, name) for name in _NUMPY_NAMES],
        (_latin1_bytes, "_codecs.encode"),  # newer torch allows the real one itself
        (set, "__builtin__.set"),
        (InertStandIn, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
        (InertStandIn, "pytorch_lightning.callbacks.model_checkpoint"),
    ]


_LOAD_LOCK = threading.Lock()  # torch's safe_globals() changes process-wide state


@contextlib.contextmanager
def _allowing(extra: list):
    """torch's `safe_globals(extra)` where this torch has it (2.5+); plain weights_only before.

    Older torch (A1111 ships 2.1) simply refuses the extra globals: still safe, just stricter.
    """
    import torch

    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        yield
        return
    try:
        ctx = safe_globals(extra)
        ctx.__enter__()
    except (TypeError, ValueError):  # a torch without (object, "name") stand-ins
        yield
        return
    try:
        yield
    finally:
        ctx.__exit__(None, None, None)


def read_pickle(path: str, zip_format: bool) -> RawFile:
    """`torch.load(weights_only=True)`, and nothing else, ever."""
    import pickle

    import torch

    from vae_lab.files import torchfile

    if zip_format:
        torchfile.check_zip(path)
    else:
        torchfile.check_legacy(path)
    mmap = zip_format and os.path.getsize(path) > MMAP_ABOVE_BYTES
    try:
        with _LOAD_LOCK, _allowing(_compat_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged file's protocol warning would break the one-line error
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Weights only load failed" in text or "weights_only" in text:
            found = _GLOBAL_RE.search(text)
            name = next((g for g in found.groups() if g), None) if found else None
            opcode = _OPCODE_RE.search(text)
            if opcode and not name:  # e.g. protocol 4's FRAME: torch's safe loader cannot read it at all
                why = f"this pickle uses opcode {opcode[1]}, which torch's safe loader does not read"
            else:
                what = f"it needs {name}" if name else "it needs objects other than tensors"
                why = f"this pickle needs more than plain tensors to load ({what})"
            raise UnsafeFile(f"{path}: refused: {why}; nothing in it was run") from None
        raise BadVaeFile(f"{path}: corrupt pickle ({_one_line(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, struct.error) as err:
        text = _one_line(err)
        if "hasRecord" in text or "not in a subdirectory" in text:
            raise BadVaeFile(f"{path}: a zip archive, but not a PyTorch file") from None
        if "Invalid magic number" in text:
            raise BadVaeFile(f"{path}: a Python pickle, but not one written by torch.save") from None
        if "central directory" in text or "EOF" in text or "unexpected" in text.lower():
            raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file ({text})") from None
        raise BadVaeFile(f"{path}: cannot read PyTorch file ({text})") from None
    except Exception as err:  # torch raises many types for damaged files; none may escape as a traceback
        raise BadVaeFile(f"{path}: cannot read PyTorch file ({type(err).__name__}: {_one_line(err)})") from None
    return RawFile(path=path, format="pickle", files=[path], content=obj)


def read_weights_file(path: str) -> RawFile:
    """A single weights file, by content."""
    try:
        kind = sniff(path)
        if os.path.getsize(path) == 0:
            raise BadVaeFile(f"{path}: empty file")
    except OSError as err:
        raise BadVaeFile(f"{path}: cannot read ({err.strerror or _one_line(err)})") from None
    if kind == "safetensors":
        return read_safetensors(path)
    if kind in ("zip-pickle", "pickle"):
        return read_pickle(path, zip_format=kind == "zip-pickle")
    raise BadVaeFile(f"{path}: not a safetensors or PyTorch weights file")


def find_diffusers_weights(folder: str) -> tuple[str, str] | None:
    """(config.json, weights file) of a diffusers VAE folder, or of the `vae/` folder of a pipeline."""
    for base in (folder, os.path.join(folder, "vae")):
        config = os.path.join(base, "config.json")
        if os.path.isfile(config):
            for name in DIFFUSERS_WEIGHTS:
                weights = os.path.join(base, name)
                if os.path.isfile(weights):
                    return config, weights
    return None


def read_diffusers_folder(folder: str) -> RawFile:
    found = find_diffusers_weights(folder)
    if found is None:
        raise BadVaeFile(
            f"{folder}: a folder, but not a diffusers VAE (needs config.json and "
            "diffusion_pytorch_model.safetensors or .bin)"
        )
    config_path, weights = found
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as err:
        raise BadVaeFile(f"{config_path}: unreadable config.json ({_one_line(err)})") from None
    raw = read_weights_file(weights)
    raw.format = "diffusers"
    raw.files = [weights, config_path]
    raw.config = config
    return raw


def read_container(path: str) -> RawFile:
    """Open `path` (a weights file or a diffusers folder) without running anything in it."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_diffusers_folder(path)
    problem = regular_file_problem(path)
    if problem is not None:
        raise BadVaeFile(f"{path}: {problem}" + ("" if problem == "no such file" else "; only regular files are read"))
    return read_weights_file(path)
