"""Benchmark: time to a verified file on loopback — VAE Lab's one-pass download vs `curl -o` + `sha256sum`.

A ~300 MB file of random bytes is served by the tests' Range-capable server (sendfile) on
127.0.0.1. "Ours" streams, hashes and writes in one pass, checks the SHA-256 and renames into
place (with and without the fsync it does by default); the baseline downloads with curl and
then hashes the file with sha256sum. Reported: median seconds, MB/s, and ours/baseline ratio.

    python bench/download.py [--quick]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
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


def _time(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def run(quick: bool = False) -> dict:
    from httpserver import FileServer
    from vae_lab.download import download
    from vae_lab.tokens import TokenPolicy

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
        results: dict[str, list[float]] = {}
        with FileServer() as srv:
            srv.add_file("/vae.safetensors", src)
            url = srv.url("/vae.safetensors")

            def clean():
                for p in dest.iterdir():
                    p.unlink()

            def ours(fsync: bool):
                def go():
                    clean()
                    res = download(url, dest, sha256=digest, tokens=policy, console=False, identify=False,
                                   fsync=fsync)
                    assert res.verified and res.size == size
                return go

            def curl():
                clean()
                target = dest / "vae.safetensors"
                subprocess.run(["curl", "-sS", "--fail", "-o", str(target), url], check=True)
                out = subprocess.run(["sha256sum", str(target)], check=True, capture_output=True, text=True).stdout
                assert out.split()[0] == digest

            have_curl = shutil.which("curl") and shutil.which("sha256sum")
            # Interleave the variants so page-cache and CPU-frequency drift hit all of them alike.
            for _ in range(reps):
                if have_curl:
                    results.setdefault("curl -o + sha256sum", []).extend(_time(curl, 1))
                results.setdefault("vae_lab (one pass, no fsync)", []).extend(_time(ours(False), 1))
                results.setdefault("vae_lab (one pass + fsync, default)", []).extend(_time(ours(True), 1))
                clean()
        rows = {}
        for name, times in results.items():
            med = statistics.median(times)
            rows[name] = {"seconds": round(med, 3), "MB_per_s": round(size / 1e6 / med, 1), "runs": len(times)}
        base = rows.get("curl -o + sha256sum")
        if base:
            for name, row in rows.items():
                row["ratio_vs_curl"] = round(row["seconds"] / base["seconds"], 2)
        return {"bench": "download", "size_bytes": size, "reps": reps, "cpus": os.cpu_count(), "results": rows}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _table(report: dict) -> str:
    lines = [f"Loopback download of {report['size_bytes'] / 1e6:.0f} MB to a verified file "
             f"(median of {report['reps']}, {report['cpus']} CPUs)", "",
             "| method | seconds | MB/s | time vs curl + sha256sum |", "|---|---|---|---|"]
    for name, row in report["results"].items():
        lines.append(f"| {name} | {row['seconds']:.3f} | {row['MB_per_s']:.0f} | {row.get('ratio_vs_curl', '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    rep = run(quick="--quick" in sys.argv)
    print(_table(rep))
    if "--json" in sys.argv:
        print(json.dumps(rep, indent=1))
