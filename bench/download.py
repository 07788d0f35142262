"""Benchmark: time to a verified file on loopback — VAE Lab's one-pass download vs `curl -o` + `sha256sum`.

A ~300 MB file of random bytes is served by testkit's Range-capable server (sendfile) on
127.0.0.1, in a separate process. "Ours" streams, hashes and writes in one pass, checks the
SHA-256 and renames into place (with and without the fsync it does by default); the baseline
downloads with curl and then hashes the file with sha256sum. Reported: median wall seconds,
MB/s, the client's CPU seconds (user + system; less sensitive to a busy machine than wall time)
and the ours/baseline ratios.

    python bench/download.py [--quick]
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT,):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def _make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            b = os.urandom(min(left, 8 << 20))
            f.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _measure(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and of the children it waited for)."""
    cpu0, child0, t0 = time.process_time(), _children_cpu(), time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (time.process_time() - cpu0) + (_children_cpu() - child0)


def _serve(path: str) -> None:
    """Child process: serve `path` at /vae.safetensors, print the port, stop when stdin closes."""
    from testkit.httpserver import FileServer

    with FileServer() as srv:
        srv.add_file("/vae.safetensors", Path(path))
        print(srv.port, flush=True)
        sys.stdin.read()


def run(quick: bool = False) -> dict:
    import requests  # noqa: F401  (imported here so no variant pays for it)

    from vae_lab.download.transfer import download
    from vae_lab.download.tokens import TokenPolicy

    size = (64 if quick else 300) * 1_000_000
    reps = 1 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="vaelab-bench-dl-"))
    try:
        src = work / "src.safetensors"
        # A random payload behind a valid safetensors header, so the format sniff passes.
        header = b'{"__metadata__":{"bench":"1"}}'
        header += b" " * (-len(header) % 8)
        with open(src, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header)
        body = work / "body"
        _make_file(body, size - src.stat().st_size)
        with open(src, "ab") as out, open(body, "rb") as inp:
            shutil.copyfileobj(inp, out, 8 << 20)
        body.unlink()
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        dest = work / "dest"
        dest.mkdir()
        policy = TokenPolicy(tokens={}, hosts={})
        results: dict[str, list[tuple[float, float]]] = {}
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(src)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            url = f"http://127.0.0.1:{int(server.stdout.readline())}/vae.safetensors"

            def clean():
                for p in dest.iterdir():
                    p.unlink()

            def ours(fsync: bool):
                def go():
                    res = download(url, dest, sha256=digest, tokens=policy, console=False, identify=False,
                                   fsync=fsync)
                    assert res.verified and res.size == size
                return go

            def curl():
                target = dest / "vae.safetensors"
                subprocess.run(["curl", "-sS", "--fail", "-o", str(target), url], check=True)
                out = subprocess.run(["sha256sum", str(target)], check=True, capture_output=True, text=True).stdout
                assert out.split()[0] == digest

            variants = {"vae_lab (one pass, no fsync)": ours(False), "vae_lab (one pass + fsync, default)": ours(True)}
            if shutil.which("curl") and shutil.which("sha256sum"):
                variants = {"curl -o + sha256sum": curl, **variants}
            for fn in variants.values():  # warm-up: imports, page cache of the source file
                clean()
                fn()
            # Interleave the variants so page-cache and CPU-frequency drift hit all of them alike.
            for _ in range(reps):
                for name, fn in variants.items():
                    clean()
                    results.setdefault(name, []).append(_measure(fn))
                clean()
        finally:
            server.stdin.close()
            server.wait(10)
        rows = {}
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            rows[name] = {"seconds": round(wall, 3), "MB_per_s": round(size / 1e6 / wall, 1),
                          "cpu_seconds": round(cpu, 3), "runs": len(runs)}
        base = rows.get("curl -o + sha256sum")
        if base:
            for row in rows.values():
                row["ratio_vs_curl"] = round(row["seconds"] / base["seconds"], 2)
                row["cpu_ratio_vs_curl"] = round(row["cpu_seconds"] / base["cpu_seconds"], 2)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        report = {"bench": "download", "size_bytes": size, "reps": reps, "cpus": os.cpu_count(),
                  "load_avg_1min": load, "results": rows}
        # The shape bench/run.py prints: a title, one flat dict per row, notes.
        report["title"] = f"Loopback download of {size / 1e6:.0f} MB to a verified file, median of {reps}" + (
            f" (load average {load:.1f})" if load is not None else "")
        report["rows"] = [{"method": name, "wall s": row["seconds"], "MB/s": row["MB_per_s"],
                           "client CPU s": row["cpu_seconds"], "wall vs curl": row.get("ratio_vs_curl"),
                           "CPU vs curl": row.get("cpu_ratio_vs_curl")} for name, row in rows.items()]
        report["notes"] = ["curl: `curl -o FILE` then `sha256sum FILE`; vae_lab hashes while it writes (one pass)."]
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _table(report: dict) -> str:
    lines = [f"Loopback download of {report['size_bytes'] / 1e6:.0f} MB to a verified file "
             f"(median of {report['reps']}, {report['cpus']} CPUs, load average {report['load_avg_1min']:.1f})", "",
             "| method | wall s | MB/s | client CPU s | wall vs curl + sha256sum | CPU vs curl + sha256sum |",
             "|---|---|---|---|---|---|"]
    for name, row in report["results"].items():
        lines.append(f"| {name} | {row['seconds']:.3f} | {row['MB_per_s']:.0f} | {row['cpu_seconds']:.3f} | "
                     f"{row.get('ratio_vs_curl', '-')} | {row.get('cpu_ratio_vs_curl', '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        _serve(sys.argv[2])
        sys.exit(0)
    rep = run(quick="--quick" in sys.argv)
    print(_table(rep))
    if "--json" in sys.argv:
        print(json.dumps(rep, indent=1))
