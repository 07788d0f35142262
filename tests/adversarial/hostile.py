"""Builders of hostile VAE files, written byte by byte (nothing here is loaded in-process).

Every builder returns the path it wrote. The pickles are hand-assembled protocol-2 opcode
streams, the same opcodes `torch.save` emits, so a test can claim anything a forger could:
storages larger than their records, stride-0 views, numpy objects with forged pointers,
globals that would run code.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

# --- a tiny pickle assembler ---------------------------------------------------------------

PROTO2 = b"\x80\x02"
MARK, STOP, TUPLE, EMPTY_TUPLE, EMPTY_DICT, SETITEM, SETITEMS = b"(", b".", b"t", b")", b"}", b"s", b"u"
REDUCE, BUILD, BINPERSID, NONE, FALSE, TRUE = b"R", b"b", b"Q", b"N", b"\x89", b"\x88"
TUPLE1, TUPLE2, TUPLE3, EMPTY_LIST, APPEND = b"\x85", b"\x86", b"\x87", b"]", b"a"


def s(text: str) -> bytes:
    """BINUNICODE (torch's safe loader reads this one, not SHORT_BINUNICODE)."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def i(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def call(module: str, name: str, *args: bytes) -> bytes:
    return glob(module, name) + tup(*args) + REDUCE


_STORAGE = {"float32": ("FloatStorage", 4), "float16": ("HalfStorage", 2), "int64": ("LongStorage", 8)}


def tensor(key: str, numel: int, size, stride, offset: int = 0, dtype: str = "float32", legacy=False) -> bytes:
    """`torch._utils._rebuild_tensor_v2` of storage `key` that claims `numel` elements
    (`legacy`: the pre-1.6 persistent id, which ends with a view description)."""
    storage_cls = _STORAGE[dtype][0]
    pid = tup(s("storage"), glob("torch", storage_cls), s(key), s("cpu"), i(numel), *([NONE] if legacy else [])) + BINPERSID
    return call(
        "torch._utils", "_rebuild_tensor_v2",
        pid, i(offset), tup(*map(i, size)), tup(*map(i, stride)), FALSE,
        call("collections", "OrderedDict"),
    )


def state_dict(entries: dict[str, bytes]) -> bytes:
    """A protocol-2 pickle of a dict {name: pickled value}."""
    body = b"".join(s(k) + v for k, v in entries.items())
    return PROTO2 + EMPTY_DICT + MARK + body + SETITEMS + STOP


def write_pt(path, pickle_bytes: bytes, records: dict[str, bytes] | None = None, *,
             compression=zipfile.ZIP_STORED) -> Path:
    """A zip `.pt` as torch.save lays it out: archive/data.pkl, archive/data/<key>, version."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        for key, data in (records or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return path


def write_legacy_pt(path, pickle_bytes: bytes, storages: list[tuple[str, int, bytes]]) -> Path:
    """The pre-1.6 torch format: magic, protocol, sys info, the object, storage keys, then
    each storage as an 8-byte element count and its bytes; `storages`: (key, claimed numel, data)."""
    import pickle

    out = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    out += pickle.dumps(1001, protocol=2)
    out += pickle.dumps({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    out += pickle_bytes
    out += pickle.dumps([k for k, _, _ in storages], protocol=2)
    for _, numel, data in storages:
        out += struct.pack("<q", numel) + data
    Path(path).write_bytes(out)
    return Path(path)


# --- numpy with forged object pointers -------------------------------------------------------


def numpy_forged_pointers() -> bytes:
    """{"x": ndarray} whose dtype's pickled state declares an object field with flags 1
    (reference-counted, not list-pickled): numpy takes the 16 raw bytes as PyObject
    pointers, and freeing the array dereferences 0x4141414141414141. ~250 bytes."""
    latin1 = lambda text: call("_codecs", "encode", s(text), s("latin1"))  # noqa: E731
    dtype = lambda spec: call("numpy", "dtype", s(spec), FALSE, TRUE)  # noqa: E731
    forged_dtype = dtype("V16") + tup(
        i(3), s("|"), NONE, s("a") + TUPLE1,
        EMPTY_DICT + s("a") + dtype("O8") + i(0) + TUPLE2 + SETITEM,
        i(16), i(1), i(1),
    ) + BUILD
    array = call("numpy.core.multiarray", "_reconstruct", glob("numpy", "ndarray"), i(0) + TUPLE1, latin1("b"))
    array += tup(i(1), i(1) + TUPLE1, forged_dtype, FALSE, latin1("A" * 16)) + BUILD
    return PROTO2 + EMPTY_DICT + s("x") + array + SETITEM + STOP


# --- safetensors --------------------------------------------------------------------------------


def write_safetensors(path, header: dict, data: bytes) -> Path:
    raw = json.dumps(header).encode()
    Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return Path(path)


# --- running the CLI as an attacker's victim ---------------------------------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 3 << 30  # address space of one CLI run: torch's import needs ~1.5 GB of it
OUTPUT_LIMIT = 32 << 20  # largest file one run may write (a tiny test VAE converts to < 8 MB)
TIME_LIMIT = 180  # seconds; a run that blocks (a FIFO) or inflates a bomb runs into it


def _limits():  # runs in the child, before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))


def run_cli(*args, cwd, timeout: int = TIME_LIMIT) -> subprocess.CompletedProcess:
    """`python -m vae_lab ARGS` in `cwd`, with bounded memory, output size and time.

    Caches and state go under `cwd` too, so a run that writes anywhere else is caught by
    `files_under`. A run that exceeds the time limit fails the test (it hung).
    """
    cwd = Path(cwd)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VAE_LAB_")},
        "PYTHONPATH": str(ROOT),
        "HOME": str(cwd / "home"),
        "VAE_LAB_CACHE_DIR": str(cwd / "home" / "cache"),
        "VAE_LAB_STATE_DIR": str(cwd / "home" / "state"),
        "VAE_LAB_DATA_DIR": str(cwd / "home" / "data"),
        "OMP_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    try:
        return subprocess.run(
            [sys.executable, "-m", "vae_lab", *map(str, args)], cwd=cwd, env=env, capture_output=True,
            text=True, timeout=timeout, preexec_fn=_limits, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`vae_lab {' '.join(map(str, args))}` did not finish in {timeout} s (it hangs)") from None


def assert_refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, one line on stderr that starts with "error:", no traceback; `words` in it."""
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode} (a crash); stderr: {proc.stderr[-2000:]}"
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}; stdout {proc.stdout[-500:]!r}; stderr {err[-1500:]!r}"
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err[-3000:]
    for word in words:
        assert word in err, err
    return err


