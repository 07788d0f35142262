"""Stop that reaches inside a decode.

The comparison runner checks its cancel flag between steps (one VAE each); a single decode of
large latents can take minutes. The engine checks a `cancel` callable/Event between tiles and
blocks when it is given one (raising `vae_lab.errors.Cancelled`); `with_cancel` hands the
tab's per-session flag to every `decode`/`encode` of a run's VAEs.
"""

from __future__ import annotations

import functools
import inspect


@functools.lru_cache(maxsize=64)
def _takes_cancel(fn) -> bool:
    try:
        return "cancel" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _CancellableVae:
    """A loaded `Vae` whose decode/encode get the run's cancel flag (everything else is the Vae's)."""

    def __init__(self, vae, cancel):
        self._vae, self._cancel = vae, cancel

    def __getattr__(self, name):
        return getattr(self._vae, name)

    def _call(self, method: str, args, kwargs):
        fn = getattr(self._vae, method)
        if "cancel" not in kwargs and _takes_cancel(getattr(type(self._vae), method, fn)):
            kwargs = dict(kwargs, cancel=self._cancel)
        return fn(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self._call("decode", args, kwargs)

    def encode(self, *args, **kwargs):
        return self._call("encode", args, kwargs)


def with_cancel(vae, cancel):
    return vae if cancel is None else _CancellableVae(vae, cancel)
