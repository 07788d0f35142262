"""A response body as the bytes of the file: decoded when a server compresses anyway, plus the
header readings a resume depends on (Content-Range, the If-Range validator)."""

from __future__ import annotations

import re
import zlib

from vae_lab.download.http import Transient
from vae_lab.errors import DownloadRefused

CHUNK = 4 << 20


class Body:
    """The response body as decoded blocks. `Accept-Encoding: identity` is asked for; a server that
    compresses anyway (gzip/deflate) is decoded here, in bounded steps (a gzip bomb is cut off by
    the size limit like any oversized body, never inflated in memory at once)."""

    DECODABLE = ("gzip", "x-gzip", "deflate")

    def __init__(self, resp):
        self.encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
        if self.encoding not in ("", "identity") + self.DECODABLE:
            raise DownloadRefused(
                f"the server compressed the file ({self.encoding}) although VAE Lab asked for none, "
                "in a form it cannot decode"
            )
        fp = getattr(resp.raw, "_fp", None)
        if fp is not None and hasattr(fp, "read1"):
            # http.client's read1: one system call per block, whatever has arrived (up to CHUNK).
            # Progress and cancellation stay responsive on slow links and no received byte is lost.
            self._raw = lambda: fp.read1(CHUNK)
        else:
            self._raw = lambda: resp.raw.read(CHUNK, decode_content=False)
        self._inflate = zlib.decompressobj(47) if self.encoding in self.DECODABLE else None  # 47: gzip or zlib
        self._tail = b""

    @property
    def encoded(self) -> bool:
        return self._inflate is not None

    def read(self) -> bytes:
        if self._inflate is None:
            return self._raw()
        while True:
            data = self._tail or self._raw()
            if not data:
                if not self._inflate.eof:
                    raise Transient("the compressed response ended early")
                return b""
            try:
                out = self._inflate.decompress(data, CHUNK)
            except zlib.error:
                raise DownloadRefused(f"the server's {self.encoding} data is corrupt") from None
            self._tail = self._inflate.unconsumed_tail
            if out:
                return out
            if self._inflate.eof:
                return b""


def range_start(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def range_total(value: str | None) -> int | None:
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def validator_of(headers) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified (RFC 9110 §13.1.5)."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified") or None
