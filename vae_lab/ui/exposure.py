"""What the standalone app exposes, to whom, and what it accepts from the client.

`python -m vae_lab serve` is a web server on the user's machine that every page open in the
same browser can reach. Left to Gradio's defaults (3.41.2) it serves any file under the
working directory at `/file=`, copies any server path a client names in a File payload into
its temp folder, and answers every origin (`Access-Control-Allow-Origin: *`). Here:

* `OriginGuard` (an ASGI middleware around the whole app, HTTP and WebSocket) answers only
  requests that name this server in `Host` (an IP literal, `localhost`, or a name the operator
  allowed: no DNS rebinding) and that come from the page itself (`Origin`, when sent, is the
  app's own; `Sec-Fetch-Site` is same-origin or none). A cross-site top-level navigation to
  the page itself is let through, nothing else. It strips every CORS header, sends
  `Cross-Origin-Resource-Policy: same-origin` and `nosniff`, refuses `/proxy=`, serves
  `/file=` only inside Gradio's own temp folder, and bounds request bodies.
* `blocked_paths` / `allowed_paths` are set explicitly (the working directory, the extension,
  the home folder and the VAE folders are blocked; nothing is added).
* `uploads_only(component_class)`: File and Image inputs that accept a file path only if it
  lies in Gradio's upload folder (a real upload), never a server path or a URL from the client.
* `show_api=False`, and the queue's REST shortcut is closed (`api_open=False`).

The WebUI tab runs inside A1111/Forge's own server; there the upload check, the VAE ids
(`vae_ids`), the download host policy and the size limits apply, the rest is the WebUI's.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vae_lab.errors import VaeLabError

log = logging.getLogger("vae_lab.ui.exposure")

MAX_BODY_BYTES = 64 << 20  # one request body / WebSocket message: a 2048² PNG or a latent file fits
LOCAL_NAMES = frozenset({"localhost"})


class NotAnUpload(VaeLabError):
    """A client named a file that was not uploaded through this page."""


# --------------------------------------------------------------------------- files


def gradio_temp_dir() -> str:
    """Where Gradio keeps uploads and the files it serves (both 3.41 and 4 use this rule)."""
    root = os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")
    return os.path.realpath(root)


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([os.path.realpath(path), os.path.realpath(root)]) == os.path.realpath(root)
    except ValueError:  # different drives
        return False


def require_upload(path) -> str:
    """`path` as a real path if it is a regular file Gradio received as an upload; else `NotAnUpload`."""
    if not isinstance(path, (str, os.PathLike)):
        raise NotAnUpload("only files uploaded from this page are accepted")
    text = os.fspath(path)
    if "://" in text or not text:
        raise NotAnUpload("only files uploaded from this page are accepted (not a URL)")
    real = os.path.realpath(text)
    if not _inside(real, gradio_temp_dir()) or not os.path.isfile(real):
        raise NotAnUpload("only files uploaded from this page are accepted, not a path on the server")
    return real


def upload_name(f) -> str:
    """The name the user's file had, for messages; never the server's path to its copy."""
    if f is None:
        return ""
    name = getattr(f, "orig_name", None) or (f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", ""))
    return os.path.basename(os.fspath(name or "")) or "the uploaded file"


_upload_classes: dict[type, type] = {}


def uploads_only(base: type) -> type:
    """A subclass of a Gradio input component that takes only files from Gradio's upload folder.

    Gradio 3.41 copies a client-named path in `make_temp_copy_if_needed`, Gradio 4 in
    `(async_)move_resource_to_block_cache` (which also downloads URLs): each is checked first.
    The subclass keeps the base's block name, so the page draws it as the base component.
    """
    if base in _upload_classes:
        return _upload_classes[base]
    block_name = base.__name__.lower()

    def make_temp_copy_if_needed(self, file_path, *args, **kwargs):
        return base.make_temp_copy_if_needed(self, require_upload(file_path), *args, **kwargs)

    def move_resource_to_block_cache(self, url_or_file_path, *args, **kwargs):
        if url_or_file_path is None:
            return None
        return base.move_resource_to_block_cache(self, require_upload(url_or_file_path), *args, **kwargs)

    async def async_move_resource_to_block_cache(self, url_or_file_path, *args, **kwargs):
        if url_or_file_path is None:
            return None
        return await base.async_move_resource_to_block_cache(self, require_upload(url_or_file_path), *args, **kwargs)

    ns = {"get_block_name": lambda self: block_name, "__module__": __name__,
          "__doc__": f"{base.__name__} that accepts uploads only (vae_lab.ui.exposure)."}
    for name, fn in (("make_temp_copy_if_needed", make_temp_copy_if_needed),
                     ("move_resource_to_block_cache", move_resource_to_block_cache),
                     ("async_move_resource_to_block_cache", async_move_resource_to_block_cache)):
        if hasattr(base, name):
            ns[name] = fn
    cls = _plain_subclass(f"UploadOnly{base.__name__}", base, ns)
    _upload_classes[base] = cls
    return cls


def _plain_subclass(name: str, base: type, ns: dict) -> type:
    """`type(name, (base,), ns)` without Gradio 4's `ComponentMeta.__new__`, which writes a `.pyi`
    stub next to the module of every component subclass (it only wraps a new `__init__` and new
    `EVENTS`, and this subclass has neither)."""
    import abc

    meta = type(base)
    if isinstance(base, abc.ABCMeta) and meta.__new__ is not abc.ABCMeta.__new__:
        return abc.ABCMeta.__new__(meta, name, (base,), ns)
    return meta(name, (base,), ns)


def blocked_paths(extra=()) -> list[str]:
    """Folders `/file=` must never serve: the working directory, the extension, home, and `extra`.

    A folder that holds Gradio's own temp folder is left out (blocking it would block every
    upload and download); `OriginGuard` still serves nothing outside that temp folder.
    """
    from vae_lab.paths import EXTENSION_ROOT

    temp = gradio_temp_dir()
    out = []
    for p in [os.getcwd(), str(EXTENSION_ROOT), str(Path.home()), *extra]:
        if not p:
            continue
        real = os.path.realpath(p)
        if real not in out and not _inside(temp, real):
            out.append(real)
    return out


# --------------------------------------------------------------------------- requests


@dataclass
class Exposure:
    """Who the app answers. `allowed_hosts`: host names (besides IP literals and localhost)
    the app may be reached by, e.g. the machine's LAN name when serving on 0.0.0.0."""

    allowed_hosts: frozenset = field(default_factory=frozenset)
    file_roots: tuple = ()
    max_body: int = MAX_BODY_BYTES

    def host_allowed(self, host_header: str) -> bool:
        name = _host_name(host_header)
        if name is None:
            return False
        if name in LOCAL_NAMES or name in {h.lower() for h in self.allowed_hosts}:
            return True
        try:
            ipaddress.ip_address(name)
            return True  # an address literal cannot be re-pointed by DNS
        except ValueError:
            return False


