"""Base paths (modules/paths_internal.py): A1111's; `script_path` is this stand-in's folder
(tests/forge_stub, with Forge's root `scripts/`)."""

from modules._a1111 import inherit

inherit(globals(), "paths_internal")
