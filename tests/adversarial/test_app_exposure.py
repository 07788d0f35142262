"""`python -m vae_lab serve` attacked for real: over HTTP with `requests` (a local client that
forges payloads) and from a hostile page in Chromium on another origin (127.0.0.1, other port).

The server runs from the repository root (as `bash dev.sh serve` does), with its own
GRADIO_TEMP_DIR so the tests can see what it copied there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testkit.serve import running_app
from vae_folder import make_vae_folder

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("VAE_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _gradio_major() -> int:
    import gradio

    return int(gradio.__version__.split(".")[0])


@pytest.fixture(scope="module")
def app(tmp_path_factory, taef2_pair):
    """(base URL, VAE folder, Gradio temp folder) of a running `serve`."""
    folder = make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)
    temp = tmp_path_factory.mktemp("gradio-temp")
    log = tmp_path_factory.mktemp("log") / "serve.log"
    try:
        with running_app(folder, log, env={"GRADIO_TEMP_DIR": str(temp)}) as url:
            yield url, folder, temp
    except RuntimeError as err:
        pytest.fail(str(err))


def _config(url) -> dict:
    import requests

    return requests.get(url + "/config", timeout=10).json()


def _fn_index(config: dict, elem_id: str, event: str) -> int:
    ids = [c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id]
    assert ids, elem_id
    for i, dep in enumerate(config["dependencies"]):
        targets = dep.get("targets", [])
        if ids[0] in targets and dep.get("trigger") == event:  # Gradio 3.41
            return i
        if [ids[0], event] in [list(t) for t in targets if isinstance(t, (list, tuple))]:  # Gradio 4
            return i
    raise AssertionError(f"no {event} event on {elem_id}")


def _file_payload(path: str, orig_name: str) -> dict:
    if _gradio_major() < 4:
        return {"name": path, "is_file": True, "data": None, "orig_name": orig_name}
    return {"path": path, "orig_name": orig_name, "meta": {"_type": "gradio.FileData"}}


def _latent_file_change(url, payload):
    """Call the latent-file input's change event as the page would (a quick, unqueued event)."""
    import requests

    config = _config(url)
    fn = _fn_index(config, "vae_lab_latent_file", "change")
    body = {"fn_index": fn, "data": ["Latent file", payload, []], "session_hash": "attacker"}
    return requests.post(url + "/run/predict", json=body, timeout=30)


# --------------------------------------------------------------------------- HTTP, no browser


def test_file_route_serves_no_file_of_the_server(app):
    import requests

    url, folder, _ = app
    for target in ("/etc/passwd", "README.md", str(ROOT / "README.md"), str(ROOT / "vae_lab" / "paths.py"),
                   str(folder / "kl-f8-random-weights-1.safetensors"), str(Path.home() / ".bashrc"),
                   "http://127.0.0.1:1/"):
        r = requests.get(f"{url}/file={target}", timeout=10, allow_redirects=False)
        assert r.status_code in (403, 404), (target, r.status_code)
        assert b"root:" not in r.content and b"EXTENSION_ROOT" not in r.content and b"# VAE Lab" not in r.content
    r = requests.get(f"{url}/file/etc/passwd", timeout=10)  # Gradio's older spelling of the route
    assert r.status_code in (403, 404) and b"root:" not in r.content


