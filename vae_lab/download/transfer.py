"""Resumable, verified, atomic downloads of VAE files into `models/VAE`.

    result = download("sdxl-vae-fp16-fix")                      # a catalog id or name
    result = download("https://huggingface.co/…/resolve/…/x.safetensors", dest_dir, sha256=hex)

How a download stays safe:

* It streams into `.<name>.vaelab-part` in the target folder: a name the WebUI never lists
  (A1111 lists `*.ckpt`, `*.pt`, `*.safetensors`), on the same file system as the result.
* The SHA-256 is computed while the bytes are written; nothing is read twice. After a dropped
  connection it resumes with `Range: bytes=<partial size>-` (and `If-Range`, so a file that
  changed on the server restarts instead of being spliced). After a restart of the process
  the hash state is rebuilt by hashing the existing partial once (hash states cannot be saved
  portably), then the download resumes where it stopped.
* Transient failures (dropped connections, timeouts, 408/425/429/5xx) are retried with
  exponential backoff (honouring `Retry-After`). Refusals (bad URL, 4xx, HTML or JSON instead
  of weights, wrong size, checksum mismatch, unsafe file name, a different existing file)
  delete the partial and raise `DownloadError` with one clear line.
* Only a complete file whose size and SHA-256 match what is known is moved into place, with a
  hard link (which never overwrites) or a rename, after an fsync.
* A lock file next to the partial serialises two downloads of the same file: the second waits,
  then finds the finished file and reports it as already there.
* A cancelled or failed transfer keeps only the hidden partial, so the next call resumes it.
* Tokens go only to their own service's hosts, per redirect hop (`vae_lab.download.tokens`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

from vae_lab.identity import catalog
from vae_lab.identity.catalog import file_sha256, remember_sha256
from vae_lab.download.checks import (  # noqa: F401  (re-exported: the download API)
    ALLOWED_EXTENSIONS,
    check_filename,
    check_payload_start,
    check_url,
    filename_from_content_disposition,
    filename_from_url,
    is_url,
    show_url,
)
from vae_lab.paths import EXTENSION_ROOT
from vae_lab.errors import BadVaeFile, DownloadError, VaeLabError
from vae_lab.download.filelock import FileLock, LockCancelled
from vae_lab.download.tokens import WHERE_TO_SET, TokenPolicy

CHUNK = 4 << 20
PART_SUFFIX = ".vaelab-part"
META_SUFFIX = ".vaelab-meta"
LOCK_SUFFIX = ".vaelab-lock"
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
# With no size known from the catalog, the caller or the server, stop here: the largest VAE-like
# file known (OpenAI's Consistency Decoder) is 2.5 GB, a kl-f8 VAE 335 MB.
MAX_UNKNOWN_SIZE = 8 << 30
WEBUI_LISTS = (".safetensors", ".ckpt", ".pt")  # A1111's VAE globs; .pth/.bin are saved but not listed
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, "int | None"], None]


class DownloadCancelled(DownloadError):
    """The caller cancelled; the hidden partial file is kept so a later call resumes it."""


class DownloadInterrupted(DownloadError):
    """Transient failures outlasted the retries; the hidden partial is kept so a later call resumes it."""


class _Transient(Exception):
    """A failure worth retrying (the partial stays)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class DownloadResult:
    path: str
    filename: str
    sha256: str                     # of the bytes downloaded (for a converted pickle: of the pickle)
    size: int
    url: str | None                 # the source URL (query stripped), None when already present
    verified: bool                  # the SHA-256 matched an expected one
    expected_from: str | None       # where the expected SHA-256 came from: "catalog", "argument", "server"
    already_present: bool = False
    resumed_from: int = 0           # bytes already on disk when the transfer (re)started
    attempts: int = 1
    seconds: float = 0.0
    entry: Any = None               # the catalog entry the bytes are (by SHA-256), if any
    info: Any = None                # vae_lab.identity.identify.VaeInfo, when identification ran
    info_error: str | None = None
    converted_from: str | None = None  # the pickle this safetensors file was converted from (then removed)
    warnings: list[str] = field(default_factory=list)

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        if info is not None and not isinstance(info, dict):
            info = info.to_dict() if hasattr(info, "to_dict") else dict(vars(info))
        return {
            "path": self.path, "filename": self.filename, "sha256": self.sha256,
            "short_hash": self.short_hash, "size": self.size, "url": self.url, "verified": self.verified,
            "expected_from": self.expected_from, "already_present": self.already_present,
            "resumed_from": self.resumed_from, "attempts": self.attempts, "seconds": round(self.seconds, 3),
            "known": self.entry.id if self.entry else None,
            "known_name": self.entry.name if self.entry else None,
            "family": (self.entry.family if self.entry else None) or _get(info, "family"),
            "info": info, "info_error": self.info_error, "converted_from": self.converted_from,
            "warnings": list(self.warnings),
        }


