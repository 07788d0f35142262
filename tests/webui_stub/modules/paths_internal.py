"""Base paths (modules/paths_internal.py): safe to import first.

`script_path` (the "webui root") is the stand-in's own folder `tests/webui_stub`, which holds
the root `scripts/` (xyz_grid.py). `--data-dir` (from `WEBUI_STUB_ARGS`) moves config,
models and extensions, as in the real WebUI.
"""

import argparse
import os

from modules import cmd_args

script_path = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
modules_path = os.path.join(script_path, "modules")
sd_configs_path = os.path.join(script_path, "configs")
cwd = os.getcwd()

_parser = argparse.ArgumentParser(add_help=False)
_parser.add_argument("--data-dir", type=str, default=None)
_parser.add_argument("--models-dir", type=str, default=None)
_args = _parser.parse_known_args(cmd_args.argv())[0]

data_path = os.path.abspath(_args.data_dir) if _args.data_dir else script_path
models_path = os.path.abspath(_args.models_dir) if _args.models_dir else os.path.join(data_path, "models")
extensions_dir = os.path.join(data_path, "extensions")
extensions_builtin_dir = os.path.join(script_path, "extensions-builtin")
config_states_dir = os.path.join(script_path, "config_states")
default_output_dir = os.path.join(data_path, "outputs")
