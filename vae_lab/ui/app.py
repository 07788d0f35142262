"""The standalone comparison app: the tab (`vae_lab.ui.tab`) in a page of its own.

Inside the WebUI, A1111 loads `javascript/*.js` and `style.css` itself. Here the app does it:
the CSS goes into `gr.Blocks(css=...)` and the script runs once from a page-load event with
browser-side code only (`_js=` on Gradio 3.41, `js=` on Gradio 4), which both versions have.
"""

from __future__ import annotations

import errno
import logging
import re
import socket

from vae_lab.ui import gradio_compat as compat
from vae_lab.errors import VaeLabError

from vae_lab.paths import EXTENSION_ROOT as ROOT
SCRIPT = ROOT / "javascript" / "vae_lab.js"
STYLE = ROOT / "style.css"
TITLE = "VAE Lab"
# the page only (inside the WebUI the tab takes the WebUI's full width already)
APP_CSS = "\n.gradio-container { max-width: 1680px !important; }\n"
# system fonts: the default theme's Google fonts would be fetched from a CDN by every page load
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Consolas", "Liberation Mono", "monospace"]
# what Gradio's page template asks of other hosts: font preconnects and the iframe-resizer script
_CDN_TAGS = re.compile(
    rb'<link\s[^>]*href="https://fonts\.(?:googleapis|gstatic)\.com"[^>]*>'
    rb'|<script\s[^>]*src="https://[^"]*"[^>]*>\s*</script>'
)
log = logging.getLogger("vae_lab.ui.app")


def page_assets() -> tuple[str, str]:
    """(css, js) as the WebUI would load them from the extension folder."""
    return STYLE.read_text(encoding="utf-8"), SCRIPT.read_text(encoding="utf-8")


DEFAULT_CONCURRENCY = 2  # comparisons that run at once; the others wait in the queue


def build_app(context=None, concurrency: int = DEFAULT_CONCURRENCY):
    """The tab wrapped as a page: CSS, the script, and the queue (progress bars, Stop).

    `concurrency` > 1: one user's long comparison does not hold everyone else's; the quick
    events (source switch, refresh, Stop) skip the queue anyway.
    """
    import gradio as gr

    from vae_lab.ui.tab import build_tab

    css, js = page_assets()
    theme = gr.themes.Default(font=SANS, font_mono=MONO)
    demo = build_tab(context, css=css + APP_CSS, title=TITLE, theme=theme)
    with demo:
        # runs the classic script once, in the page's global scope, when the page loads
        demo.load(None, None, None, **compat.js_kwargs("() => {\n" + js + "\n}"), **compat.event_kwargs())
    return compat.enable_queue(demo, concurrency=max(1, int(concurrency)), api_open=False)


def check_port(host: str, port: int) -> None:
    """A clear error for a port that is taken, before Gradio prints a traceback for it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        # like uvicorn: a port left in TIME_WAIT by a previous run is free to use
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise VaeLabError(f"port {port} on {host} is already in use: pass --port with a free one") from None
            raise VaeLabError(f"cannot listen on {host}:{port}: {err.strerror}") from None


def page_url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


class LocalPage:
    """ASGI middleware: drops the tags in Gradio's HTML page that load files from other hosts
    (font preconnects, the iframe-resizer script from cdnjs), so the app makes no request
    beyond the machine it runs on. Everything else passes through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        held: dict = {}
        chunks: list[bytes] = []

        async def rewrite(message):
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers") or []).get(b"content-type", b"")
                if ctype.startswith(b"text/html"):
                    held["start"] = message
                    return
                held["pass"] = True
            if held.get("pass") or "start" not in held or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = _CDN_TAGS.sub(b"", b"".join(chunks))
            start = held["start"]
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": headers + [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def launch(context, host: str = "127.0.0.1", port: int = 7861, inbrowser: bool = False, *,
           allowed_hosts=(), concurrency: int = DEFAULT_CONCURRENCY):
    """Serve the app until interrupted, behind `exposure.OriginGuard` (see `vae_lab.ui.exposure`)."""
    from vae_lab.ui import exposure

    check_port(host, port)
    demo = build_app(context, concurrency=concurrency)
    folders = list(getattr(context, "vae_dirs", None) or []) + [getattr(context, "download_dir", None) or ""]
    exposure.serve(demo, host=host, port=port, inbrowser=inbrowser,
                   exposure=exposure.Exposure(allowed_hosts=frozenset(allowed_hosts)), blocked=folders,
                   middleware=(LocalPage,))
    return demo