def files_under(folder) -> set[str]:
    """Every file below `folder` except the cache and state the run may keep in home/."""
    folder = Path(folder)
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if p.is_file() and not str(p.relative_to(folder)).startswith("home")}


# --- lying tensors ------------------------------------------------------------------------------


def tiny_vae_shapes() -> dict:
    """{name: shape} of every tensor of the tests' tiny kl-f8 VAE."""
    from factories import TINY_KL, random_kl_state_dict

    return {k: tuple(v.shape) for k, v in random_kl_state_dict(TINY_KL).items()}


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def stride0_vae(path) -> Path:
    """Every tensor of a complete (tiny) kl-f8 VAE, each a stride-0 view of one float."""
    shapes = tiny_vae_shapes()
    entries = {name: tensor(str(n), 1, shape, (0,) * len(shape)) for n, (name, shape) in enumerate(shapes.items())}
    return write_pt(path, state_dict(entries), {str(n): b"\0\0\x80\x3f" for n in range(len(shapes))})


def shared_storage_vae(path) -> Path:
    """Every tensor a dense view of one storage as large as the largest tensor: each view is
    honest, together they claim far more than the file."""
    shapes = tiny_vae_shapes()
    numel = max(_numel(s) for s in shapes.values())
    entries = {name: tensor("0", numel, shape, _contiguous_strides(shape)) for name, shape in shapes.items()}
    return write_pt(path, state_dict(entries), {"0": b"\0" * (numel * 4)})


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def deflated_bomb(path, inflated_bytes: int) -> Path:
    """A zip `.pt` whose one storage record is deflated: ~1000x smaller on disk than in memory."""
    numel = inflated_bytes // 4
    with zipfile.ZipFile(path, "w") as z:  # streamed, so the test itself stays small in memory
        z.writestr("archive/data.pkl", state_dict({"encoder.conv_in.weight": tensor("0", numel, (numel,), (1,))}))
        z.writestr("archive/byteorder", "little")
        info = zipfile.ZipInfo("archive/data/0")
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = b"\0" * (1 << 24)
        with z.open(info, "w", force_zip64=True) as rec:
            left = inflated_bytes
            while left > 0:
                rec.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
        z.writestr("archive/version", "3\n")
    return Path(path)


# --- images ----------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(path, width: int, height: int) -> Path:
    """A greyscale PNG whose header claims width x height; the data is a few KB of zeros."""
    import zlib

    data = zlib.compress(b"\0" * (width + 1) * 64, 9)
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")
    )
    return Path(path)


def png_rgb16(path, width: int, height: int, rgb16: tuple[int, int, int]) -> Path:
    """A 16-bit-per-channel RGB PNG of one colour (Pillow cannot write these)."""
    import zlib

    row = b"\0" + struct.pack(">HHH", *rgb16) * width
    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(row * height)) + _png_chunk(b"IEND", b"")
    )
    return Path(path)


def jpeg_with_orientation(path, width: int, height: int, orientation: int) -> Path:
    """A JPEG stored width x height whose EXIF says to show it rotated (6: 90° clockwise)."""
    from PIL import Image

    im = Image.new("RGB", (width, height), (200, 30, 30))
    im.paste((30, 30, 200), (0, 0, width // 2, height))  # left half blue: rotation is visible
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes(), quality=95)
    return Path(path)


def tiny_vae_file(path) -> Path:
    from factories import TINY_KL, random_kl_state_dict
    from safetensors.torch import save_file

    save_file(random_kl_state_dict(TINY_KL), str(path))
    return Path(path)
