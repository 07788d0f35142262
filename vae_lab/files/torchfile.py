"""The structure of a PyTorch file, checked before `torch.load` sees it.

`torch.load(weights_only=True)` runs no code, but it believes what the file says about
sizes: torch 2.1 allocates a storage as large as the pickle claims even when its zip record
holds 16 bytes (4 GB from a 20 KB file), the legacy format allocates whatever an 8-byte
count says, and the zip reader inflates a deflated record in memory (`torch.save` never
compresses, so a 2 MB record can become 2.3 GB). So before torch reads a byte:

* zip files: every record is stored (not compressed, not encrypted), lies inside the file,
  and all records together are no larger than the file; `data.pkl` is bounded;
* every storage the pickle names (its persistent ids, found by walking the opcodes with
  `pickletools`, which builds no objects) exists and holds at least the bytes it claims;
* legacy files: every storage's own length field fits in the rest of the file.

What a tensor then makes of its storage (stride-0 views, views larger than the file) is
checked on the loaded tensors, in `vae_lab.files.loading`.
"""

from __future__ import annotations

import io
import mmap
import os
import pickletools
import struct
import zipfile
from dataclasses import dataclass

from vae_lab.errors import BadVaeFile, UnsafeFile

# data.pkl holds names, shapes and storage ids, never weights: a full SDXL checkpoint's is
# under 1 MB. A larger one is not a weights file.
MAX_PICKLE_BYTES = 64 << 20
MAX_OPCODES = 20_000_000

# Bytes per element of the storage classes torch.save names in persistent ids.
STORAGE_ELEMENT_BYTES = {
    "torch.DoubleStorage": 8, "torch.FloatStorage": 4, "torch.HalfStorage": 2, "torch.BFloat16Storage": 2,
    "torch.LongStorage": 8, "torch.IntStorage": 4, "torch.ShortStorage": 2, "torch.CharStorage": 1,
    "torch.ByteStorage": 1, "torch.BoolStorage": 1, "torch.ComplexDoubleStorage": 16,
    "torch.ComplexFloatStorage": 8, "torch.QUInt8Storage": 1, "torch.QInt8Storage": 1,
    "torch.QInt32Storage": 4, "torch.QUInt4x2Storage": 1, "torch.QUInt2x4Storage": 1,
    "torch.UntypedStorage": 1, "torch.storage.UntypedStorage": 1,
    "torch.Float8_e4m3fnStorage": 1, "torch.Float8_e5m2Storage": 1,
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class StorageRef:
    """One persistent id of the pickle: storage `key` of `numel` elements of `element_bytes`."""

    key: str
    numel: int
    element_bytes: int

    @property
    def nbytes(self) -> int:
        return self.numel * self.element_bytes


class _Opaque:
    """A value the scan does not model (anything but strings, numbers, globals, tuples, lists)."""


_OPAQUE = _Opaque()


class _Global(str):
    """`module.name` pushed by GLOBAL / STACK_GLOBAL."""


def _text(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def storage_refs(stream, path: str) -> list[StorageRef]:
    """The persistent ids of the one pickle at `stream`'s position, read without building objects."""
    return scan(stream, path)[0]


def scan(stream, path: str) -> tuple[list[StorageRef], object]:
    """(persistent ids, modelled result) of the one pickle at `stream`'s position.

    A small model of the unpickler's stack: strings, numbers, globals, tuples and lists are
    kept, everything else is opaque; the memo is followed. No object is built and nothing
    is imported. The stream is left after the STOP.
    """
    stack: list = []
    marks: list[int] = []
    memo: dict = {}
    refs: list[StorageRef] = []
    mark = pickletools.markobject
    count = 0
    try:
        for op, arg, _pos in pickletools.genops(stream):
            count += 1
            if count > MAX_OPCODES:
                raise BadVaeFile(f"{path}: refused: the pickle has more than {MAX_OPCODES:,} instructions")
            name = op.name
            if name == "MARK":
                marks.append(len(stack))
                continue
            if name == "STOP":
                return refs, (stack[-1] if stack else _OPAQUE)
            before = op.stack_before
            if mark in before:
                start = marks.pop() if marks else 0
                items = stack[start:]
                del stack[start:]
                below = before.index(mark)
                popped = stack[len(stack) - below:] if below else []
                if below:
                    del stack[-below:]
            else:
                items = None
                n = len(before)
                popped = stack[len(stack) - n:] if n else []
                if n:
                    del stack[-n:]
            if name in ("TUPLE", "LIST"):
                stack.append(tuple(items) if name == "TUPLE" else list(items))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                stack.append(tuple(popped))
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "APPEND":
                if isinstance(popped[0], list):
                    popped[0].append(popped[1])
                stack.append(popped[0])
            elif name == "APPENDS":
                if popped and isinstance(popped[0], list):
                    popped[0].extend(items)
                stack.append(popped[0] if popped else _OPAQUE)
            elif name in ("GLOBAL",):
                stack.append(_Global(str(arg).replace(" ", ".", 1)))
            elif name == "STACK_GLOBAL":
                stack.append(_Global(f"{_text(popped[0])}.{_text(popped[1])}"))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):  # stack unchanged
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = popped[0]
                stack.append(popped[0])
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg, _OPAQUE))
            elif name in ("BINPERSID", "PERSID"):
                pid = popped[0] if name == "BINPERSID" else arg
                refs.append(_storage_ref(pid, path))
                stack.append(_OPAQUE)
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
            elif len(op.stack_after) == 1 and not before and arg is not None and isinstance(arg, (str, bytes, int, float)):
                stack.append(arg)  # strings and numbers
            elif name == "DUP":
                stack.extend([popped[0], popped[0]])
            else:
                stack.extend([_OPAQUE] * len(op.stack_after))
    except BadVaeFile:
        raise
    except (ValueError, EOFError, IndexError, struct.error, OverflowError, UnicodeDecodeError) as err:
        raise BadVaeFile(f"{path}: corrupt pickle ({' '.join(str(err).split())[:160]})") from None
    raise BadVaeFile(f"{path}: truncated pickle (no STOP)")


