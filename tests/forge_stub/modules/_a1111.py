"""Forge is a fork of A1111 1.10.1: most of its `modules` are A1111's, a few are changed.

`inherit(globals(), "sd_vae")` runs the A1111 stand-in's module (tests/webui_stub/modules/
sd_vae.py) in the namespace of the Forge module that calls it, so the Forge module starts
as A1111's and then redefines only what Forge changed. Functions inherited this way look
their globals up in the Forge module, so they see Forge's redefinitions (as in the real
fork, where the unchanged code sits next to the changed code in one file).

Modules Forge did not change are not here at all: `tests/webui_stub` comes after
`tests/forge_stub` on sys.path and `modules` is a namespace package, so `modules.<name>`
falls through to the A1111 stand-in's file.
"""

import os

A1111_STUB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "webui_stub")


def a1111_path(relpath: str) -> str:
    return os.path.join(A1111_STUB, relpath)


def inherit(namespace: dict, name: str, *, root: bool = False) -> None:
    """Execute the A1111 stand-in's `modules/<name>.py` (`<name>.py` at the root if `root`) in `namespace`."""
    path = a1111_path(name + ".py" if root else os.path.join("modules", *name.split(".")) + ".py")
    with open(path, encoding="utf8") as f:
        code = compile(f.read(), path, "exec")
    exec(code, namespace)  # noqa: S102 -- our own test stand-in code
