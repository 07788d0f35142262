"""`cmd_opts`: the parsed command line (modules/shared_cmd_options.py)."""

import os

from modules import cmd_args, paths_internal

parser = cmd_args.parser
cmd_opts = parser.parse_args(cmd_args.argv())

if cmd_opts.ui_settings_file is None:
    cmd_opts.ui_settings_file = os.path.join(paths_internal.data_path, "config.json")
if cmd_opts.embeddings_dir is None:
    cmd_opts.embeddings_dir = os.path.join(paths_internal.data_path, "embeddings")
cmd_opts.disable_extension_access = (cmd_opts.share or cmd_opts.listen) and not cmd_opts.enable_insecure_extension_access