def test_no_wildcard_cors_and_other_origins_are_refused(app):
    import requests

    url, _, _ = app
    own = requests.get(url + "/config", timeout=10)
    assert own.status_code == 200 and "vae_lab_vaes" in own.text
    assert not any(k.lower().startswith("access-control-") for k in own.headers)
    assert own.headers.get("Cross-Origin-Resource-Policy") == "same-origin"
    port = url.rsplit(":", 1)[1]
    # the page itself (its Origin is the app's): allowed
    assert requests.get(url + "/config", headers={"Origin": url}, timeout=10).status_code == 200
    for headers in ({"Origin": "http://127.0.0.1:1"}, {"Origin": f"http://localhost:{port}"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "same-site"}, {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},
                    # DNS rebinding: a name the attacker controls, pointed at 127.0.0.1
                    {"Host": f"attacker.example:{port}"}):
        r = requests.get(url + "/config", headers=headers, timeout=10)
        assert r.status_code == 403 and "vae_lab_vaes" not in r.text, headers
        assert not any(k.lower().startswith("access-control-") for k in r.headers)
    pre = requests.options(url + "/run/predict", timeout=10, headers={
        "Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert pre.status_code == 403 and "access-control-allow-origin" not in {k.lower() for k in pre.headers}
    # a link from another site to the page itself still opens it
    nav = requests.get(url + "/", timeout=10, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                                       "Sec-Fetch-Dest": "document"})
    assert nav.status_code == 200


def test_the_page_shows_no_server_path(app):
    url, folder, _ = app
    text = json.dumps(_config(url))
    assert str(folder) not in text and os.path.realpath(folder) not in text
    vaes = next(c for c in _config(url)["components"] if c.get("props", {}).get("elem_id") == "vae_lab_vaes")
    values = [c[1] if isinstance(c, (list, tuple)) else c for c in vaes["props"]["choices"]]
    assert values and all(v.startswith("vae-") and "/" not in v for v in values)


def test_a_server_path_in_a_file_payload_is_refused(app, tmp_path):
    url, _, temp = app
    secret = tmp_path / "secret-latents.pt"
    import torch

    torch.save({"latent_tensor": torch.zeros(1, 4, 8, 8)}, secret)
    before = {p.name for p in temp.rglob("*")}
    answers = []
    for target in ("/etc/passwd", str(secret), str(tmp_path / "no-such-file.pt")):
        r = _latent_file_change(url, _file_payload(target, "x.pt"))
        assert "1×4×8×8" not in r.text and "root:" not in r.text  # nothing read from the file
        assert not (r.status_code == 200 and "error" not in r.json()), r.text[:300]
        answers.append((r.status_code, r.text.replace(target, "<path>")))
    assert len(set(answers)) == 1, answers  # the same answer whether the file exists or not
    copied = {p.name for p in temp.rglob("*")} - before
    assert not copied & {"passwd", "secret-latents.pt"}, copied


def test_a_url_in_a_file_payload_is_not_fetched(app):
    """Gradio 4 downloads a URL named in a FileData payload: the server must not fetch it."""
    url, _, _ = app
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"internal")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        internal = f"http://127.0.0.1:{srv.server_address[1]}/internal.pt"
        r = _latent_file_change(url, _file_payload(internal, "internal.pt"))
        assert "internal" not in r.text.replace("internal.pt", "")
        assert hits == []
    finally:
        srv.shutdown()


def test_a_real_upload_works_and_the_note_names_the_users_file(app, tmp_path):
    import requests
    import torch

    url, _, temp = app
    lat = tmp_path / "my-latents.pt"
    torch.save({"latent_tensor": torch.zeros(1, 4, 8, 8)}, lat)
    with open(lat, "rb") as f:
        up = requests.post(url + "/upload", files={"files": ("my-latents.pt", f)}, timeout=30)
    assert up.status_code == 200
    server_path = up.json()[0]
    assert os.path.realpath(server_path).startswith(os.path.realpath(temp))
    r = _latent_file_change(url, _file_payload(server_path, "my-latents.pt"))
    assert r.status_code == 200, r.text[:300]
    assert "my-latents.pt: 1×4×8×8" in r.text
    assert str(temp) not in r.text and os.path.realpath(temp) not in r.text  # no server path in the note
    # the upload itself is served back (what the page shows), nothing beside it
    assert requests.get(f"{url}/file={server_path}", timeout=10).status_code == 200


# --------------------------------------------------------------------------- a hostile page in Chromium


ATTACK_JS = """async ({app, targets}) => {
  const out = {};
  async function tryFetch(name, url, opts) {
    try { const r = await fetch(url, opts); out[name] = {read: true, status: r.status, text: (await r.text()).slice(0, 1000000)}; }
    catch (e) { out[name] = {read: false, error: String(e)}; }
  }
  for (const [name, path] of Object.entries(targets)) await tryFetch(name, app + path);
  await tryFetch('api_server_path', app + '/run/predict', {method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({fn_index: 0, data: [], session_hash: 'x'})});
  await tryFetch('api_simple_post', app + '/run/predict', {method: 'POST', body: 'x'});
  out.xhr = await new Promise(res => { const x = new XMLHttpRequest(); x.open('GET', app + '/config');
      x.onload = () => res({read: true, text: x.responseText.slice(0, 200)}); x.onerror = () => res({read: false}); x.send(); });
  out.ws = await new Promise(res => { try { const ws = new WebSocket(app.replace('http', 'ws') + '/queue/join');
      let got = null; ws.onmessage = m => { got = String(m.data).slice(0, 100); };
      ws.onopen = () => setTimeout(() => res({opened: true, got}), 500);
      ws.onerror = () => res({opened: false}); ws.onclose = () => res({opened: false, got}); }
    catch (e) { res({opened: false, error: String(e)}); } });
  return out;
}"""


