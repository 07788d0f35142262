"""Errors that reach users.

Every failure caused by bad input (a bad file, a bad URL, an incompatible VAE) raises a
`VaeLabError` whose message is one clear line that names the thing and the problem.
The CLI prints that line and exits 2; the UI shows it; nothing else is changed.
"""


class VaeLabError(Exception):
    """A user-facing error: `str(err)` is one clear line."""


class BadOption(VaeLabError):
    """An option given a value it does not take (an engine argument, a command-line flag)."""


class BadVaeFile(VaeLabError):
    """A file that cannot be read as a VAE (corrupt, truncated, wrong tensors, not a VAE)."""


class UnsafeFile(BadVaeFile):
    """A pickle that would run code or needs more than plain tensors to load."""


class IncompatibleVae(VaeLabError):
    """A VAE of the wrong family or latent shape for the model or latents at hand."""


class DownloadError(VaeLabError):
    """A download that was refused or failed; nothing listable is left in the target folder."""


class DownloadRefused(DownloadError):
    """The server's answer is not an acceptable VAE file (status, type, name, size, checksum);
    the partial is deleted. Messages describe the response (status, type, size), never echo it."""


class NoNetwork(DownloadError):
    """The host's name cannot be resolved (`unresolved`) or the connection is refused: not retried."""

    def __init__(self, message: str, host: str | None = None, unresolved: bool = False):
        super().__init__(message)
        self.host, self.unresolved = host, unresolved


class DownloadCancelled(DownloadError):
    """The caller cancelled. `kept_bytes` of the file stay hidden in the target folder for resuming."""

    def __init__(self, message: str, kept_bytes: int = 0):
        super().__init__(message)
        self.kept_bytes = kept_bytes


class DownloadInterrupted(DownloadError):
    """Transient failures outlasted the retries, or the disk refused a write. `kept_bytes` of
    the file stay hidden in the target folder, and a later call resumes them (0: nothing kept)."""

    def __init__(self, message: str, kept_bytes: int = 0):
        super().__init__(message)
        self.kept_bytes = kept_bytes


class DownloadTimedOut(DownloadInterrupted):
    """The download ran past its overall deadline (a server that trickles bytes)."""


class DownloadBusy(DownloadError):
    """Another download of the same file into the same folder is still running."""


class DestinationTaken(DownloadError):
    """A different file already has the target name; it is never overwritten."""


class NotEnoughSpace(DownloadError):
    """The target folder's file system has less free space than the announced size."""


class Cancelled(VaeLabError):
    """An encode/decode stopped on request (the `cancel` argument): nothing was returned."""