def _get(obj, key):
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


# --------------------------------------------------------------------------- places


def default_vae_dir() -> Path:
    """`$VAE_LAB_VAE_DIR`; else the WebUI's `models/VAE` when installed as an extension; else ./models/VAE."""
    env = os.environ.get("VAE_LAB_VAE_DIR")
    if env:
        return Path(env).expanduser()
    # <webui>/extensions/<this extension>/vae_lab/…
    if EXTENSION_ROOT.parent.name == "extensions":
        webui = EXTENSION_ROOT.parent.parent
        if (webui / "models").is_dir():
            return webui / "models" / "VAE"
    return Path.cwd() / "models" / "VAE"


def partial_paths(dest: Path, name: str) -> tuple[Path, Path, Path]:
    """(partial, meta, lock) paths: hidden names the WebUI's VAE list ignores."""
    return dest / f".{name}{PART_SUFFIX}", dest / f".{name}{META_SUFFIX}", dest / f".{name}{LOCK_SUFFIX}"


# --------------------------------------------------------------------------- the transfer


def _cancel_fn(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return cancel


class _Transfer:
    """One URL into one folder. Holds the partial file, the running hash and the lock."""

    def __init__(self, url, dest: Path, *, filename, expected_sha, expected_from, expected_size, policy,
                 session, progress, cancelled, console, retries, backoff, timeout, lock_wait, fsync,
                 host_policy=None):
        self.url, self.dest = url, dest
        self.filename = filename
        self.expected_sha, self.expected_from, self.expected_size = expected_sha, expected_from, expected_size
        self.policy, self.session = policy, session
        self.host_policy = host_policy  # app-hostile: which hosts every hop may reach (download/policy.py)
        self.progress, self.cancelled, self.console = progress, cancelled, console
        self.retries, self.backoff, self.timeout, self.lock_wait, self.fsync = retries, backoff, timeout, lock_wait, fsync
        self.lock: FileLock | None = None
        self.part = self.meta = None
        self.hasher = hashlib.sha256()
        self.done = 0
        self.total: int | None = None
        self.validator: str | None = None
        self.resumed_from = 0
        self.attempts = 0
        self.bar = None
        self._last_progress = 0.0

    # ---- claim: lock, existing file, partial state
    def claim(self, name: str) -> DownloadResult | None:
        self.filename = check_filename(name)
        self.part, self.meta, lock_path = partial_paths(self.dest, self.filename)
        self.lock = FileLock(lock_path, self.cancelled, self.lock_wait, what=self.filename)
        try:
            self.lock.acquire()
        except LockCancelled as err:
            raise DownloadCancelled(str(err)) from None
        final = self.dest / self.filename
        if final.exists() and self.expected_sha:
            return self._existing(final)
        if self.part.exists():
            self._rehash_partial()
        return None

    def _existing(self, final: Path) -> DownloadResult:
        digest = file_sha256(final)
        if digest != self.expected_sha:
            raise DownloadError(
                f"a different file named {self.filename} already exists in {self.dest} "
                f"(SHA-256 {digest[:10]}…, expected {self.expected_sha[:10]}…); nothing was changed — "
                "choose another name with --filename"
            )
        self._discard()  # a partial left by a run killed after its rename (we hold the lock)
        return DownloadResult(
            path=str(final), filename=self.filename, sha256=digest, size=final.stat().st_size, url=None,
            verified=True, expected_from=self.expected_from, already_present=True, attempts=0,
        )

    def _rehash_partial(self) -> None:
        """After a restart: hash the partial once so the running hash covers its bytes."""
        try:
            meta = json.loads(self.meta.read_text()) if self.meta.exists() else {}
        except (OSError, ValueError):
            meta = {}
        size = self.part.stat().st_size
        other_source = meta.get("source") not in (None, _url_key(self.url))
        other_file = self.expected_sha and meta.get("sha256") not in (None, self.expected_sha)
        if other_source or other_file:
            size = 0  # a partial of something else: start over
        h = hashlib.sha256()
        with open(self.part, "rb") as f:
            head = f.read(64)
            if size:
                try:
                    check_payload_start(head, self.filename)
                except DownloadError:
                    size = 0
            f.seek(0)
            left = size
            while left:
                b = f.read(min(CHUNK, left))
                if not b:
                    break
                h.update(b)
                left -= len(b)
        if size != self.part.stat().st_size:
            with open(self.part, "r+b") as f:
                f.truncate(size)
            h = hashlib.sha256() if size == 0 else h
        self.hasher, self.done = h, size
        self.validator = meta.get("validator") if size else None
        self.total = meta.get("total") if size else None

    # ---- HTTP
    def open(self, offset: int):
        import requests

        url = self.url
        base = {"Accept-Encoding": "identity", "User-Agent": "vae-lab (A1111 extension)"}
        if offset:
            base["Range"] = f"bytes={offset}-"
            if self.validator:
                base["If-Range"] = self.validator
        for _ in range(MAX_REDIRECTS + 1):
            if self.host_policy is not None:  # app-hostile: every hop, not just the first URL
                self.host_policy.check_url(url)
            headers = dict(base)
            headers.update(self.policy.header_for(url))
            try:
                resp = self.session.get(
                    url, headers=headers, stream=True, allow_redirects=False, timeout=self.timeout,
                    verify=True, auth=_no_netrc,
                )
            except (requests.ConnectionError, requests.Timeout) as err:
                raise _Transient(f"cannot reach {urlsplit(url).hostname}: {_reason(err)}") from None
            except requests.RequestException as err:
                raise DownloadError(f"cannot download {show_url(url)}: {_short(err)}") from None
            self._learn_expected(resp)
            code = resp.status_code
            if code in REDIRECT_STATUS:
                location = resp.headers.get("Location")
                resp.close()
                if not location:
                    raise DownloadError(f"{show_url(url)} redirected without a Location")
                nxt = urljoin(url, location)
                if urlsplit(nxt).scheme not in ("http", "https"):
                    raise DownloadError(f"{show_url(url)} redirected to a non-http(s) URL")
                if urlsplit(url).scheme == "https" and urlsplit(nxt).scheme != "https":
                    raise DownloadError(f"{show_url(url)} redirected from https to plain http; refusing")
                url = nxt
                continue
            if code in (200, 206, 416):
                return resp
            resp.close()
            self._http_error(url, code, resp)
        raise DownloadError(f"{show_url(self.url)}: more than {MAX_REDIRECTS} redirects")

    def _learn_expected(self, resp) -> None:
        # Hugging Face announces an LFS file's SHA-256 and size on the resolve response.
        linked = (resp.headers.get("X-Linked-Etag") or "").strip().strip('"').lower()
        if linked.startswith("w/"):
            linked = linked[2:].strip('"')
        if _HEX64.match(linked) and not self.expected_sha:
            self.expected_sha, self.expected_from = linked, "server"
        elif _HEX64.match(linked) and linked != self.expected_sha:  # refuse now, not after 335 MB
            raise DownloadError(
                f"{urlsplit(resp.url or self.url).hostname} serves a different file (SHA-256 {linked[:16]}…) than "
                f"expected ({self.expected_sha[:16]}…, {self.expected_from}); nothing was downloaded"
            )
        linked_size = resp.headers.get("X-Linked-Size", "")
        if linked_size.isdigit() and self.expected_size is None:
            self.expected_size = int(linked_size)

    def _http_error(self, url: str, code: int, resp) -> None:
        host = urlsplit(url).hostname
        if code in TRANSIENT_STATUS:
            retry_after = resp.headers.get("Retry-After", "")
            raise _Transient(f"{host} answered HTTP {code}", float(retry_after) if retry_after.isdigit() else None)
        if code in (401, 403):
            service = self.policy.service_for(url)
            sent = bool(self.policy.token_for(url))
            if service and sent:
                hint = ("the token was refused: check it is valid and has read access"
                        + (", and accept the model's terms on its page" if service == "hf" else ""))
            elif service:
                hint = f"this file needs an access token — {WHERE_TO_SET[service]}"
            else:
                hint = "this file needs a login that VAE Lab cannot provide for this host"
            raise DownloadError(f"{host} refused the download (HTTP {code}): {hint}")
        if code == 404:
            raise DownloadError(f"not found (HTTP 404): {show_url(url)}")
        # app-hostile: the standard phrase, never the server's own reason text (it is not ours to echo)
        raise DownloadError(f"{host} refused the download: HTTP {code} {_status_phrase(code)}".rstrip())

    # ---- one attempt
    def receive(self, resp, offset: int) -> None:
        """Stream `resp` into the partial, starting at `offset` (what is on disk)."""
        code = resp.status_code
        headers = resp.headers
        if code == 416:
            total = _range_total(headers.get("Content-Range"))
            if offset and total == offset:
                self.total = total
                return  # the partial is already complete
            self._restart()
            raise _Transient("the server refused the resume range; starting over")
        content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        if code == 206:
            start, total = _range_start(headers.get("Content-Range")), _range_total(headers.get("Content-Range"))
            if start != offset:
                raise _Transient(f"the server resumed at byte {start}, not {offset}")
        else:
            if offset:
                self._restart()  # no Range support, or the file changed (If-Range): start over
            start = 0
            cl = headers.get("Content-Length", "")
            total = int(cl) if cl.isdigit() else None
        if total is not None and self.expected_size is not None and total != self.expected_size:
            raise DownloadError(
                f"the server announces {total:,} bytes but {self.filename} should be {self.expected_size:,}"
            )
        self.total = total if total is not None else self.expected_size
        validator = headers.get("ETag")
        if not validator or validator.startswith("W/"):
            validator = headers.get("Last-Modified")
        self.validator = validator
        self._write_meta()
        self._stream(resp, start, content_type)

    def _stream(self, resp, start: int, content_type: str) -> None:
        mode = "r+b" if start else "wb"
        if start == 0:
            self.hasher, self.done = hashlib.sha256(), 0
        limit = self.expected_size if self.expected_size is not None else self.total
        if limit is None:
            limit = MAX_UNKNOWN_SIZE
        read = _reader(resp)
        sniffed = start > 0
        self._bar_open()
        with open(self.part, mode) as f:
            f.seek(start)
            f.truncate()
            while True:
                if self.cancelled():
                    raise DownloadCancelled(f"download of {self.filename} cancelled; the partial file is kept for resuming")
                try:
                    chunk = read()
                except Exception as err:  # urllib3 ProtocolError / IncompleteRead / socket errors
                    raise _Transient(f"connection dropped at {self.done:,} bytes: {_short(err)}") from None
                if not sniffed:
                    while chunk and len(chunk) < 64:  # judge the format on enough bytes
                        try:
                            more = read()
                        except Exception as err:
                            raise _Transient(f"connection dropped at the start: {_short(err)}") from None
                        if not more:
                            break
                        chunk = bytes(chunk) + more
                    if not chunk:  # nothing at all: a drop if a size was announced, else an empty file
                        if self.total:
                            raise _Transient("connection closed before the first byte")
                        raise DownloadError(f"the server sent an empty file for {self.filename}")
                    check_payload_start(chunk[:256], self.filename, content_type)
                    sniffed = True
                if not chunk:
                    break
                if limit is not None and self.done + len(chunk) > limit:
                    raise DownloadError(
                        f"the server sent more than the expected {limit:,} bytes for {self.filename}"
                    )
                f.write(chunk)
                self.hasher.update(chunk)
                self.done += len(chunk)
                self._report()
            if self.fsync:
                f.flush()
                os.fsync(f.fileno())
        if self.total is not None and self.done < self.total:
            raise _Transient(f"connection closed at {self.done:,} of {self.total:,} bytes")

    def _restart(self) -> None:
        if self.part is not None and self.part.exists():
            with open(self.part, "r+b") as f:
                f.truncate(0)
        self.hasher, self.done, self.validator = hashlib.sha256(), 0, None

    def _write_meta(self) -> None:
        # The URL itself is not stored: signed URLs and ?token= parameters must not land on disk.
        data = {"source": _url_key(self.url), "validator": self.validator, "total": self.total,
                "sha256": self.expected_sha}
        tmp = self.meta.with_name(self.meta.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.meta)

    # ---- progress
    def _bar_open(self) -> None:
        if self.console and self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.done, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=self.filename, file=sys.stderr, dynamic_ncols=True, leave=False)
        elif self.bar is not None:
            self.bar.reset(total=self.total)
            self.bar.update(self.done)
        self._report(force=True)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_progress < 0.1 and (self.total is None or self.done < self.total):
            return
        self._last_progress = now
        if self.bar is not None:
            self.bar.n = self.done
            self.bar.refresh()
        if self.progress is not None:
            self.progress(self.done, self.total)

    # ---- the whole thing
    def run(self) -> DownloadResult:
        t0 = time.monotonic()
        try:
            if not self.filename:
                # A URL that ends in a weights-file name (Hugging Face /resolve/ links) names the
                # file before any request, so the lock is taken first; otherwise (Civitai API links)
                # the name comes from Content-Disposition.
                guess = filename_from_url(self.url)
                try:
                    self.filename = check_filename(guess) if guess else None
                except DownloadError:
                    self.filename = None
            if self.filename:
                early = self.claim(self.filename)
                if early:
                    return early
            failures = 0
            while True:
                if self.cancelled():
                    raise DownloadCancelled(f"download of {self.filename or show_url(self.url)} cancelled")
                offset = self.done
                self.attempts += 1
                try:
                    resp = self.open(offset)
                    try:
                        if self.part is None:
                            name = filename_from_content_disposition(resp.headers.get("Content-Disposition"))
                            name = name or filename_from_url(self.url)
                            if not name:
                                raise DownloadError(
                                    f"{show_url(self.url)} names no file; give one with --filename"
                                )
                            early = self.claim(name)
                            if early:
                                return early
                            if self.done:
                                continue  # a partial from an earlier run: ask again with Range
                        elif self.expected_sha and self.expected_from == "server" and (self.dest / self.filename).exists():
                            return self._existing(self.dest / self.filename)  # the hash came with the headers
                        if self.resumed_from == 0 and offset:
                            self.resumed_from = offset
                        self.receive(resp, offset)
                    finally:
                        resp.close()
                    break
                except _Transient as err:
                    failures += 1
                    if failures > self.retries:
                        raise DownloadInterrupted(
                            f"download of {self.filename or show_url(self.url)} failed after {self.retries} "
                            f"retries: {err}; run it again to resume"
                        ) from None
                    delay = err.retry_after if err.retry_after is not None else self.backoff * 2 ** (failures - 1)
                    delay = min(delay, 60.0) * (1 + 0.1 * random.random())
                    end = time.monotonic() + delay
                    while time.monotonic() < end:
                        if self.cancelled():
                            raise DownloadCancelled(f"download of {self.filename} cancelled; the partial file is kept")
                        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            return self._finish(t0)
        except (DownloadCancelled, DownloadInterrupted):
            raise  # keep the partial: the next call resumes it
        except OSError as err:  # disk full, permissions: say so in one line, keep what was written
            where = err.filename or self.part or self.dest
            raise DownloadInterrupted(f"cannot use {where}: {err.strerror or err}") from None
        except VaeLabError:
            if self.lock is not None and self.lock.fd is not None:  # never touch another process's partial
                self._discard()
            raise
        finally:
            if self.bar is not None:
                self.bar.close()
            if self.lock is not None:
                self.lock.release()

    def _finish(self, t0: float) -> DownloadResult:
        size = self.part.stat().st_size
        if size != self.done:
            raise DownloadError(f"{self.filename}: the partial file changed while downloading")
        if self.expected_size is not None and size != self.expected_size:
            raise DownloadError(f"{self.filename} is {size:,} bytes, expected {self.expected_size:,}; deleted")
        digest = self.hasher.hexdigest()
        if self.expected_sha and digest != self.expected_sha:
            raise DownloadError(
                f"checksum mismatch for {self.filename}: got SHA-256 {digest[:16]}…, expected "
                f"{self.expected_sha[:16]}… ({self.expected_from}); the download was deleted"
            )
        final = self.dest / self.filename
        already = False
        try:
            os.link(self.part, final)  # never overwrites
            os.unlink(self.part)
        except FileExistsError:
            already = True
        except OSError:  # no hard links here (FAT, some network shares)
            if final.exists():
                already = True
            else:
                os.replace(self.part, final)
        if already:
            existing = file_sha256(final)
            if existing != digest:
                raise DownloadError(
                    f"a different file named {self.filename} already exists in {self.dest} "
                    f"(SHA-256 {existing[:10]}…, downloaded {digest[:10]}…); nothing was changed — "
                    "choose another name with --filename"
                )
            os.unlink(self.part)
        _fsync_dir(self.dest)
        self._remove(self.meta)
        self._report(force=True)
        return DownloadResult(
            path=str(final), filename=self.filename, sha256=digest, size=size, url=show_url(self.url),
            verified=bool(self.expected_sha), expected_from=self.expected_from, already_present=already,
            resumed_from=self.resumed_from, attempts=self.attempts, seconds=time.monotonic() - t0,
        )

    def _discard(self) -> None:
        for p in (self.part, self.meta):
            self._remove(p)

    @staticmethod
    def _remove(p: Path | None) -> None:
        if p is not None:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _reader(resp) -> Callable[[], bytes]:
    """A function returning the next block of the body (empty at the end).

    Fast path: http.client's `read1`, one system call per block returning whatever has arrived
    (up to CHUNK). Progress and cancellation stay responsive on slow links, no byte received
    before a dropped connection is lost, and on loopback it is as fast as `readinto` into a
    reused buffer (measured). Compressed bodies go through urllib3's decoding reads.
    """
    fp = getattr(resp.raw, "_fp", None)
    encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    if fp is not None and hasattr(fp, "read1") and encoding in ("", "identity"):
        return lambda: fp.read1(CHUNK)
    if hasattr(resp.raw, "read1"):
        return lambda: resp.raw.read1(CHUNK, decode_content=True)
    return lambda: resp.raw.read(CHUNK, decode_content=True)


