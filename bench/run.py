#!/usr/bin/env python3
"""Run VAE Lab's benchmarks in one process and print a table per benchmark.

    python bench/run.py                 # every bench/<name>.py, default sizes
    python bench/run.py --quick         # smaller sizes, a minute or two
    python bench/run.py --only decode   # one benchmark (repeatable: --only decode --only swap)
    python bench/run.py --json          # one JSON object: {"machine": …, "results": {name: result}}

A benchmark is a module `bench/<name>.py` with `run(quick: bool) -> dict`. The dict has
`title` (str), `rows` (a list of flat dicts, printed as a table with the keys of the
first row as columns) and optionally `notes` (list of str, printed under the table)
and anything else (kept in the JSON). Modules whose names start with `_` are helpers.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)


def discover() -> dict[str, Path]:
    return {p.stem: p for p in sorted(HERE.glob("*.py")) if p.stem not in ("run",) and not p.stem.startswith("_")}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"vae_lab_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"bench/{path.name} has no run(quick) function")
    return module


def machine() -> dict:
    import torch

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    out = [line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    ap.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    found = discover()
    names = args.only or list(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        print(f"error: no benchmark {', '.join(unknown)} (have: {', '.join(found) or 'none'})", file=sys.stderr)
        return 2
    env = machine()
    results, failed = {}, []
    if not args.json:
        print(f"machine: {env['cpu']} ({env['cpu_cores']} cores, {env['torch_threads']} torch threads), "
              f"GPU: {env['gpu'] or 'none'}; torch {env['torch']}; {env['date']}\n")
    for name in names:
        try:
            res = load(name, found[name]).run(args.quick)
        except Exception as err:  # noqa: BLE001 — one broken benchmark must not hide the others
            failed.append(name)
            results[name] = {"error": f"{err.__class__.__name__}: {err}"}
            print(f"benchmark {name} failed:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        results[name] = res
        if not args.json:
            print(f"## {res.get('title', name)}\n")
            print(format_table(res.get("rows", [])))
            for note in res.get("notes", []):
                print(f"\n{note}")
            print()
    if args.json:
        print(json.dumps({"machine": env, "quick": args.quick, "results": results}, indent=1, default=str))
    return 1 if failed else 0


def standalone(name: str, argv=None) -> int:
    """`python bench/<name>.py [--quick] [--json]`: the same as `bench/run.py --only <name>`."""
    return main(["--only", name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
