"""The WebUI's safe unpickler (modules/safe.py): a rejected pickle is REPORTED and None returned.

The real one whitelists classes with its own Unpickler; `torch.load(weights_only=True)` is the
same idea and rejects the same kind of files (anything that needs code beyond tensors/containers).
"""

import torch

from modules import errors, shared


def load(filename, *args, **kwargs):
    return load_with_extra(filename, None, *args, **kwargs)


def load_with_extra(filename, extra_handler=None, *args, **kwargs):
    if shared.cmd_opts.disable_safe_unpickle:
        return torch.load(filename, *args, weights_only=False, **kwargs)
    try:
        return torch.load(filename, *args, weights_only=True, **kwargs)
    except Exception:
        errors.report(
            f"Error verifying pickled file from {filename}\n"
            "-----> !!!! The file is most likely corrupted !!!! <-----\n"
            "You can skip this check with --disable-safe-unpickle commandline argument, but that is not going to help you.",
            exc_info=True)
        return None
