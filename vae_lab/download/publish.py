"""The last step of a download: judge the hidden, verified partial and give it its name.

Nothing gets a listable name before it passed: the partial is identified (loaded as a VAE) while
still hidden, converted from a pickle if asked, then published with a no-overwrite link.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae_lab.download.checks import show_url
from vae_lab.download.result import DownloadResult
from vae_lab.errors import BadVaeFile, DestinationTaken, DownloadRefused, VaeLabError
from vae_lab.identity import catalog
from vae_lab.identity.catalog import file_sha256, remember_sha256

if TYPE_CHECKING:  # pragma: no cover
    from vae_lab.download.partial import PartialFile

log = logging.getLogger("vae_lab.download")


@dataclass
class Received:
    """A complete, size- and hash-checked partial, still hidden and still locked."""

    partial: PartialFile
    sha256: str
    size: int
    url: str
    verified: bool
    expected_from: str | None
    resumed_from: int
    attempts: int
    started: float  # time.monotonic() when the transfer began

    @property
    def filename(self) -> str:
        return self.partial.filename

    @property
    def dest(self) -> Path:
        return self.partial.dest


def _identify_hidden(received: Received, filename: str, entry) -> tuple[Any, str | None]:
    """(VaeInfo, None) or (None, why) for the hidden partial; refuses a file that is not a VAE.

    A file whose SHA-256 the catalog knows is kept even if it cannot be identified (the catalog
    vouches for it); anything else must load as a VAE before it gets its name."""
    from vae_lab.identity import identify as _id

    part = str(received.partial.part)
    remember_sha256(part, received.sha256)  # identify reads no byte twice
    try:
        return _id.inspect(part), None
    except BadVaeFile as err:
        why = str(err).replace(part, filename)
    except Exception as err:  # a reader's bug must not publish an unchecked file
        why = f"{filename}: could not be checked as a VAE ({type(err).__name__})"
        log.warning("identifying the download %s failed", filename, exc_info=True)
    if entry is None:
        raise DownloadRefused(f"{why}; the downloaded file was deleted")
    return None, why


def publish(received: Received, *, identify: bool, to_safetensors: bool) -> DownloadResult:
    """Identify (when asked), convert (when asked), then give the file its name; or refuse it."""
    filename, dest = received.filename, received.dest
    entry = catalog.known_by_sha256(received.sha256)
    info, info_error = _identify_hidden(received, filename, entry) if identify else (None, None)
    result = DownloadResult(
        path=str(dest / filename), filename=filename, sha256=received.sha256, size=received.size,
        url=show_url(received.url), verified=received.verified, expected_from=received.expected_from,
        resumed_from=received.resumed_from, attempts=received.attempts, seconds=time.monotonic() - received.started,
        entry=entry, info=info, info_error=info_error,
    )
    if to_safetensors and not filename.lower().endswith(".safetensors") and _convert_hidden(received, result):
        received.partial.discard()
        return result
    final = dest / filename
    try:
        received.partial.publish(final)
    except FileExistsError:
        existing = file_sha256(final)
        received.partial.discard()
        if existing != received.sha256:
            raise DestinationTaken(
                f"a different file named {filename} already exists in {dest} (SHA-256 {existing[:10]}…, "
                f"downloaded {received.sha256[:10]}…); nothing was changed — save it under another name (--filename)"
            ) from None
        result.already_present = True
    _remember_identity(final, received.sha256, info)
    return result


def _remember_identity(final: Path, sha256: str, info) -> None:
    """The published file's hashes into the cache; its info now names the published path."""
    remember_sha256(final, sha256)
    if info is None:
        return
    hidden = info.path
    info.path = str(final)
    for f in info.files:
        if f.get("path") == hidden:
            f["path"] = str(final)
    try:
        from vae_lab.identity.identify import HashCache

        HashCache().put("weights_id", [str(final)], info.weights_id)
    except OSError:
        pass


def _convert_hidden(received: Received, result: DownloadResult) -> bool:
    """Publish a downloaded pickle as `<stem>.safetensors` only (the pickle never gets a name)."""
    from vae_lab.files.convert import convert

    dst = Path(result.path).with_suffix(".safetensors")
    try:
        convert(str(received.partial.part), str(dst), source_name=result.filename)
    except VaeLabError as err:
        result.warnings.append(f"not converted to safetensors: {str(err).replace(str(received.partial.part), result.filename)}")
        return False
    result.converted_from = result.filename
    result.path, result.filename = str(dst), dst.name
    if result.info is not None:
        from vae_lab.identity.identify import inspect

        try:
            result.info = inspect(dst)
        except VaeLabError as err:
            result.info, result.info_error = None, str(err)
    return True


def convert_present(result: DownloadResult, identify: bool) -> None:
    """A pickle that was already there: add a safetensors copy next to it (it is the user's file)."""
    from vae_lab.files.convert import convert

    src = Path(result.path)
    dst = src.with_suffix(".safetensors")
    try:
        convert(str(src), str(dst))
    except VaeLabError as err:
        result.warnings.append(f"not converted to safetensors: {err}")
        return
    result.converted_from = src.name
    result.path, result.filename = str(dst), dst.name
    result.warnings.append(f"{src.name} was already there and is kept next to {dst.name}")
    if identify:
        identify_present(result)


def identify_present(result: DownloadResult) -> None:
    from vae_lab.identity.identify import inspect

    try:
        result.info = inspect(result.path)
    except VaeLabError as err:
        result.info_error = str(err)
