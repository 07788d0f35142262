"""Gradio 3.41 (A1111) and Gradio 4 (Forge) differences, kept in one place.

A1111 1.10 pins Gradio 3.41.2 (`source=`, `_js=`, `Component.update`); Forge runs Gradio 4
(`sources=[…]`, `js=`, only `gr.update`). The tab calls these helpers instead of spelling
either dialect, so the same code builds under both.
"""

from __future__ import annotations


def gradio_major() -> int:
    import gradio as gr

    try:
        return int(str(gr.__version__).split(".")[0])
    except ValueError:  # an odd dev build: assume the newer API
        return 4


def js_kwargs(js: str | None) -> dict:
    """The keyword that attaches browser-side code to an event listener."""
    if not js:
        return {}
    return {"_js": js} if gradio_major() < 4 else {"js": js}


def upload_image(**kwargs):
    """An image input that only takes uploads (no webcam/clipboard/editor), and from the API
    only files in Gradio's upload folder (never a server path or URL: `exposure.uploads_only`)."""
    import gradio as gr

    from vae_lab.ui.exposure import uploads_only

    if gradio_major() < 4:
        return uploads_only(gr.Image)(source="upload", **kwargs)
    return uploads_only(gr.Image)(sources=["upload"], **kwargs)


def upload_file(**kwargs):
    """A single-file input that takes uploads only (see `upload_image`)."""
    import gradio as gr

    from vae_lab.ui.exposure import uploads_only

    return uploads_only(gr.File)(**kwargs)


def update(**kwargs):
    """`gr.update(...)`, which both versions have (`Component.update` is gone in 4)."""
    import gradio as gr

    return gr.update(**kwargs)


def enable_queue(blocks, concurrency: int = 1, api_open: bool = True):
    """Turn on the queue (needed for progress bars and to keep the page responsive).

    `api_open=False`: queued events run only through the queue (the page's own route), not as
    direct REST calls."""
    extra = {} if api_open else {"api_open": False}
    if gradio_major() < 4:
        return blocks.queue(concurrency_count=concurrency, **extra)
    return blocks.queue(default_concurrency_limit=concurrency, **extra)


def file_output(**kwargs):
    """A read-only file list for downloads."""
    import gradio as gr

    return gr.File(file_count="multiple", interactive=False, **kwargs)


def event_kwargs() -> dict:
    """Keywords for every event listener of the tab: keep its handlers out of the API page
    (they are the UI's plumbing, unnamed and unstable, not an API)."""
    if gradio_major() < 4:
        return {"api_name": False}
    return {"api_name": False, "show_api": False}
