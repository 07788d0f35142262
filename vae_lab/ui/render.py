"""The tab's HTML: the side-by-side view, the before/after pair, the metrics table and the
status line, from a `CompareResult`. Plain functions of their inputs, no Gradio.

The side-by-side view is plain HTML (`<img>` PNG data URIs in equal cells) so that
`javascript/vae_lab.js` can zoom and pan every image of a view together with one CSS
transform; the same script drives the before/after slider of the pair view.
"""

from __future__ import annotations

import base64
import html
import io
import re

from vae_lab.compare.report import caption_lines, family_label

REFERENCE_LABEL = "Reference"


def png_data_uri(arr) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _cell(title: str, lines: list[str], img=None, error: str | None = None, cls: str = "") -> str:
    caption = "".join(f"<span>{html.escape(line)}</span>" for line in lines)
    if error is not None:
        body = f'<div class="vae-lab-error" role="alert">{html.escape(error)}</div>'
    else:
        body = (
            f'<div class="vae-lab-frame"><img class="vae-lab-zoom" draggable="false" alt="{html.escape(title)}" '
            f'src="{png_data_uri(img)}"></div>'
        )
    return (
        f'<figure class="vae-lab-cell {cls}" data-name="{html.escape(title)}">{body}'
        f'<figcaption><b>{html.escape(title)}</b>{caption}</figcaption></figure>'
    )


def render_view(result) -> str:
    """The side-by-side view: the reference first (if any), then one cell per VAE."""
    cells = []
    if result.reference_image is not None:
        cells.append(_cell(REFERENCE_LABEL, [result.reference_label or ""], result.reference_image, cls="vae-lab-ref"))
    for o in result.outcomes:
        if o.error or o.image is None:
            cells.append(_cell(o.name, [family_label(o.family)], error=o.error or "no image", cls="vae-lab-failed"))
        else:
            cells.append(_cell(o.name, caption_lines(o), o.image))
    hint = "wheel: zoom · drag: pan · double-click: reset — all images move together"
    return (
        f'<div class="vae-lab-sync vae-lab-grid" style="--vae-lab-cols:{min(len(cells), 4) or 1}">{"".join(cells)}</div>'
        f'<p class="vae-lab-hint">{hint}</p>'
    )


def render_pair(a_name: str, a_img, b_name: str, b_img, diff, gain: float) -> str:
    """Before/after slider of two images next to their amplified difference map."""
    a, b = html.escape(a_name), html.escape(b_name)
    slider = (
        '<figure class="vae-lab-cell vae-lab-ba-cell">'
        f'<div class="vae-lab-frame vae-lab-ba" style="--vae-lab-pos:50%">'
        f'<img class="vae-lab-zoom" draggable="false" alt="{b}" src="{png_data_uri(b_img)}">'
        f'<div class="vae-lab-ba-top"><img class="vae-lab-zoom" draggable="false" alt="{a}" src="{png_data_uri(a_img)}"></div>'
        '<div class="vae-lab-ba-line"></div></div>'
        '<input class="vae-lab-ba-range" type="range" min="0" max="100" value="50" aria-label="before/after">'
        f"<figcaption><b>{a} ◀ ▶ {b}</b><span>drag the slider to wipe between them</span></figcaption></figure>"
    )
    return (
        f'<div class="vae-lab-sync vae-lab-grid vae-lab-pair" style="--vae-lab-cols:2">{slider}'
        + _cell(f"|{a_name} − {b_name}| × {gain:g}", ["difference map (brighter = larger difference)"], diff)
        + "</div>"
    )


def metrics_table(result) -> tuple[list[str], list[list]]:
    """(headers, rows) for the metrics Dataframe; an empty LPIPS column says why in its header."""
    headers, rows = result.display_rows()
    if result.lpips_note and "LPIPS" in headers:
        headers = [f"LPIPS ({_lpips_reason(result.lpips_note)})" if h == "LPIPS" else h for h in headers]
    return headers, rows


def _lpips_reason(note: str) -> str:
    """'LPIPS: no local weights (see README)' -> 'no local weights' (the status line has the rest)."""
    reason = note.split(":", 1)[1].strip() if note.lower().startswith("lpips:") else note
    return re.sub(r"\s*\(.*?\)\s*$", "", reason) or reason


def status_line(result) -> str:
    """One Markdown line under the run: how many decoded, what failed, what the metrics lack."""
    ok = sum(1 for o in result.outcomes if o.error is None and o.image is not None)
    parts = [f"**{ok} of {len(result.outcomes)} VAEs decoded**" + (" — cancelled." if result.cancelled else ".")]
    if result.reference_label:
        parts.append(f"Reference: {result.reference_label}.")
    for note in (result.metrics_note, result.lpips_note):
        if note:
            parts.append(note.rstrip(".") + ".")
    return " ".join(parts)


def pair_labels(result) -> dict[str, int]:
    """Unique dropdown labels → entry index (`CompareResult.entries()`), for entries with an image."""
    out: dict[str, int] = {}
    for i, (label, img) in enumerate(result.entries()):
        if img is None:
            continue
        name, n = label, 2
        while name in out:
            name, n = f"{label} ({n})", n + 1
        out[name] = i
    return out