def _storage_ref(pid, path: str) -> StorageRef:
    """('storage', torch.FloatStorage, key, location, numel[, view]) → StorageRef, or refuse."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and _text(pid[0]) == "storage"):
        raise UnsafeFile(f"{path}: refused: the pickle refers to an object outside the file that is not a tensor storage")
    _, cls, key, _location, numel = pid[:5]
    size = STORAGE_ELEMENT_BYTES.get(cls) if isinstance(cls, _Global) else None
    if size is None:
        raise BadVaeFile(f"{path}: refused: unknown storage type {str(cls)[:80]!r}")
    key = _text(key)
    if not isinstance(key, str) or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise BadVaeFile(f"{path}: refused: a malformed tensor storage reference")
    return StorageRef(key, numel, size)


# --- zip files ---------------------------------------------------------------------------------


def check_zip(path: str) -> None:
    """Refuse a zip `.pt` whose records or storages claim more than the file holds."""
    size = os.path.getsize(path)
    try:
        with open(path, "rb") as raw, zipfile.ZipFile(raw) as z:
            infos = z.infolist()
            _check_records(path, raw, infos, size)
            pkl = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
            if len(pkl) != 1:
                raise BadVaeFile(f"{path}: a zip archive, but not a PyTorch file")
            info = pkl[0]
            if info.file_size > MAX_PICKLE_BYTES:
                raise BadVaeFile(f"{path}: refused: its data.pkl is {info.file_size:,} bytes (a weights file's is under 64 MiB)")
            prefix = info.filename[: -len("data.pkl")]
            records = {i.filename: i.file_size for i in infos}
            for ref in storage_refs(io.BytesIO(z.read(info)), path):
                have = records.get(f"{prefix}data/{ref.key}")
                if have is None:
                    raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file (storage {ref.key[:40]!r} is missing)")
                if ref.nbytes > have:
                    raise BadVaeFile(
                        f"{path}: refused: a tensor storage claims {ref.nbytes:,} bytes, its record holds {have:,}"
                    )
    except zipfile.BadZipFile as err:
        raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file ({err})") from None
    except (zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError, EOFError, struct.error) as err:
        raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file ({' '.join(str(err).split())[:160]})") from None


def _check_records(path: str, raw, infos, size: int) -> None:
    total = 0
    for info in infos:
        if info.flag_bits & 0x1:
            raise BadVaeFile(f"{path}: refused: encrypted zip record {info.filename[:60]!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise BadVaeFile(
                f"{path}: refused: zip record {info.filename[:60]!r} is compressed; torch.save never compresses, "
                "and a compressed record can inflate without bound"
            )
        # The local header is what the zip reader inside torch (miniz) reads: check it says the same.
        raw.seek(info.header_offset)
        local = raw.read(30)
        if len(local) < 30 or local[:4] != b"PK\x03\x04" or struct.unpack("<H", local[8:10])[0] != zipfile.ZIP_STORED:
            raise BadVaeFile(f"{path}: refused: zip record {info.filename[:60]!r} has an inconsistent local header")
        if info.compress_size != info.file_size or info.header_offset + 30 + info.file_size > size:
            raise BadVaeFile(f"{path}: refused: zip record {info.filename[:60]!r} claims more bytes than the file has")
        total += info.file_size
    if total > size:
        raise BadVaeFile(f"{path}: refused: its zip records claim {total:,} bytes in a {size:,}-byte file (overlapping records)")


# --- legacy (pre-1.6) files ----------------------------------------------------------------------


def check_legacy(path: str) -> None:
    """Refuse a legacy torch.save file whose storages claim more than the rest of the file.

    Layout: five pickles (magic number, protocol, system info, the object, the storage keys),
    then each storage as a little-endian int64 element count followed by its bytes. A file
    that does not start with torch's magic number is left to torch.load to name.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        try:
            magic = scan(mm, path)[1]
        except BadVaeFile:
            return
        if magic != _LEGACY_MAGIC:
            return
        for _ in range(2):  # protocol version, system info
            scan(mm, path)
        refs = storage_refs(mm, path)
        keys = scan(mm, path)[1]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file (no list of storages)")
        claimed: dict[str, StorageRef] = {}
        for ref in refs:
            if ref.key not in claimed or ref.nbytes > claimed[ref.key].nbytes:
                claimed[ref.key] = ref
        for key in keys:
            ref = claimed.get(key)
            header = mm.read(8)
            if ref is None or len(header) < 8:
                raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file (storage {key[:40]!r})")
            numel = struct.unpack("<q", header)[0]
            left = size - mm.tell()
            nbytes = numel * ref.element_bytes
            if numel < 0 or nbytes > left:
                raise BadVaeFile(
                    f"{path}: truncated or corrupt PyTorch file (a tensor storage of {nbytes:,} bytes, "
                    f"{left:,} left in the file)"
                )
            if ref.nbytes > nbytes:
                raise BadVaeFile(f"{path}: refused: a tensor storage claims {ref.nbytes:,} bytes, it holds {nbytes:,}")
            mm.seek(nbytes, os.SEEK_CUR)
        missing = set(claimed) - set(keys)
        if missing:
            raise BadVaeFile(f"{path}: truncated or corrupt PyTorch file (storage {sorted(missing)[0][:40]!r} is missing)")