@pytest.fixture(scope="module")
def chromium():
    ok = os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is not None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        ok = False
    if not ok:
        if IN_CI:
            pytest.fail("chromium + playwright are needed (CI=true)")
        pytest.skip("no chromium/playwright")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        ctx = browser.new_context()
        ctx.route(re.compile(r".*"), lambda route: route.continue_()
                  if re.match(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]", route.request.url)
                  else route.abort())
        yield ctx
        browser.close()


@pytest.fixture(scope="module")
def attacker_site():
    """Another origin on this machine: a page served from 127.0.0.1 on another port."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<!doctype html><title>an innocent page</title><p>hello</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()


@pytest.mark.browser
def test_a_page_on_another_origin_reads_nothing(app, chromium, attacker_site):
    url, folder, _ = app
    targets = {"page": "/", "passwd": "/file=/etc/passwd", "repo_file": "/file=README.md",
               "repo_file_abs": "/file=" + str(ROOT / "README.md"), "config": "/config", "info": "/info",
               "vae_file": "/file=" + str(folder / "kl-f8-random-weights-1.safetensors")}
    page = chromium.new_page()
    page.goto(attacker_site)
    out = page.evaluate(ATTACK_JS, {"app": url, "targets": targets})
    for name in (*targets, "api_server_path", "api_simple_post", "xhr"):
        assert out[name]["read"] is False, (name, out[name])
    assert out["ws"]["opened"] is False or out["ws"].get("got") is None, out["ws"]

    # the same requests from the app's own page: the page works, the files stay closed
    own = chromium.new_page()
    own.goto(url + "/")
    own.wait_for_selector("#vae_lab_run")
    mine = own.evaluate(ATTACK_JS, {"app": url, "targets": targets})
    assert mine["config"]["read"] and mine["config"]["status"] == 200 and "vae_lab_vaes" in mine["config"]["text"]
    assert str(folder) not in mine["config"]["text"]
    for name in ("passwd", "repo_file", "repo_file_abs", "vae_file"):
        assert mine[name]["status"] in (403, 404) and "root:" not in mine[name]["text"], (name, mine[name])


def test_upload_inputs_take_only_files_from_the_upload_folder(tmp_path, monkeypatch):
    """Both dialects' copy hooks (3.41 `make_temp_copy_if_needed`, 4 `(async_)move_resource_to_block_cache`)."""
    import asyncio

    from vae_lab.ui import gradio_compat as compat
    from vae_lab.ui.exposure import NotAnUpload

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    uploaded = tmp_path / "gradio" / "abc" / "mine.pt"
    uploaded.parent.mkdir(parents=True)
    uploaded.write_bytes(b"x")
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"x")
    link = tmp_path / "gradio" / "abc" / "link.pt"  # a link inside the folder to a file outside it
    link.symlink_to(outside)
    for comp in (compat.upload_file(label="f"), compat.upload_image(label="i")):
        assert comp.get_block_name() in ("file", "image")
        hooks = [h for h in ("make_temp_copy_if_needed", "move_resource_to_block_cache") if hasattr(comp, h)]
        assert hooks
        for hook in hooks:
            for bad in ("/etc/passwd", str(outside), str(link), "http://127.0.0.1:1/x.pt", "../../etc/passwd"):
                with pytest.raises(NotAnUpload):
                    getattr(comp, hook)(bad)
            assert getattr(comp, hook)(str(uploaded))  # a real upload goes through
        if hasattr(comp, "async_move_resource_to_block_cache"):
            caught = []

            def attempt():  # its own thread: Playwright's loop may be running in this one
                try:
                    asyncio.run(comp.async_move_resource_to_block_cache("http://169.254.169.254/latest"))
                except NotAnUpload as err:
                    caught.append(err)

            t = threading.Thread(target=attempt)
            t.start()
            t.join(30)
            assert caught


def test_a_huge_body_is_refused_before_it_is_read(app):
    url, _, _ = app
    host, port = url.replace("http://", "").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /upload HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  f"Content-Length: {10 << 30}\r\n\r\n".encode())
        head = s.recv(200).decode("latin-1")
    assert head.startswith("HTTP/1.1 413")
