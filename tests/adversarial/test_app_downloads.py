"""The app's "Get VAEs" box as a server-side request forgery: local targets, redirects to other
hosts and ports, DNS rebinding, responses that carry someone else's data, a 1-byte-per-second
server. Every server here is on 127.0.0.1 (the stand-in for "inside the user's network")."""

from __future__ import annotations

import ipaddress
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from httpserver import FileServer
from vae_lab.download import policy as policy_mod
from vae_lab.download import transfer
from vae_lab.download.policy import HostPolicy, RefusedHost
from vae_lab.errors import DownloadError, DownloadTimedOut
from vae_lab.ui import tab as ui

SECRET = b'{"access_token": "SECRET-internal-0123456789", "role": "admin"}'


def _weights() -> bytes:
    from safetensors.torch import save as save_bytes

    from factories import TINY_KL, random_kl_state_dict

    return save_bytes(random_kl_state_dict(TINY_KL, seed=1))


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "VAE"
    d.mkdir()
    return d


def _listed(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def test_the_tab_refuses_local_hosts_without_a_request(folder):
    with FileServer() as srv:
        srv.add_file("/vae.safetensors", _weights())
        logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)]))
        for url in (srv.url("/vae.safetensors"), srv.url("/vae.safetensors", host="localhost"),
                    f"http://[::ffff:127.0.0.1]:{srv.port}/vae.safetensors",
                    "http://169.254.169.254/latest/meta-data/vae.safetensors", "http://10.0.0.1/vae.safetensors"):
            with pytest.raises(RefusedHost, match="local or private address"):
                logic.download(None, url)
        assert srv.requests_for("/vae.safetensors") == []
    assert _listed(folder) == []


def test_the_operator_can_allow_local_downloads(folder):
    with FileServer() as srv:
        srv.add_file("/vae.safetensors", _weights())
        logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)], download_policy=HostPolicy(allow_local=True)))
        assert logic.download(None, srv.url("/vae.safetensors")).startswith("Saved vae.safetensors")
    assert _listed(folder) == ["vae.safetensors"]


class _OnlyThisLoopback(HostPolicy):
    """Treats 127.0.0.1 as the 'public' internet and every other address as local (for tests)."""

    def allows(self, addr) -> bool:
        return str(policy_mod._ip(str(addr))) == "127.0.0.1"


def test_every_redirect_hop_is_checked(folder):
    """A public server that redirects to an internal one (another address, another port)."""
    with FileServer() as public, FileServer() as internal:
        internal.add_file("/vae.safetensors", _weights())
        target = internal.url("/vae.safetensors").replace("127.0.0.1", "127.0.0.2")
        public.script("/vae.safetensors", {"redirect": target})
        with pytest.raises(RefusedHost, match="127.0.0.2"):
            policy = _OnlyThisLoopback()
            transfer.download(public.url("/vae.safetensors"), folder, policy=policy, session=policy.session(),
                              console=False, retries=0)
        assert len(public.requests_for("/vae.safetensors")) == 1
        assert internal.requests_for("/vae.safetensors") == []
    assert _listed(folder) == []


def test_dns_rebinding_is_caught_at_the_connection(folder, monkeypatch):
    """The name resolves to a public address when checked and to 127.0.0.1 when connected."""
    monkeypatch.setattr(policy_mod, "_addresses", lambda host, port: [ipaddress.ip_address("93.184.216.34")])
    with FileServer() as srv:
        srv.add_file("/vae.safetensors", _weights())
        t0 = time.monotonic()
        with pytest.raises(RefusedHost, match="127.0.0.1"):
            transfer.download(srv.url("/vae.safetensors"), folder, policy=HostPolicy(), session=HostPolicy().session(),
                              console=False)
        assert time.monotonic() - t0 < 5  # refused, not retried as a network failure
        assert srv.requests_for("/vae.safetensors") == []  # connected, refused before a byte was sent
    assert _listed(folder) == []


def test_a_refused_response_is_described_never_echoed(folder):
    with FileServer() as srv:
        srv.add_file("/secret.safetensors", b"")
        srv.script("/secret.safetensors", {"body": SECRET, "content_type": "application/json"})
        with pytest.raises(DownloadError) as err:
            transfer.download(srv.url("/secret.safetensors"), folder, console=False, retries=0)
        assert "SECRET" not in str(err.value) and "access_token" not in str(err.value)
        assert "JSON" in str(err.value) and "application/json" in str(err.value)


def test_a_servers_reason_phrase_is_not_echoed(folder):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(418, "SECRET-internal-0123456789")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DownloadError) as err:
            transfer.download(f"http://127.0.0.1:{srv.server_address[1]}/x.safetensors", folder, console=False,
                              retries=0)
        assert "418" in str(err.value) and "SECRET" not in str(err.value)
    finally:
        srv.shutdown()


def test_a_one_byte_per_second_server_cannot_hold_a_download(folder):
    stop = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            data = _weights()
            for i in range(100000):
                if stop.is_set():
                    return
                try:
                    self.wfile.write(data[i:i + 1] or b"\0")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)], download_policy=HostPolicy(allow_local=True),
                                         download_seconds=2))
        t0 = time.monotonic()
        with pytest.raises(DownloadTimedOut, match="2 s") as err:
            logic.download(None, f"http://127.0.0.1:{srv.server_address[1]}/slow.safetensors")
        assert time.monotonic() - t0 < 10 and "\n" not in str(err.value)
    finally:
        stop.set()
        srv.shutdown()
    assert _listed(folder) == []


def test_the_serve_flag_reaches_the_tab(monkeypatch, tmp_path):
    """`serve --allow-local-downloads` is the only way the app downloads from a local host."""
    from vae_lab.cli import serve as serve_cli
    from vae_lab.cli.main import main

    seen = {}
    monkeypatch.setattr("vae_lab.ui.app.launch", lambda context, **kw: seen.setdefault("ctx", context))
    monkeypatch.setattr("vae_lab.ui.app.check_port", lambda host, port: None)
    assert main(["serve", "--vae-dir", str(tmp_path)]) == 0
    assert seen.pop("ctx").download_policy == HostPolicy(allow_local=False)
    assert main(["serve", "--vae-dir", str(tmp_path), "--allow-local-downloads", "--download-minutes", "5"]) == 0
    ctx = seen.pop("ctx")
    assert ctx.download_policy == HostPolicy(allow_local=True) and ctx.download_seconds == 300
    assert serve_cli  # the module under test
