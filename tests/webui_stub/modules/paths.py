"""Re-exported paths (modules/paths.py). The real one also puts ldm/sgm repositories on sys.path."""

import sys

from modules.paths_internal import (  # noqa: F401
    cwd, data_path, default_output_dir, extensions_builtin_dir, extensions_dir, models_path,
    script_path, sd_configs_path,
)

if script_path not in sys.path:
    sys.path.insert(0, script_path)

sd_path = script_path
paths = {}