def _host_name(host_header: str) -> str | None:
    try:
        p = urlsplit("//" + host_header.strip())
        name, _ = p.hostname, p.port
    except ValueError:
        return None
    return name.lower().rstrip(".") if name else None


class OriginGuard:
    """ASGI middleware: see the module doc. Refusals are a plain 403 (HTTP) or a closed handshake."""

    STRIP = (b"access-control-",)
    ADD = [(b"x-content-type-options", b"nosniff"), (b"cross-origin-resource-policy", b"same-origin"),
           (b"x-frame-options", b"SAMEORIGIN"), (b"referrer-policy", b"same-origin")]

    def __init__(self, app, exposure: Exposure):
        self.app = app
        self.exposure = exposure

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        reason = self.refusal(scope, headers)
        if reason is not None:
            log.warning("refused %s %s: %s", scope["type"], scope.get("path"), reason)
            return await _refuse(scope, send, reason)
        if scope["type"] == "http":
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.exposure.max_body:
                return await _refuse(scope, send, "request body too large", status=413)
            receive = self._bounded(receive)

        async def guarded_send(message):
            if message["type"] in ("http.response.start", "websocket.accept"):
                kept = [(k, v) for k, v in message.get("headers", []) if not k.lower().startswith(self.STRIP)]
                if message["type"] == "http.response.start":
                    kept += self.ADD
                message = dict(message, headers=kept)
            await send(message)

        return await self.app(scope, receive, guarded_send)

    def _bounded(self, receive):
        seen = 0
        limit = self.exposure.max_body

        async def bounded():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise VaeLabError("request body too large")
            return message
        return bounded

    def refusal(self, scope, headers) -> str | None:
        """Why this request is refused, or None."""
        host = headers.get("host", "")
        if not self.exposure.host_allowed(host):
            return f"Host {host!r} is not a name this app answers to (serve --allow-host NAME adds one)"
        origin = headers.get("origin")
        if origin is not None and not _same_origin(origin, host):
            return f"cross-origin request from {origin!r}"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            navigation = (scope["type"] == "http" and scope.get("method") == "GET"
                          and headers.get("sec-fetch-mode") == "navigate" and scope.get("path") in ("/", ""))
            if not navigation:
                return f"request from another site (Sec-Fetch-Site: {site})"
        if scope["type"] == "http":
            return self._path_refusal(scope.get("path", ""))
        return None

    def _path_refusal(self, path: str) -> str | None:
        if path.startswith("/proxy="):
            return "the proxy route is not offered"
        for prefix in ("/file=", "/file/"):
            if path.startswith(prefix):
                target = path[len(prefix):]
                if "://" in target or not any(_inside(target, r) for r in self.exposure.file_roots):
                    return "only files of this app's own temp folder are served"
        return None


