"""A deadline for one download.

(Stop inside a decode needs nothing here: the comparison runner hands its cancel check to
`Vae.decode`/`encode` itself when they take one — `vae_lab.compare.runner._cancel_kwargs`.)
"""

from __future__ import annotations

import time

from vae_lab.errors import VaeLabError


def _is_set(cancel) -> bool:
    if cancel is None:
        return False
    return bool(cancel.is_set()) if hasattr(cancel, "is_set") else bool(cancel())


class DownloadTooSlow(VaeLabError):
    """A download that did not finish within the app's overall limit."""


class Deadline:
    """A cancel callable for a download: true when the user cancelled or `seconds` have passed."""

    def __init__(self, seconds: float, cancel=None):
        self.seconds = float(seconds)
        self.cancel = cancel
        self.end = time.monotonic() + self.seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def __call__(self) -> bool:
        return _is_set(self.cancel) or self.expired()

    def raise_if_expired(self, what: str) -> None:
        if self.expired() and not _is_set(self.cancel):
            minutes = self.seconds / 60
            limit = f"{minutes:g} min" if minutes >= 1 else f"{self.seconds:g} s"
            raise DownloadTooSlow(f"{what} took longer than the limit of {limit} and was stopped; "
                                  "the partial file is kept, so downloading again resumes it")
