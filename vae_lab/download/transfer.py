"""Resumable, verified, atomic downloads of VAE files into `models/VAE`.

    result = download("sdxl-vae-fp16-fix")                      # a catalog id or name
    result = download("https://huggingface.co/…/resolve/…/x.safetensors", dest_dir, sha256=hex)

How a download stays safe. This module is the attempt loop and the public API; the jobs live
next door: `http` (requests, redirects, typed failures), `body` (decoding, resume headers),
`partial` (the hidden partial file, its lock, its publication), `publish` (identify, convert,
name), `checks` (names, payloads, free space), `tokens`, `result`, `job` (background thread).


* It streams into a hidden `.vaelab-<hash>.part` in the target folder, which the WebUI never
  lists, on the same file system as the result. The SHA-256 is computed while the bytes are
  written; nothing is read twice.
* Resuming is safe or not done: after a dropped connection it asks for the rest with `Range`
  and `If-Range: <validator>` (a strong ETag, else Last-Modified), so a file changed on the
  server is sent whole instead of spliced. With no validator, or one that changed, it starts
  over from byte 0. After a restart of the process the partial is hashed once, then resumed.
* Transient failures (timeouts, dropped connections, 408/425/429/5xx) are retried with
  exponential backoff (honouring `Retry-After`); a name that does not resolve or a refused
  connection fails at once ("no network: could not resolve huggingface.co"). An overall
  `deadline` (seconds) stops a server that trickles bytes.
* Refusals (bad URL, 4xx, HTML or JSON instead of weights, wrong size, checksum mismatch,
  unsafe file name, not enough disk space, a different existing file) raise a `DownloadError`
  subclass with one clear line; the response is described, never echoed.
* Only what passed is published: size, SHA-256, and (with `identify`) loading the hidden
  partial as a VAE all happen before the file gets its name, with a no-overwrite link, last.
* A cancelled or interrupted transfer keeps its hidden partial only if it has bytes a later call
  can resume, and its message says so; otherwise nothing is left in the folder.
* Tokens go only to their own service's hosts, per redirect hop (`vae_lab.download.tokens`);
  a caller's host `policy` is asked at every hop too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae_lab.download.body import Body, range_start, range_total, validator_of
from vae_lab.download.checks import (  # noqa: F401  (re-exported: the download API)
    ALLOWED_EXTENSIONS,
    check_filename,
    check_free_space,
    check_payload_start,
    check_url,
    filename_from_content_disposition,
    filename_from_url,
    format_size,
    is_url,
    show_url,
)
from vae_lab.download.http import HopCheck, Http, Transient, hop_check_of
from vae_lab.download.partial import KeptPartial, PartialFile, kept_partials, partial_paths  # noqa: F401
from vae_lab.download.publish import Received, convert_present, identify_present, publish
from vae_lab.download.result import DownloadResult
from vae_lab.download.tokens import TokenPolicy
from vae_lab.errors import (  # noqa: F401  (re-exported)
    DestinationTaken,
    DownloadBusy,
    DownloadCancelled,
    DownloadError,
    DownloadInterrupted,
    DownloadRefused,
    DownloadTimedOut,
    NoNetwork,
    NotEnoughSpace,
    VaeLabError,
)
from vae_lab.identity import catalog
from vae_lab.identity.catalog import file_sha256
from vae_lab.files.folders import WEBUI_LISTED_EXTENSIONS, weight_files
from vae_lab.paths import EXTENSION_ROOT

log = logging.getLogger("vae_lab.download")

# With no size known from the catalog, the caller or the server, stop here: the largest VAE-like
# file known (OpenAI's Consistency Decoder) is 2.5 GB, a kl-f8 VAE 335 MB.
MAX_UNKNOWN_SIZE = 8 << 30
WEBUI_LISTS = WEBUI_LISTED_EXTENSIONS  # A1111's VAE globs; .pth/.bin are saved but not listed
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, "int | None"], None]


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


# --------------------------------------------------------------------------- small parts


@dataclass
class Expected:
    """What the bytes must be: SHA-256 (and who said so), size. Servers may add to it."""

    sha256: str | None = None
    source: str | None = None   # "catalog" | "argument" | "server"
    size: int | None = None

    def learn_from(self, resp) -> None:
        """Hugging Face announces an LFS file's SHA-256 and size on its resolve response."""
        linked = (resp.headers.get("X-Linked-Etag") or "").strip().strip('"').lower()
        if linked.startswith("w/"):
            linked = linked[2:].strip('"')
        if _HEX64.match(linked) and not self.sha256:
            self.sha256, self.source = linked, "server"
        elif _HEX64.match(linked) and linked != self.sha256:  # refuse now, not after 335 MB
            raise DownloadRefused(
                f"the server serves a different file (SHA-256 {linked[:16]}…) than expected "
                f"({self.sha256[:16]}…, {self.source}); nothing was downloaded"
            )
        linked_size = resp.headers.get("X-Linked-Size", "")
        if linked_size.isdigit() and self.size is None:
            self.size = int(linked_size)