def _status_phrase(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def _no_netrc(request):
    """An auth hook that adds nothing, so requests never pulls ~/.netrc credentials in."""
    return request


def _range_start(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else None


def _range_total(value: str | None) -> int | None:
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


def _reason(err: BaseException) -> str:
    """The cause of a connection failure ("Connection refused", "timed out"), not urllib3's wrapping."""
    m = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", str(err))
    if m:
        return m.group(1).strip().rstrip(".")
    if "timed out" in str(err) or "timeout" in type(err).__name__.lower():
        return "timed out"
    return _short(err)


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    text = re.sub(r"https?://\S+", lambda m: show_url(m.group(0)), text)
    return text[:200]


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- public API


def download(
    source: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    sha256: str | None = None,
    size: int | None = None,
    filename: str | None = None,
    tokens: TokenPolicy | dict | Callable[[], dict] | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    on_done: Callable[[DownloadResult], None] | None = None,
    console: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float | tuple[float, float] = (15.0, 60.0),
    lock_wait: float | None = None,
    identify: bool = True,
    to_safetensors: bool = False,
    fsync: bool = True,
    session=None,
    host_policy=None,
) -> DownloadResult:
    """Download a catalog entry (id or name) or an http(s) URL into `dest_dir` (default `models/VAE`).

    Returns a `DownloadResult` (final path, SHA-256, catalog match, identity) and passes it to
    `on_done`. Raises `DownloadError` (one line) on any refusal or failure; `DownloadCancelled`
    when `cancel` fires. `progress(done_bytes, total_bytes_or_None)` is called as bytes arrive.
    `to_safetensors`: convert a downloaded pickle (.ckpt/.pt/.pth/.bin) to `<stem>.safetensors`
    with `vae_lab.files.convert` (identity kept in its metadata) and remove the pickle.
    `host_policy`: a `vae_lab.download.policy.HostPolicy` checked at every redirect hop and on
    every connection (the app passes one that refuses local and private addresses).
    """
    import requests

    source = (source or "").strip()
    entry = None
    if is_url(source):
        urls = [check_url(source)]
    else:
        entry = catalog.find(source)
        if entry is None:
            raise DownloadError(
                f"{source!r} is neither a catalog name (see: python -m vae_lab catalog) nor an http(s) URL"
            )
        if not entry.downloadable:
            raise DownloadError(
                f"{entry.id} is in the catalog only to recognise the file, not offered for download: {entry.description}"
            )
        urls = list(entry.urls)
    expected_sha, expected_from = None, None
    if sha256:
        expected_sha, expected_from = sha256.strip().lower(), "argument"
        if not _HEX64.match(expected_sha):
            raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if entry is not None and entry.sha256:
        if expected_sha and expected_sha != entry.sha256:
            raise DownloadError(f"the SHA-256 given does not match the catalog's for {entry.id}")
        expected_sha, expected_from = entry.sha256, "catalog"
    expected_size = size if size is not None else (entry.size if entry else None)
    name = filename or (entry.filename if entry else None)
    if name:
        check_filename(name)
    dest = Path(dest_dir) if dest_dir is not None else default_vae_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the target folder {dest}: {err.strerror}") from None
    policy = _policy(tokens)
    own_session = session is None
    session = session or (host_policy.session() if host_policy is not None else requests.Session())
    cancelled = _cancel_fn(cancel)
    errors = []
    try:
        for url in urls:
            transfer = _Transfer(
                url, dest, filename=name, expected_sha=expected_sha, expected_from=expected_from,
                expected_size=expected_size, policy=policy, session=session, progress=progress,
                cancelled=cancelled, console=console, retries=retries, backoff=backoff, timeout=timeout,
                lock_wait=lock_wait, fsync=fsync, host_policy=host_policy,
            )
            try:
                result = transfer.run()
                break
            except DownloadCancelled:
                raise
            except DownloadError as err:
                if "already exists" in str(err) or "still running" in str(err):
                    raise
                errors.append(err)
        else:
            if len(errors) == 1:
                raise errors[0]
            raise DownloadError(f"{errors[0]} (and {len(errors) - 1} mirror(s) failed too: {errors[-1]})")
    finally:
        if own_session:
            session.close()
    result.entry = catalog.known_by_sha256(result.sha256)
    if not result.already_present:
        remember_sha256(result.path, result.sha256)  # identify below then reads no byte twice
    if identify:
        _identify(result)
    if to_safetensors and not result.filename.lower().endswith(".safetensors"):
        _to_safetensors(result, identify)
    _warn_same_basename(result, dest)
    if not result.filename.lower().endswith(WEBUI_LISTS):
        result.warnings.append(
            f"the WebUI lists only {', '.join(WEBUI_LISTS)} files in models/VAE, so it will not show "
            f"{result.filename}; rename it or download with --to-safetensors"
        )
    if on_done is not None:
        on_done(result)
    return result


def _warn_same_basename(result: DownloadResult, dest: Path) -> None:
    """A1111 keys its VAE list by file name: a namesake in a subfolder hides one of the two."""
    for root, dirs, files in os.walk(dest):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if result.filename in files:
            other = os.path.join(root, result.filename)
            if os.path.abspath(other) != os.path.abspath(result.path):
                result.warnings.append(
                    f"{os.path.relpath(other, dest)} has the same file name; the WebUI lists VAEs by name, "
                    "so only one of them can be chosen"
                )


def _policy(tokens) -> TokenPolicy:
    """A TokenPolicy from a policy, a {"hf": …, "civitai": …} mapping (Settings), a callable returning
    one, or None (environment only). Empty settings fall back to HF_TOKEN / CIVITAI_API_TOKEN."""
    if callable(tokens) and not isinstance(tokens, TokenPolicy):
        tokens = tokens()
    if isinstance(tokens, TokenPolicy):
        return tokens
    tokens = tokens or {}
    return TokenPolicy.from_settings(hf=tokens.get("hf"), civitai=tokens.get("civitai"))


def _to_safetensors(result: DownloadResult, identify: bool) -> None:
    """Replace a downloaded pickle by a safetensors copy; the pickle stays if anything goes wrong."""
    from vae_lab.files.convert import convert

    src = Path(result.path)
    dst = src.with_suffix(".safetensors")
    try:
        convert(str(src), str(dst))
    except VaeLabError as err:
        result.warnings.append(f"not converted to safetensors: {err}")
        return
    result.converted_from = str(src)
    result.path, result.filename = str(dst), dst.name
    if not result.already_present:
        os.unlink(src)  # two files of the same VAE would both show up in the WebUI's list
    else:
        result.warnings.append(f"{src.name} was already there and is kept next to {dst.name}")
    if identify:
        _identify(result)


def _identify(result: DownloadResult) -> None:
    """Attach the identity (weights id, family); remove a fresh file that is not a VAE at all."""
    try:
        from vae_lab.identity import identify as _id
    except ImportError:
        result.info_error = "identification unavailable (vae_lab.identity.identify is not installed)"
        return
    try:
        result.info = _id.inspect(result.path)
    except BadVaeFile as err:
        if not result.already_present and result.entry is None:
            os.unlink(result.path)
            raise DownloadError(f"{err}; the downloaded file was deleted") from None
        result.info_error = str(err)
    except VaeLabError as err:
        result.info_error = str(err)
    if result.info is not None and _get(result.info, "layout") == "diffusers":
        result.warnings.append("a diffusers-layout file: A1111 cannot load it; convert it with `python -m vae_lab convert`")


class DownloadJob:
    """A download on a background thread, for UIs: poll `status()`, call `cancel()`.

        job = DownloadJob("sdxl-vae-fp16-fix", vae_dir, tokens=policy, on_done=refresh).start()
        job.status()  # {"state": "running", "done_bytes": …, "total_bytes": …, "fraction": …}
    """

    def __init__(self, source: str, dest_dir=None, **kwargs):
        self.source, self.dest_dir, self.kwargs = source, dest_dir, kwargs
        self.kwargs.setdefault("console", False)
        self._user_progress = self.kwargs.pop("progress", None)
        self._cancel = threading.Event()
        self.done_bytes, self.total_bytes = 0, None
        self.result: DownloadResult | None = None
        self.error: str | None = None
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, name=f"vae-lab-download {source}", daemon=True)

    def start(self) -> "DownloadJob":
        self._thread.start()
        return self

    def _progress(self, done: int, total: int | None) -> None:
        self.done_bytes, self.total_bytes = done, total
        if self._user_progress is not None:
            self._user_progress(done, total)

    def _run(self) -> None:
        try:
            self.result = download(self.source, self.dest_dir, progress=self._progress, cancel=self._cancel,
                                   **self.kwargs)
        except DownloadCancelled as err:
            self.cancelled, self.error = True, str(err)
        except VaeLabError as err:
            self.error = str(err)
        except Exception as err:  # keep the UI alive; the message is still one line
            self.error = f"unexpected error: {type(err).__name__}: {_short(err)}"

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> dict[str, Any]:
        if self.running or (self.result is None and self.error is None):
            state = "running"
        elif self.result is not None:
            state = "done"
        else:
            state = "cancelled" if self.cancelled else "failed"
        total = self.total_bytes
        return {
            "state": state, "source": self.source, "done_bytes": self.done_bytes, "total_bytes": total,
            "fraction": (self.done_bytes / total) if total else None, "error": self.error,
            "result": self.result.to_dict() if self.result is not None else None,
        }