def _same_origin(origin: str, host: str) -> bool:
    try:
        p = urlsplit(origin.strip())
    except ValueError:
        return False
    return p.scheme in ("http", "https") and bool(p.netloc) and p.netloc.lower() == host.strip().lower()


async def _refuse(scope, send, reason: str, status: int = 403) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = f"VAE Lab refused this request: {reason}\n".encode("utf-8", "replace")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), *OriginGuard.ADD]})
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- serving


def guarded_app(demo, exposure: Exposure | None = None, *, blocked=(), middleware=()):
    """The Gradio app for `demo`, mounted at `/` of a FastAPI app without API docs, inside `OriginGuard`
    (and inside it each of `middleware`, e.g. `app.LocalPage`)."""
    import gradio as gr
    from fastapi import FastAPI

    from vae_lab.ui import gradio_compat as compat

    exposure = exposure or Exposure()
    if not exposure.file_roots:
        exposure.file_roots = (gradio_temp_dir(),)
    os.makedirs(gradio_temp_dir(), exist_ok=True)
    demo.show_api = False
    paths = dict(allowed_paths=[], blocked_paths=blocked_paths(blocked))
    parent = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    if compat.gradio_major() < 4:
        demo.allowed_paths, demo.blocked_paths = paths["allowed_paths"], paths["blocked_paths"]
        app = gr.mount_gradio_app(parent, demo, path="/")
    else:
        app = gr.mount_gradio_app(parent, demo, path="/", max_file_size=exposure.max_body, **paths)
    for wrap in middleware:
        app = wrap(app)
    return OriginGuard(app, exposure)


def serve(demo, *, host: str, port: int, exposure: Exposure | None = None, blocked=(),
          inbrowser: bool = False, middleware=()) -> None:
    """Serve `demo` behind `OriginGuard` with uvicorn until interrupted."""
    import threading
    import webbrowser

    import uvicorn

    app = guarded_app(demo, exposure, blocked=blocked, middleware=middleware)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws_max_size=MAX_BODY_BYTES,
                            server_header=False)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    print(f"VAE Lab running on {url}", flush=True)
    if inbrowser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    server.run()