@dataclass
class Limits:
    """How long and how often to try."""

    retries: int = 5
    backoff: float = 1.0
    timeout: float | tuple[float, float] = (15.0, 60.0)
    lock_wait: float | None = None
    deadline_at: float | None = None  # time.monotonic() at which the whole download stops
    deadline: float | None = None     # the same, in seconds, for messages
    fsync: bool = True

    def left(self) -> float | None:
        return None if self.deadline_at is None else self.deadline_at - time.monotonic()

    def request_timeout(self):
        """The timeout for one request, never past the deadline."""
        left = self.left()
        if left is None:
            return self.timeout
        connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout, self.timeout)
        left = max(left, 0.05)
        return (min(connect, left), min(read, left))


class _Reporter:
    """Progress to the caller's callback (throttled) and, on a terminal, a tqdm bar."""

    def __init__(self, progress: Progress | None, console: bool, label: str):
        self.progress, self.console, self.label = progress, console, label
        self.bar = None
        self._last = 0.0

    def start(self, done: int, total: int | None) -> None:
        if self.console and self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=self.label, file=sys.stderr, dynamic_ncols=True, leave=False)
        elif self.bar is not None:
            self.bar.reset(total=total)
            self.bar.update(done)
        self.report(done, total, force=True)

    def report(self, done: int, total: int | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1 and (total is None or done < total):
            return
        self._last = now
        if self.bar is not None:
            self.bar.n = done
            self.bar.refresh()
        if self.progress is not None:
            self.progress(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def source_key(url: str) -> str:
    """Which URL a partial came from, without storing the URL (signed URLs, ?token=)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


# --------------------------------------------------------------------------- the transfer


class _Transfer:
    """One URL into one hidden partial: claim, attempts, resume, streaming. Publishes nothing."""

    def __init__(self, url: str, dest: Path, filename: str | None, expected: Expected, http: Http,
                 limits: Limits, reporter: _Reporter, cancelled: Callable[[], bool]):
        self.url, self.dest, self.filename = url, dest, filename
        self.expected, self.http, self.limits = expected, http, limits
        self.reporter, self.cancelled = reporter, cancelled
        self.partial: PartialFile | None = None
        self.hasher = hashlib.sha256()
        self.done = 0
        self.total: int | None = None
        self.validator: str | None = None  # None: what is on disk cannot be resumed safely
        self.resumed_from = 0
        self.attempts = 0
        self.complete = False  # the partial on disk already is the whole expected file
        self.t0 = time.monotonic()

    # ---- what stays after a failure
    @property
    def resumable(self) -> bool:
        return self.done > 0 and self.validator is not None

    def kept_note(self) -> str:
        if self.partial is not None and self.resumable:
            return (f"; {format_size(self.done)} kept hidden in {self.dest} — download it again to resume")
        return "; nothing was kept"

    def end_failed(self, err: BaseException) -> None:
        """Leave the folder as the error's message says: a resumable partial, or nothing of ours."""
        if self.partial is None or not self.partial.held:
            return
        keep = isinstance(err, (DownloadCancelled, DownloadInterrupted, NoNetwork, NotEnoughSpace))
        if not (keep and self.resumable):
            self.partial.discard()

    def close(self) -> None:
        self.reporter.close()
        if self.partial is not None:
            self.partial.release()

    # ---- claim: lock, existing file, partial state
    def claim(self, name: str) -> DownloadResult | None:
        self.filename = check_filename(name)
        self.reporter.label = self.filename
        partial = PartialFile(self.dest, self.filename)
        wait, left = self.limits.lock_wait, self.limits.left()
        if left is not None:  # waiting for another download counts against the deadline too
            wait = max(left, 0.0) if wait is None else min(wait, max(left, 0.0))
        partial.acquire(self.cancelled, wait)
        self.partial = partial
        final = self.dest / self.filename
        if final.exists() and self.expected.sha256:
            return self.existing(final)
        if partial.part.exists():
            self._resume_state()
        return None

    def existing(self, final: Path) -> DownloadResult:
        digest = file_sha256(final)
        if digest != self.expected.sha256:
            raise DestinationTaken(
                f"a different file named {self.filename} already exists in {self.dest} "
                f"(SHA-256 {digest[:10]}…, expected {self.expected.sha256[:10]}…); nothing was changed — "
                "save it under another name (--filename)"
            )
        self.partial.discard()  # a partial left by a run killed after its publication (we hold the lock)
        return DownloadResult(
            path=str(final), filename=self.filename, sha256=digest, size=final.stat().st_size, url=None,
            verified=True, expected_from=self.expected.source, already_present=True, attempts=0,
        )

    def _resume_state(self) -> None:
        point = self.partial.resume_point(source_key(self.url), self.expected.sha256)
        self.hasher, self.done, self.validator, self.total = point.hasher, point.size, point.validator, point.total
        self.complete = point.complete

    def _restart(self) -> None:
        self.partial.truncate(0)
        self.hasher, self.done, self.validator = hashlib.sha256(), 0, None

    # ---- the loop
    def run(self) -> Received | DownloadResult:
        if not self.filename:
            # A URL that ends in a weights-file name (Hugging Face /resolve/ links) names the file
            # before any request, so the lock is taken first; otherwise (Civitai API links) the
            # name comes from Content-Disposition.
            guess = filename_from_url(self.url)
            try:
                self.filename = check_filename(guess) if guess else None
            except DownloadError:
                self.filename = None
        if self.filename:
            early = self.claim(self.filename)
            if early:
                return early
            if self.complete:
                self.resumed_from = self.done
                return self._verified()
        failures = 0
        while True:
            self._check_cancel_and_deadline()
            offset = self.done if self.resumable else 0
            self.attempts += 1
            try:
                try:
                    resp = self.http.get(self.url, self._range_headers(offset), self.limits.request_timeout())
                except NoNetwork as err:
                    if self.done:
                        raise NoNetwork(f"{err}{self.kept_note()}", err.host, err.unresolved) from None
                    raise
                try:
                    if self.partial is None:
                        name = filename_from_content_disposition(resp.headers.get("Content-Disposition"))
                        name = name or filename_from_url(self.url)
                        if not name:
                            raise DownloadRefused(f"{show_url(self.url)} names no file; give one with --filename")
                        early = self.claim(name)
                        if early:
                            return early
                        if self.complete:
                            self.resumed_from = self.done
                            return self._verified()
                        if self.resumable:
                            continue  # a partial from an earlier run: ask again with Range
                    elif (self.expected.source == "server" and (self.dest / self.filename).exists()):
                        return self.existing(self.dest / self.filename)  # the hash came with the headers
                    if self.resumed_from == 0 and offset:
                        self.resumed_from = offset
                    self._receive(resp, offset)
                finally:
                    resp.close()
                break
            except Transient as err:
                failures += 1
                if failures > self.limits.retries:
                    raise DownloadInterrupted(
                        f"download of {self.filename or show_url(self.url)} failed after {self.limits.retries} "
                        f"retries: {err}{self.kept_note()}", kept_bytes=self.done if self.resumable else 0,
                    ) from None
                self._wait(err, failures)
        return self._verified()

    def _range_headers(self, offset: int) -> dict[str, str]:
        if not offset:
            return {}
        return {"Range": f"bytes={offset}-", "If-Range": self.validator}

    def _check_cancel_and_deadline(self) -> None:
        if self.cancelled():
            raise DownloadCancelled(f"download of {self.filename or show_url(self.url)} cancelled{self.kept_note()}",
                                    kept_bytes=self.done if self.resumable else 0)
        left = self.limits.left()
        if left is not None and left <= 0:
            got = f"{format_size(self.done)} of {format_size(self.total)}" if self.done else "nothing"
            raise DownloadTimedOut(
                f"download of {self.filename or show_url(self.url)} stopped: it took longer than its "
                f"{self.limits.deadline:g} s limit ({got} received){self.kept_note()}",
                kept_bytes=self.done if self.resumable else 0,
            )

    def _wait(self, err: Transient, failures: int) -> None:
        delay = err.retry_after if err.retry_after is not None else self.limits.backoff * 2 ** (failures - 1)
        end = time.monotonic() + min(delay, 60.0) * (1 + 0.1 * random.random())
        while time.monotonic() < end:
            self._check_cancel_and_deadline()
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    # ---- one response
    def _receive(self, resp, offset: int) -> None:
        """Stream `resp` into the partial, starting at `offset` (what is on disk)."""
        code, headers = resp.status_code, resp.headers
        if code == 416:
            total = range_total(headers.get("Content-Range"))
            if offset and total == offset:
                self.total = total
                return  # the partial is already complete
            self._restart()
            raise Transient("the server refused the resume range; starting over")
        body = Body(resp)
        content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
        validator = None if body.encoded else validator_of(headers)  # Range counts encoded bytes: no resume
        if code == 206:
            start, total = range_start(headers.get("Content-Range")), range_total(headers.get("Content-Range"))
            if start != offset:
                raise Transient(f"the server resumed at byte {start}, not {offset}")
            if validator != self.validator:  # the server ignored If-Range and the file changed
                self._restart()
                raise Transient("the file changed on the server; starting over")
        else:
            if offset or self.done:
                self._restart()  # no Range support, or the file changed (If-Range): start over
            start = 0
            cl = headers.get("Content-Length", "")
            total = int(cl) if cl.isdigit() and not body.encoded else None
        if total is not None and self.expected.size is not None and total != self.expected.size:
            raise DownloadRefused(
                f"the server announces {total:,} bytes but {self.filename} should be {self.expected.size:,}"
            )
        self.total = total if total is not None else self.expected.size
        if self.total is not None:
            check_free_space(self.dest, self.total - start, self.filename)
        self.validator = validator
        self.partial.write_meta(source=source_key(self.url), validator=self.validator, total=self.total,
                                sha256=self.expected.sha256)
        self._stream(body, start, content_type)

    def _stream(self, body: Body, start: int, content_type: str) -> None:
        if start == 0:
            self.hasher, self.done = hashlib.sha256(), 0
        limit = self.expected.size if self.expected.size is not None else self.total
        limit = MAX_UNKNOWN_SIZE if limit is None else limit
        sniffed = start > 0
        self.reporter.start(self.done, self.total)
        with open(self.partial.part, "r+b" if start else "wb") as f:
            f.seek(start)
            f.truncate()
            while True:
                self._check_cancel_and_deadline()
                try:
                    chunk = body.read()
                except (Transient, DownloadError):
                    raise
                except Exception as err:  # urllib3 ProtocolError / IncompleteRead / socket errors
                    raise Transient(f"connection dropped at {self.done:,} bytes ({type(err).__name__})") from None
                if not sniffed:
                    chunk = self._first_block(body, chunk)
                    check_payload_start(chunk[:256], self.filename, content_type)
                    sniffed = True
                if not chunk:
                    break
                if self.done + len(chunk) > limit:
                    raise DownloadRefused(f"the server sent more than the expected {limit:,} bytes for {self.filename}")
                f.write(chunk)
                self.hasher.update(chunk)
                self.done += len(chunk)
                self.reporter.report(self.done, self.total)
            if self.limits.fsync:
                f.flush()
                os.fsync(f.fileno())
        if self.total is not None and self.done < self.total:
            raise Transient(f"connection closed at {self.done:,} of {self.total:,} bytes")

    def _first_block(self, body: Body, chunk: bytes) -> bytes:
        """At least 64 bytes (or the whole body) to judge the format on."""
        while chunk and len(chunk) < 64:
            self._check_cancel_and_deadline()
            try:
                more = body.read()
            except (Transient, DownloadError):
                raise
            except Exception as err:
                raise Transient(f"connection dropped at the start ({type(err).__name__})") from None
            if not more:
                break
            chunk = bytes(chunk) + more
        if not chunk:  # nothing at all: a drop if a size was announced, else an empty file
            if self.total:
                raise Transient("connection closed before the first byte")
            raise DownloadRefused(f"the server sent an empty file for {self.filename}")
        return chunk

    def _verified(self) -> Received:
        size = self.partial.size()
        if size != self.done:
            raise DownloadRefused(f"{self.filename}: the partial file changed while downloading")
        if self.expected.size is not None and size != self.expected.size:
            raise DownloadRefused(f"{self.filename} is {size:,} bytes, expected {self.expected.size:,}; deleted")
        digest = self.hasher.hexdigest()
        if self.expected.sha256 and digest != self.expected.sha256:
            raise DownloadRefused(
                f"checksum mismatch for {self.filename}: got SHA-256 {digest[:16]}…, expected "
                f"{self.expected.sha256[:16]}… ({self.expected.source}); the download was deleted"
            )
        self.reporter.report(self.done, self.total, force=True)
        return Received(self.partial, digest, size, self.url, bool(self.expected.sha256), self.expected.source,
                        self.resumed_from, self.attempts, self.t0)


# --------------------------------------------------------------------------- publishing


# --------------------------------------------------------------------------- public API


def _cancel_fn(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    return cancel


def _token_policy(tokens) -> TokenPolicy:
    """A TokenPolicy from a policy, a {"hf": …, "civitai": …} mapping (Settings), a callable returning
    one, or None (environment only). Empty settings fall back to HF_TOKEN / CIVITAI_API_TOKEN."""
    if callable(tokens) and not isinstance(tokens, TokenPolicy):
        tokens = tokens()
    if isinstance(tokens, TokenPolicy):
        return tokens
    tokens = tokens or {}
    return TokenPolicy.from_settings(hf=tokens.get("hf"), civitai=tokens.get("civitai"))


def _sources(source: str, sha256: str | None, size: int | None, filename: str | None):
    """(urls, Expected, file name or None) for a catalog id/name or a URL."""
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
    expected = Expected(size=size if size is not None else (entry.size if entry else None))
    if sha256:
        expected.sha256, expected.source = sha256.strip().lower(), "argument"
        if not _HEX64.match(expected.sha256):
            raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    if entry is not None and entry.sha256:
        if expected.sha256 and expected.sha256 != entry.sha256:
            raise DownloadError(f"the SHA-256 given does not match the catalog's for {entry.id}")
        expected.sha256, expected.source = entry.sha256, "catalog"
    name = filename or (entry.filename if entry else None)
    if name:
        check_filename(name)
    return urls, expected, name


# Failures another mirror cannot fix: stop at once.
_FINAL = (DownloadCancelled, DestinationTaken, DownloadBusy, NotEnoughSpace, DownloadTimedOut)


def _all_failed(errors: list[DownloadError]) -> DownloadError:
    """One message for every mirror's failure, with no clause said twice."""
    if len(errors) == 1:
        return errors[0]
    if all(isinstance(e, NoNetwork) and e.unresolved for e in errors):
        hosts = list(dict.fromkeys(e.host for e in errors))
        return NoNetwork(f"no network: could not resolve {' or '.join(hosts)}", hosts[0], unresolved=True)
    first = errors[0]
    others = [str(e) for e in errors[1:] if str(e) != str(first)]
    message = str(first) + (f" (and {len(errors) - 1} mirror(s) failed too: {others[-1]})" if others else "")
    err = type(first)(message)
    err.kept_bytes = getattr(first, "kept_bytes", 0)
    return err


def download(
    source: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    sha256: str | None = None,
    size: int | None = None,
    filename: str | None = None,
    tokens: TokenPolicy | dict | Callable[[], dict] | None = None,
    policy: HopCheck | Any = None,
    progress: Progress | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    on_done: Callable[[DownloadResult], None] | None = None,
    console: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float | tuple[float, float] = (15.0, 60.0),
    deadline: float | None = None,
    lock_wait: float | None = None,
    identify: bool = True,
    to_safetensors: bool = False,
    fsync: bool = True,
    session=None,
) -> DownloadResult:
    """Download a catalog entry (id or name) or an http(s) URL into `dest_dir` (default `models/VAE`).

    Returns a `DownloadResult` (final path, SHA-256, catalog match, identity) and passes it to
    `on_done`. Raises a `DownloadError` (one line; its subclasses say what happened and whether
    bytes were kept for resuming). `progress(done_bytes, total_bytes_or_None)` is called as bytes
    arrive. `policy`: a host policy asked before each request and each redirect hop (a callable
    or an object with `check(url)`, raising `DownloadError` to refuse). `deadline`: seconds the
    whole download may take. `identify`: load the file as a VAE before publishing it (a file that
    is not one is refused). `to_safetensors`: publish a downloaded pickle (.ckpt/.pt/.pth/.bin)
    as `<stem>.safetensors` only, converted by `vae_lab.files.convert`.
    """
    import requests

    urls, template, name = _sources(source, sha256, size, filename)
    dest = Path(dest_dir) if dest_dir is not None else default_vae_dir()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DownloadError(f"cannot create the target folder {dest}: {err.strerror}") from None
    limits = Limits(retries=retries, backoff=backoff, timeout=timeout, lock_wait=lock_wait, fsync=fsync,
                    deadline=deadline, deadline_at=None if deadline is None else time.monotonic() + deadline)
    token_policy = _token_policy(tokens)
    check_hop = hop_check_of(policy)
    own_session = session is None
    session = session or requests.Session()
    cancelled = _cancel_fn(cancel)
    errors: list[DownloadError] = []
    try:
        for url in urls:
            expected = Expected(template.sha256, template.source, template.size)
            http = Http(session, token_policy, check_hop, on_headers=expected.learn_from)
            transfer = _Transfer(url, dest, name, expected, http, limits, _Reporter(progress, console, name or ""),
                                 cancelled)
            try:
                result = _run(transfer, identify=identify, to_safetensors=to_safetensors)
                break
            except _FINAL:
                raise
            except DownloadError as err:
                errors.append(err)
        else:
            raise _all_failed(errors)
    finally:
        if own_session:
            session.close()
    if result.already_present:
        if result.entry is None:
            result.entry = catalog.known_by_sha256(result.sha256)
        if to_safetensors and not result.filename.lower().endswith(".safetensors"):
            convert_present(result, identify)
        elif identify:
            identify_present(result)
    _warn_same_basename(result, dest)
    if not result.filename.lower().endswith(WEBUI_LISTS):
        result.warnings.append(
            f"the WebUI lists only {', '.join(WEBUI_LISTS)} files in models/VAE, so it will not show "
            f"{result.filename}; rename it or download with --to-safetensors"
        )
    if result.info is not None and result.info.layout == "diffusers":
        result.warnings.append("a diffusers-layout file: A1111 cannot load it; convert it with `python -m vae_lab convert`")
    log.info("%s %s (SHA-256 %s)", "found" if result.already_present else "downloaded", result.path, result.short_hash)
    if on_done is not None:
        on_done(result)
    return result


def _run(transfer: _Transfer, *, identify: bool, to_safetensors: bool) -> DownloadResult:
    """One URL, start to end, leaving the folder as the outcome says."""
    try:
        got = transfer.run()
        if isinstance(got, DownloadResult):
            return got
        return publish(got, identify=identify, to_safetensors=to_safetensors)
    except OSError as err:  # disk full, permissions: one line, keep what can be resumed
        where = err.filename or (transfer.partial.part if transfer.partial else transfer.dest)
        wrapped = DownloadInterrupted(f"cannot use {where}: {err.strerror or err}{transfer.kept_note()}",
                                      kept_bytes=transfer.done if transfer.resumable else 0)
        transfer.end_failed(wrapped)
        raise wrapped from None
    except BaseException as err:
        transfer.end_failed(err)
        raise
    finally:
        transfer.close()


def _warn_same_basename(result: DownloadResult, dest: Path) -> None:
    """A1111 keys its VAE list by file name: a namesake in a subfolder hides one of the two."""
    for other in weight_files(dest):
        if os.path.basename(other) == result.filename:
            if os.path.abspath(other) != os.path.abspath(result.path):
                result.warnings.append(
                    f"{os.path.relpath(other, dest)} has the same file name; the WebUI lists VAEs by name, "
                    "so only one of them can be chosen"
                )


