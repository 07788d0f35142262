"""`python -m vae_lab serve` in a child process, for tests and benchmarks that drive the real app."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(vae_dir, log_path, *, env=None, args=(), wait_s: float = 90):
    """Start `serve` on a free port from the repository root (as `bash dev.sh serve` does) and yield
    its base URL ("http://127.0.0.1:PORT") once `/` answers 200; stop it afterwards.

    Raises RuntimeError with the end of the server's log when it exits or does not answer in time."""
    port = free_port()
    full_env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
                    PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), **(env or {}))
    log_path = Path(log_path)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vae_lab", "serve", "--port", str(port),
                                 "--vae-dir", str(vae_dir), *args],
                                cwd=str(ROOT), env=full_env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not answer in {wait_s:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
