"""What a download may be called and what its first bytes must look like.

Pure functions, no network: a file name (from the catalog, `--filename`, the URL or a
`Content-Disposition` header) must be a plain weights-file name that stays in the target folder;
a response must not be a web page, JSON, a Git LFS pointer, or bytes of another format.
"""

from __future__ import annotations

import re
import shutil
from email.message import Message
from email.utils import collapse_rfc2231_value
from urllib.parse import unquote, urlsplit

from vae_lab.errors import DownloadError, DownloadRefused, NotEnoughSpace
from vae_lab.files.folders import PICKLE_EXTENSIONS, WEIGHT_EXTENSIONS as ALLOWED_EXTENSIONS

# Names Windows reserves for devices, whatever the extension ("nul.safetensors" is the NUL device).
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
MAX_NAME_BYTES = 255


def check_filename(name: str) -> str:
    """The name itself if it is a plain weights-file name; else DownloadError."""
    shown = repr(name)
    if not name or name != name.strip() or "\x00" in name:
        raise DownloadError(f"refusing the file name {shown}: empty or odd characters")
    if "/" in name or "\\" in name or name in (".", "..") or re.match(r"^[A-Za-z]:", name):
        raise DownloadError(f"refusing the file name {shown}: it would leave the target folder")
    if name.startswith("."):
        raise DownloadError(f"refusing the file name {shown}: hidden files are not listed by the WebUI")
    if any(c in name for c in '<>:"|?*') or any(ord(c) < 32 for c in name):
        raise DownloadError(f"refusing the file name {shown}: it contains characters that are not allowed")
    if name.split(".")[0].lower() in _WINDOWS_DEVICES or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise DownloadError(f"refusing the file name {shown}: not a usable file name on every system")
    if not name.lower().endswith(ALLOWED_EXTENSIONS):
        raise DownloadError(
            f"refusing the file name {shown}: a VAE file must end in {', '.join(ALLOWED_EXTENSIONS)}"
        )
    return name


def filename_from_content_disposition(value: str | None) -> str | None:
    """The file name in a Content-Disposition header (RFC 6266: `filename*` in RFC 2231/5987 form
    preferred over `filename`), as sent: `check_filename` judges it afterwards (so "../x" is
    refused, not silently flattened). Parsed by the standard library's `email.message`."""
    if not value:
        return None
    msg = Message()
    try:
        msg["Content-Disposition"] = value
        params = msg.get_params(header="content-disposition") or []
        names = [v for k, v in params if k.lower() == "filename"]
        starred = [v for v in names if isinstance(v, tuple)]  # filename*=charset''percent-encoded
        if starred:
            return collapse_rfc2231_value(starred[-1], errors="strict") or None
    except (ValueError, TypeError, IndexError, LookupError, UnicodeError):  # a header the parser cannot take
        return None
    plain = [v for v in names if isinstance(v, str)]
    return plain[0] or None if plain else None


def filename_from_url(url: str) -> str | None:
    path = urlsplit(url).path
    name = unquote(path.rsplit("/", 1)[-1]) if path else ""
    return name or None


def show_url(url: str) -> str:
    """A URL safe to print: no query (signed URLs and `?token=` live there), no credentials."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host += f":{p.port}"
    except ValueError:  # a malformed host or port: show no netloc rather than fail
        return url.split("?")[0].split("@")[-1]
    return f"{p.scheme}://{host}{p.path}"


def is_url(text: str) -> bool:
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text.strip()))


def check_url(url: str) -> str:
    try:
        p = urlsplit(url)
        host, _ = p.hostname, p.port  # both raise ValueError on a malformed host or port
    except ValueError as err:
        raise DownloadError(f"not a valid URL ({err}): {show_url(url)}") from None
    if p.scheme.lower() not in ("http", "https"):
        raise DownloadError(f"refusing {p.scheme}:// URLs: only http:// and https:// downloads are supported")
    if not host:
        raise DownloadError(f"the URL {show_url(url)!r} has no host")
    return url


# --------------------------------------------------------------------------- payload checks


def check_payload_start(head: bytes, filename: str, content_type: str = "") -> None:
    """Refuse a response that is a web page, JSON, a Git LFS pointer or not the announced format."""
    stripped = head.lstrip()[:64].lower()
    if stripped.startswith(b"version https://git-lfs"):
        raise DownloadRefused("the server sent a Git LFS pointer, not the file: use the /resolve/ link")
    if stripped.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or content_type == "text/html":
        raise DownloadRefused(
            "the server sent a web page (HTML), not a weights file: a login or error page, "
            "or a page link instead of a download link (on Hugging Face use /resolve/, not /blob/)"
        )
    if content_type in ("application/json", "text/json") or stripped.startswith((b"{\"", b"[")):
        if not filename.lower().endswith(".safetensors") or not _looks_like_safetensors(head):
            # Described, never echoed: a refused body may be a page crafted to be shown to the user.
            raise DownloadRefused(f"the server sent JSON ({content_type or 'no content type'}), not a weights file")
    lower = filename.lower()
    if lower.endswith(".safetensors"):
        if not _looks_like_safetensors(head):  # `head` is under 9 bytes only when that is the whole file
            raise DownloadRefused("the server's bytes are not a safetensors file (bad header)")
    elif lower.endswith(PICKLE_EXTENSIONS):
        # torch.save: a zip archive; legacy: a pickle (protocol 2+ starts with 0x80).
        if head and not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise DownloadRefused("the server's bytes are not a PyTorch checkpoint (neither zip nor pickle)")


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= 100_000_000 and head[8:9] == b"{"


# --------------------------------------------------------------------------- room on disk

SPACE_MARGIN = 64 << 20  # keep this much free beyond the file: a full disk breaks more than downloads


def check_free_space(folder, needed: int, filename: str) -> None:
    """Refuse before writing when the file system holding `folder` has less than `needed` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell (some network shares): the write itself will say
    if needed + SPACE_MARGIN > free:
        raise NotEnoughSpace(
            f"not enough free space for {filename} in {folder}: it needs {format_size(needed)}, "
            f"{format_size(free)} is free; nothing was written"
        )


def format_size(n: int | None) -> str:
    """Bytes for people: "335 MB", "1.2 kB" (decimal units, as file managers and browsers show)."""
    if n is None:
        return "an unknown size"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{n} bytes" if n != 1 else "1 byte"
