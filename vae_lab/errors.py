"""Errors that reach users.

Every failure caused by bad input (a bad file, a bad URL, an incompatible VAE) raises a
`VaeLabError` whose message is one clear line that names the thing and the problem.
The CLI prints that line and exits 2; the UI shows it; nothing else is changed.
"""


class VaeLabError(Exception):
    """A user-facing error: `str(err)` is one clear line."""


class BadVaeFile(VaeLabError):
    """A file that cannot be read as a VAE (corrupt, truncated, wrong tensors, not a VAE)."""


class UnsafeFile(BadVaeFile):
    """A pickle that would run code or needs more than plain tensors to load."""


class IncompatibleVae(VaeLabError):
    """A VAE of the wrong family or latent shape for the model or latents at hand."""


class DownloadError(VaeLabError):
    """A download that was refused or failed; nothing is left in the target folder."""


class Cancelled(VaeLabError):
    """An encode/decode stopped on request (the `cancel` argument): nothing was returned."""
