"""The WebUI's command-line flags that matter to a VAE extension (modules/cmd_args.py, subset).

The stand-in reads its command line from the environment variable `WEBUI_STUB_ARGS`
(shell syntax) instead of `sys.argv`, so pytest's own arguments never reach it.
"""

import argparse
import os
import shlex

parser = argparse.ArgumentParser(prog="webui-standin")
parser.add_argument("--data-dir", type=str, default=None)
parser.add_argument("--models-dir", type=str, default=None)
parser.add_argument("--ckpt", type=str, default=None)
parser.add_argument("--ckpt-dir", type=str, default=None)
parser.add_argument("--vae-dir", type=str, default=None)
parser.add_argument("--vae-path", type=str, default=None)
parser.add_argument("--embeddings-dir", type=str, default=None)
parser.add_argument("--no-half", action="store_true")
parser.add_argument("--no-half-vae", action="store_true")
parser.add_argument("--precision", type=str, choices=["full", "half", "autocast"], default="autocast")
parser.add_argument("--upcast-sampling", action="store_true")
parser.add_argument("--lowvram", action="store_true")
parser.add_argument("--medvram", action="store_true")
parser.add_argument("--medvram-sdxl", action="store_true")
parser.add_argument("--lowram", action="store_true")
parser.add_argument("--disable-nan-check", action="store_true")
parser.add_argument("--no-hashing", action="store_true")
parser.add_argument("--disable-safe-unpickle", action="store_true")
parser.add_argument("--api", action="store_true")
parser.add_argument("--nowebui", action="store_true")
parser.add_argument("--skip-install", action="store_true")
parser.add_argument("--skip-prepare-environment", action="store_true")
parser.add_argument("--skip-load-model-at-start", action="store_true")
parser.add_argument("--disable-all-extensions", action="store_true")
parser.add_argument("--disable-extra-extensions", action="store_true")
parser.add_argument("--freeze-settings", action="store_true")
parser.add_argument("--freeze-settings-in-sections", type=str, default=None)
parser.add_argument("--freeze-specific-settings", type=str, default=None)
parser.add_argument("--hide-ui-dir-config", action="store_true")
parser.add_argument("--ui-settings-file", type=str, default=None)
parser.add_argument("--ui-config-file", type=str, default=None, help="ui-config.json; default: in --data-dir (as the real default)")
parser.add_argument("--use-cpu", nargs="+", default=[])
parser.add_argument("--listen", action="store_true")
parser.add_argument("--share", action="store_true")
parser.add_argument("--enable-insecure-extension-access", action="store_true")
parser.add_argument("--no-prompt-history", action="store_true")


def argv() -> list[str]:
    return shlex.split(os.environ.get("WEBUI_STUB_ARGS", ""))
