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


def build_app(context=None):
    """The tab wrapped as a page: CSS, the script, and the queue (progress bars, Stop)."""
    from vae_lab.ui.tab import build_tab

    import gradio as gr

    css, js = page_assets()
    theme = gr.themes.Default(font=SANS, font_mono=MONO)
    demo = build_tab(context, css=css + APP_CSS, title=TITLE, theme=theme)
    with demo:
        # runs the classic script once, in the page's global scope, when the page loads
        demo.load(None, None, None, **compat.js_kwargs("() => {\n" + js + "\n}"))
    return compat.enable_queue(demo)


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


def local_app(demo):
    """The app as an ASGI application: Gradio mounted at / behind `LocalPage`, no API docs."""
    import fastapi
    import gradio as gr

    demo.show_api = False
    outer = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    return LocalPage(gr.mount_gradio_app(outer, demo, path="/"))


def launch(context, host: str = "127.0.0.1", port: int = 7861, share: bool = False, inbrowser: bool = False):
    """Serve the app until interrupted.

    Served by uvicorn directly (Gradio's own `launch` would serve its page with the CDN tags);
    `share` needs Gradio's tunnel, so it goes through `launch`, which is online anyway."""
    check_port(host, port)
    demo = build_app(context)
    if share:
        demo.launch(server_name=host, server_port=port, share=True, inbrowser=inbrowser, show_api=False, quiet=False)
        return demo
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(local_app(demo), host=host, port=port, log_level="warning"))
    url = page_url(host, port)
    log.info("serving %s", url)
    if inbrowser:
        import threading
        import webbrowser

        threading.Timer(1.5, webbrowser.open, [url]).start()
    server.run()
    return demo
