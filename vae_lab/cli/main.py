"""Command-line entry point: `python -m vae_lab COMMAND …`.

Each command lives in its own module under `vae_lab.cli` and exposes
`HELP` (one line), `add_arguments(parser)` and `run(args) -> int`. Modules import their
heavy dependencies inside `run`, so `--help` stays fast.

Bad input never produces a traceback: a `VaeLabError` is printed as one line on stderr
and the exit code is 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vae_lab.errors import VaeLabError

COMMANDS = {
    "info": "vae_lab.cli.info",
    "convert": "vae_lab.cli.convert",
    "encode": "vae_lab.cli.encode",
    "decode": "vae_lab.cli.decode",
    "catalog": "vae_lab.cli.catalog",
    "download": "vae_lab.cli.download",
    "compare": "vae_lab.cli.compare",
    "eval": "vae_lab.cli.eval",
    "serve": "vae_lab.cli.serve",
}


def _available_commands():
    for name, module_name in COMMANDS.items():
        try:
            yield name, importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vae_lab",
        description="VAE Lab: get, identify, swap and compare Stable Diffusion VAEs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module in _available_commands():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except VaeLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `python -m vae_lab info … | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 141
