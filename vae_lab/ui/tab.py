"""The comparison tab: one Gradio UI for the WebUI (`on_ui_tabs`) and the standalone app.

`build_tab(context)` returns a `gr.Blocks`. Everything it needs from its host comes in the
`UiContext`: the VAE folders, how to list them, where the last generation's latents are,
where downloads go and whom to tell when the VAE list changed. It imports nothing of the
WebUI, and nothing heavy until it is called.

The side-by-side view is plain HTML (`<img>` PNG data URIs in equal cells) so that
`javascript/vae_lab.js` can zoom and pan every image of a view together with one CSS
transform; the same script drives the before/after slider of the pair view.
"""

# No `from __future__ import annotations` here: Gradio reads the `gr.Request` / `gr.Progress`
# annotations of the event handlers at run time.
import base64
import contextlib
import html
import io
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vae_lab.ui import gradio_compat as compat
from vae_lab.compare.runner import caption_lines, family_label, format_bytes
from vae_lab.errors import VaeLabError
from vae_lab.ui import exposure, vae_ids

SOURCE_IMAGE = "Image (round trip)"
SOURCE_LAST = "Last generation's latents"
SOURCE_FILE = "Latent file"
SOURCES = [SOURCE_IMAGE, SOURCE_LAST, SOURCE_FILE]
ENCODER_FIRST = "First VAE's encoder"
ENCODER_OWN = "Each VAE's own encoder"
PRECISIONS = ["auto", "fp32", "fp16", "bf16"]
TILINGS = ["auto", "off", "on"]
NO_REFERENCE = "(none)"
REFERENCE_LABEL = "Reference"
VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass
class VaeEntry:
    """One VAE file offered in the multi-select."""

    path: str
    name: str
    family: str | None = None  # "sd1", "sdxl", … or None when unknown
    kind: str | None = None  # "kl" | "tae"
    latent_channels: int | None = None
    sha256: str | None = None  # full-file SHA-256 (identity; matched against the catalog)
    error: str | None = None  # why it could not be identified (still offered: the run says more)

    @property
    def label(self) -> str:
        if self.error:
            return f"{self.name} · ⚠ not readable"
        fam = family_label(self.family) or "unknown family"
        return f"{self.name} · {fam}" + (f" · {self.latent_channels} ch" if self.latent_channels else "")


@dataclass
class UiContext:
    """What the host gives the tab.

    vae_dirs: folders scanned for VAE files (the WebUI passes `models/VAE` and `--vae-dir`).
    list_vaes: returns the `VaeEntry` list for the multi-select; default: `scan_vae_dirs(vae_dirs)`.
    last_latents: returns the last generation's `LastLatents` or None
        (default `vae_lab.runtime.last_latents.get`).
    download_dir: where "Get VAEs" saves files (default: the first of `vae_dirs`).
    on_vaes_changed: called after a download (the WebUI refreshes its `sd_vae` list).
    extra: called with the `TabUi` inside the tab's input column (the WebUI adds its
        per-checkpoint controls there).
    device: torch device string for encode/decode, or None for the engine's choice.
    lock: held while encoding/decoding (the WebUI passes `modules.call_queue.queue_lock`, so a
        comparison waits for a running generation instead of competing for GPU memory).
    tokens: returns the download tokens from the host's settings (`{"hf": …, "civitai": …}`);
        None means the `HF_TOKEN` / `CIVITAI_API_TOKEN` environment variables only.
    precision: returns the default precision shown in the tab (the WebUI's "VAE Lab" setting).
    vae_list_outputs: returns the host's own components that list VAEs, each with a function
        giving its `gr.update` keywords; after a download they are updated too (the WebUI's
        Settings "SD VAE" dropdown, so a new file is in it at once).
    """

    vae_dirs: list[str] = field(default_factory=list)
    list_vaes: Callable[[], list[VaeEntry]] | None = None
    last_latents: Callable[[], Any] | None = None
    download_dir: str | None = None
    on_vaes_changed: Callable[[], None] | None = None
    extra: Callable[["TabUi"], None] | None = None
    device: str | None = None
    lock: Any = None
    tokens: Callable[[], dict] | None = None
    precision: Callable[[], str] | None = None
    vae_list_outputs: Callable[[], list] | None = None
    # app-hostile: what one request may ask for (vae_lab.limits / download.policy / ui.exposure)
    limits: Any = None  # `vae_lab.limits.Limits`; None: `Limits.default()`
    download_policy: Any = None  # `vae_lab.download.policy.HostPolicy`; None: public hosts only
    download_seconds: float | None = None  # overall limit of one download; None: the default

    def default_precision(self) -> str:
        value = self.precision() if self.precision else "auto"
        return value if value in PRECISIONS else "auto"

    def entries(self) -> list[VaeEntry]:
        return list(self.list_vaes() if self.list_vaes else scan_vae_dirs(self.vae_dirs))

    def get_last_latents(self):
        if self.last_latents is not None:
            return self.last_latents()
        from vae_lab.runtime import last_latents

        return last_latents.get()

    def target_dir(self) -> str:
        if self.download_dir:
            return self.download_dir
        if self.vae_dirs:
            return self.vae_dirs[0]
        raise VaeLabError("no VAE folder to download into (pass --vae-dir)")


@dataclass
class TabUi:
    """The tab's components, handed to `UiContext.extra` so a host can wire its own controls."""

    blocks: Any
    vaes: Any
    run: Any
    status: Any
    components: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Listing VAE files


_identity_cache: dict[tuple[str, int, int], VaeEntry] = {}


def scan_vae_dirs(dirs) -> list[VaeEntry]:
    """Every VAE file under `dirs` (recursively), identified once per (path, size, mtime).

    A TAE pair (`x_decoder.pth` + `x_encoder.pth`) is one entry, the decoder file.
    """
    found: list[VaeEntry] = []
    seen: set[str] = set()
    for root in dirs:
        if not root or not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            names = set(filenames)
            for fn in sorted(filenames):
                if fn.startswith(".") or not fn.lower().endswith(VAE_SUFFIXES):
                    continue
                stem, ext = os.path.splitext(fn)
                if stem.endswith("_encoder") and stem[: -len("_encoder")] + "_decoder" + ext in names:
                    continue  # offered through its decoder
                path = os.path.realpath(os.path.join(dirpath, fn))
                if path in seen:
                    continue
                seen.add(path)
                found.append(_identify(os.path.join(dirpath, fn)))
    return found


def _identify(path: str) -> VaeEntry:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _identity_cache:
        return _identity_cache[key]
    name = os.path.basename(path)
    try:
        from vae_lab.identity.identify import inspect
    except ImportError:  # identification not installed: offer the file, the run says more
        entry = VaeEntry(path, name)
    else:
        try:
            info = inspect(path)
            entry = VaeEntry(
                path,
                name,
                family=None if info.family in (None, "unknown") else info.family,
                kind=info.kind,
                latent_channels=info.latent_channels,
                sha256=getattr(info, "file_sha256", None),
            )
        except VaeLabError as err:
            entry = VaeEntry(path, name, error=str(err))
    _identity_cache[key] = entry
    return entry


def incompatibility(entry: VaeEntry, channels: int | None, family: str | None) -> str | None:
    """Why `entry` cannot decode latents of `channels`/`family`, or None if it can (or may)."""
    if entry.error:
        return entry.error
    if channels and entry.latent_channels and entry.latent_channels != channels:
        return f"{entry.latent_channels}-channel VAE, latents have {channels}"
    if family and entry.family and entry.family != family:
        return f"{family_label(entry.family)} VAE, latents are {family_label(family)}"
    return None


def vae_choices(entries, channels=None, family=None) -> list[tuple[str, str]]:
    """(label, path) pairs for the multi-select; incompatible VAEs are marked with the reason.

    The marked ones are disabled in the page by `vae_lab.js` (class `vae-lab-incompatible`
    is set on inputs whose label starts with "✕").
    """
    choices = []
    for e in entries:
        why = incompatibility(e, channels, family) if (channels or family) else None
        choices.append((f"✕ {e.label} — {why}" if why else e.label, vae_ids.vae_id(e)))  # never a path
    return choices


# ---------------------------------------------------------------------------------------
# Inputs


def load_latent_input(source, latent_file, context: UiContext):
    """(latents tensor, family or None, description) for the chosen latent source."""
    if source == SOURCE_LAST:
        last = context.get_last_latents()
        if last is None:
            raise VaeLabError("no generation's latents yet: generate an image first, or use an image or a latent file")
        b, c, h, w = last.latents.shape
        what = f"last generation: {b}×{c}×{h}×{w}" + (f" ({last.family})" if last.family else "")
        return last.latents, last.family, what
    path = _file_path(latent_file)
    if not path:
        raise VaeLabError("choose a latent file (.safetensors or .pt)")
    from vae_lab.files import latents as latent_files

    name = exposure.upload_name(latent_file)  # app-hostile: the File input took uploads only
    try:
        t, meta = latent_files.load_latents(path)
    except VaeLabError as err:  # app-hostile: the user's file name, never the server's path
        raise type(err)(str(err).replace(path, name)) from None
    except Exception as err:  # never let a bad upload break the tab: one line, like every error
        raise VaeLabError(f"{name}: could not read latents ({type(err).__name__})") from None
    family = meta.get("family") or None
    b, c, h, w = t.shape
    return t, family, f"{name}: {b}×{c}×{h}×{w}" + (f" ({family})" if family else "")


def _file_path(f) -> str | None:
    if f is None:
        return None
    if isinstance(f, (str, os.PathLike)):
        return str(f)
    return getattr(f, "name", None)


def _tile_value(tiling: str):
    return {"auto": "auto", "off": False, "on": True}.get(tiling, "auto")


# ---------------------------------------------------------------------------------------
# Rendering


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


def write_downloads(result, folder: str) -> list[str]:
    """The table as CSV and JSON and the side-by-side grid as PNG, in `folder`."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for name, text in (("vae_lab_metrics.csv", result.to_csv()), ("vae_lab_metrics.json", result.to_json())):
        p = os.path.join(folder, name)
        Path(p).write_text(text, encoding="utf-8")
        paths.append(p)
    p = os.path.join(folder, "vae_lab_grid.png")
    result.grid().save(p, compress_level=3)
    paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------
# Handlers (plain functions: tests call them without a browser)


class _Cancels:
    """One cancel flag per browser session, set by the Stop button."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events: dict[str, threading.Event] = {}

    def fresh(self, key: str) -> threading.Event:
        with self._lock:
            ev = self._events[key] = threading.Event()
            return ev

    def cancel(self, key: str) -> None:
        with self._lock:
            ev = self._events.get(key)
        if ev is not None:
            ev.set()


class TabLogic:
    """What the tab's buttons do; holds the context and nothing of Gradio's components."""

    KEEP_RUNS = 8  # download folders (CSV/JSON/grid) kept per tab

    def __init__(self, context: UiContext):
        self.context = context
        self.cancels = _Cancels()
        self._out_root = tempfile.mkdtemp(prefix="vae_lab_ui_")

    # -- VAE list ------------------------------------------------------------------------
    def choices_for(self, source, latent_file=None):
        """(multi-select choices, reference choices, note) for the chosen input."""
        entries = self.context.entries()
        channels = family = None
        note = ""
        if source != SOURCE_IMAGE:
            try:
                t, family, note = load_latent_input(source, latent_file, self.context)
                channels = int(t.shape[1])
            except VaeLabError as err:
                note = str(err)
        choices = vae_choices(entries, channels, family)
        # Gradio 3.41 dropdowns take plain strings: the reference is chosen by its label
        refs = [NO_REFERENCE] + [label for (label, p) in choices if not label.startswith("✕")]
        return choices, refs, note

    def reference_path(self, label) -> str | None:
        if label in (None, "", NO_REFERENCE):
            return None
        for e in self.context.entries():
            if e.label == label:
                return e.path
        raise VaeLabError(f"reference VAE {label!r} is no longer in the VAE folder: refresh the list")

    def on_source(self, source, latent_file, selected):
        choices, refs, note = self.choices_for(source, latent_file)
        valid = {p for (label, p) in choices if not label.startswith("✕")}
        latent_mode = source != SOURCE_IMAGE
        return (
            compat.update(visible=source == SOURCE_IMAGE),
            compat.update(visible=source == SOURCE_FILE),
            compat.update(value=note, visible=latent_mode),
            compat.update(choices=choices, value=[p for p in (selected or []) if p in valid]),
            compat.update(visible=not latent_mode),
            compat.update(visible=latent_mode, choices=refs, value=NO_REFERENCE),
        )

    def refresh(self, source, latent_file, selected):
        for key in list(_identity_cache):
            if not os.path.exists(key[0]):
                _identity_cache.pop(key, None)
        updates = self.on_source(source, latent_file, selected)
        return updates[3], updates[5]

    # -- the comparison ------------------------------------------------------------------
    def request(self, source, image, latent_file, vaes, encoder, precision, tiling, reference):
        from vae_lab.compare.runner import CompareRequest

        if not vaes:
            raise VaeLabError("choose at least one VAE")
        # app-hostile: ids the server gave out -> entries of its own list; sizes within the limits
        paths = vae_ids.resolve_paths(vaes, self.context.entries())
        limits = self.limits()
        kw = dict(vae_paths=paths, precision=precision or "auto", tile=_tile_value(tiling or "auto"))
        if source == SOURCE_IMAGE:
            if image is None:
                raise VaeLabError("upload an image first")
            import numpy as np

            arr = np.asarray(image)
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=-1)
            arr = arr[..., :3].astype("uint8")
            limits.check_image(arr.shape[1], arr.shape[0])
            return CompareRequest(image=arr, latents=None, encoder="own" if encoder == ENCODER_OWN else "first", **kw)
        latents, family, _ = load_latent_input(source, latent_file, self.context)
        limits.check_latents(latents.shape)
        return CompareRequest(image=None, latents=latents, latents_family=family,
                              reference=self.reference_path(reference), **kw)

    def limits(self):
        from vae_lab.limits import Limits

        return self.context.limits or Limits.default()

    def run(self, source, image, latent_file, vaes, encoder, precision, tiling, reference, session="", progress=None):
        """Run the comparison; returns (view html, table, files, status, result)."""
        from vae_lab.compare.runner import default_cache, run_compare
        from vae_lab.ui.cancelling import with_cancel

        req = self.request(source, image, latent_file, vaes, encoder, precision, tiling, reference)
        cancel = self.cancels.fresh(session or "default")
        device = self.context.device
        if progress is not None and self.context.lock is not None:
            progress(0.0, "waiting for the running generation to finish")
        with self.context.lock or contextlib.nullcontext():
            result = run_compare(req, progress=progress, cancel=cancel,  # app-hostile: Stop reaches the decode
                                 load=lambda path: with_cancel(default_cache().load(path, device=device), cancel))
        headers, rows = metrics_table(result)
        out = self._fresh_output_dir()
        files = write_downloads(result, out)
        return render_view(result), (headers, rows), files, status_line(result), result

    def _fresh_output_dir(self) -> str:
        """A new folder for one run's downloads; only the newest `KEEP_RUNS` runs stay on disk."""
        old = sorted((e for e in os.scandir(self._out_root) if e.is_dir()), key=lambda e: e.stat().st_mtime_ns)
        for e in old[: max(0, len(old) - self.KEEP_RUNS + 1)]:
            shutil.rmtree(e.path, ignore_errors=True)
        return tempfile.mkdtemp(dir=self._out_root)

    def pair(self, result, a, b, gain) -> str:
        """The before/after slider and difference map of two entries, chosen by pair label."""
        if result is None:
            raise VaeLabError("run a comparison first")
        labels = pair_labels(result)
        if a not in labels or b not in labels:
            raise VaeLabError("choose two images to compare")
        ia, ib = labels[a], labels[b]
        entries = result.entries()
        diff = result.difference_map(ia, ib, gain=float(gain))
        return render_pair(a, entries[ia][1], b, entries[ib][1], diff, float(gain))

    # -- Get VAEs ------------------------------------------------------------------------
    def catalog_rows(self):
        """(headers, rows) of the catalog with what is already present in the VAE folder."""
        try:
            from vae_lab.identity import catalog
        except ImportError:
            return ["Catalog"], [["the catalog is not installed"]]
        present = _present_ids(catalog, self.context.entries())
        rows = []
        for e in catalog.entries():
            rows.append([
                e.name if hasattr(e, "name") else e["name"],
                _get(e, "family") or "",
                _get(e, "kind") or "",
                format_bytes(_get(e, "size")) if _get(e, "size") else "?",
                _get(e, "license") or "",
                "✓ present" if _get(e, "id") in present else "",
                _get(e, "description") or "",
            ])
        return ["Name", "Family", "Kind", "Size", "License", "Here", "About"], rows

    def catalog_choices(self) -> list[str]:
        """Display names of the downloadable entries (Gradio 3.41 dropdowns take strings)."""
        try:
            from vae_lab.identity import catalog
        except ImportError:
            return []
        return [e.name for e in catalog.entries() if getattr(e, "downloadable", True)]

    def download(self, pick, url, progress=None, cancel=None) -> str:
        """Download a catalog entry or a URL into the VAE folder; one line saying what happened."""
        from vae_lab.download import transfer as download

        target = (url or "").strip() or (pick or "").strip()
        if not target:
            raise VaeLabError("choose a catalog entry or paste a URL")
        dest = self.context.target_dir()

        def on_progress(done, total):
            if progress is not None:
                frac = min(done / total, 1.0) if total else 0.0
                progress(frac, f"{format_bytes(done)} of {format_bytes(total) if total else '?'}")

        # app-hostile: public hosts only (unless the host allows local ones), checked at every hop
        # and on every connection (the policy's session); an overall deadline
        from vae_lab.download.policy import HostPolicy
        from vae_lab.limits import DEFAULT_DOWNLOAD_SECONDS

        policy = self.context.download_policy or HostPolicy()
        with contextlib.closing(policy.session()) as session:
            res = download.download(target, dest, tokens=self.context.tokens, progress=on_progress, cancel=cancel,
                                    console=False, policy=policy, session=session,
                                    deadline=self.context.download_seconds or DEFAULT_DOWNLOAD_SECONDS)
        if self.context.on_vaes_changed:
            self.context.on_vaes_changed()
        what = res.entry.name if getattr(res, "entry", None) else res.filename
        if res.already_present:
            return f"{what} is already in {dest} as {os.path.basename(res.path)} (same SHA-256)."
        check = "SHA-256 verified" if res.verified else f"SHA-256 {res.short_hash}… (no published hash to check)"
        return f"Saved {os.path.basename(res.path)} ({what}) in {dest}: {check}."


def _get(e, key):
    return getattr(e, key, None) if not isinstance(e, dict) else e.get(key)


def _present_ids(catalog, entries) -> set:
    """Catalog ids of the files in the VAE folders, matched by SHA-256 (never by file name)."""
    ids = set()
    for e in entries:
        known = catalog.known_by_sha256(e.sha256) if e.sha256 else None
        if known is not None:
            ids.add(known.id)
    return ids


# ---------------------------------------------------------------------------------------
# The Blocks


def _frame(headers, rows):
    """A Dataframe value with new headers (Gradio 3.41's `update` cannot change headers)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)


def _error_md(err: Exception) -> str:
    return f"⚠️ {err}"


def build_tab(context: UiContext | None = None, **blocks_kwargs):
    """The comparison tab as a `gr.Blocks` (A1111 renders it as a tab; the app launches it)."""
    import gradio as gr

    context = context or UiContext()
    logic = TabLogic(context)
    initial, refs, _ = logic.choices_for(SOURCE_IMAGE)

    with gr.Blocks(analytics_enabled=False, **blocks_kwargs) as tab:
        result_state = gr.State(None)
        with gr.Row(elem_id="vae_lab_main", equal_height=False):
            with gr.Column(scale=1, min_width=300, elem_id="vae_lab_inputs"):
                source = gr.Radio(SOURCES, value=SOURCE_IMAGE, label="Input", elem_id="vae_lab_source")
                image = compat.upload_image(type="numpy", label="Image", elem_id="vae_lab_image", height=260)
                latent_file = compat.upload_file(label="Latent file (.safetensors / .pt)",
                                                 file_types=[".safetensors", ".pt"],
                                                 visible=False, elem_id="vae_lab_latent_file")
                latent_note = gr.Markdown("", visible=False, elem_id="vae_lab_latent_note")
                vaes = gr.CheckboxGroup(initial, value=[], label="VAEs", elem_id="vae_lab_vaes")
                refresh = gr.Button("Refresh list", size="sm", elem_id="vae_lab_refresh")
                encoder = gr.Radio([ENCODER_FIRST, ENCODER_OWN], value=ENCODER_FIRST, label="Round-trip encoder",
                                   elem_id="vae_lab_encoder")
                reference = gr.Dropdown(refs, value=NO_REFERENCE, label="Reference VAE (decoded in fp32)",
                                        visible=False, elem_id="vae_lab_reference")
                with gr.Row():
                    precision = gr.Dropdown(PRECISIONS, value=context.default_precision(), label="Precision (auto: fp16 on GPU)",
                                            min_width=120, elem_id="vae_lab_precision")
                    tiling = gr.Dropdown(TILINGS, value="auto", label="Tiling", min_width=100, elem_id="vae_lab_tiling")
                with gr.Row():
                    run = gr.Button("Compare", variant="primary", scale=3, min_width=100, elem_id="vae_lab_run")
                    stop = gr.Button("Stop", scale=1, min_width=60, elem_id="vae_lab_stop")
                extra_column = gr.Column(elem_id="vae_lab_extra")
            with gr.Column(scale=3, elem_id="vae_lab_outputs"):
                status = gr.Markdown("", elem_id="vae_lab_status")
                view = gr.HTML('<div class="vae-lab-empty">Upload an image (or pick latents), choose VAEs, press Compare.</div>',
                               elem_id="vae_lab_view")
                metrics = gr.Dataframe(headers=["VAE"], interactive=False, wrap=True, label="Metrics",
                                       elem_id="vae_lab_metrics")
                with gr.Row(elem_id="vae_lab_pair_controls"):
                    pair_a = gr.Dropdown([], label="A", elem_id="vae_lab_pair_a")
                    pair_b = gr.Dropdown([], label="B", elem_id="vae_lab_pair_b")
                    gain = gr.Slider(1, 32, value=8, step=1, label="Difference gain", elem_id="vae_lab_gain")
                    pair_btn = gr.Button("Compare A and B", elem_id="vae_lab_pair_run")
                pair_view = gr.HTML("", elem_id="vae_lab_pair")
                files = compat.file_output(label="Downloads: metrics (CSV, JSON) and grid (PNG)", visible=False,
                                           elem_id="vae_lab_files")
        with gr.Accordion("Get VAEs", open=False, elem_id="vae_lab_get"):
            headers, rows = logic.catalog_rows()
            catalog_df = gr.Dataframe(value=rows or None, headers=headers, interactive=False, wrap=True,
                                      elem_id="vae_lab_catalog")
            with gr.Row(equal_height=True):
                pick = gr.Dropdown(logic.catalog_choices(), label="From the catalog", scale=2,
                                   elem_id="vae_lab_catalog_pick")
                url = gr.Textbox(label="…or any http(s) URL (Hugging Face, Civitai)", placeholder="https://",
                                 scale=3, elem_id="vae_lab_url")
                get = gr.Button("Download into the VAE folder", variant="primary", scale=1, min_width=120,
                                elem_id="vae_lab_download")
                get_stop = gr.Button("Cancel", scale=0, min_width=80, elem_id="vae_lab_download_stop")
            get_status = gr.Markdown("", elem_id="vae_lab_download_status")

        ui = TabUi(tab, vaes, run, status, dict(source=source, image=image, latent_file=latent_file,
                                                 encoder=encoder, reference=reference, precision=precision,
                                                 tiling=tiling, view=view, metrics=metrics, files=files))
        if context.extra is not None:
            with extra_column:
                context.extra(ui)

        source_outputs = [image, latent_file, latent_note, vaes, encoder, reference]
        # quick events skip the queue, so they answer while a long comparison runs
        source.change(logic.on_source, [source, latent_file, vaes], source_outputs, queue=False)
        latent_file.change(logic.on_source, [source, latent_file, vaes], source_outputs, queue=False)
        refresh.click(logic.refresh, [source, latent_file, vaes], [vaes, reference], queue=False)

        # The long step outputs only the view, so Gradio draws one progress bar (over the view)
        # instead of one on every output; the quick step after it fills the table, downloads,
        # status line and pair choices from what the long step left in `run_state`.
        run_state = gr.State(None)

        def do_run(src, img, lf, sel, enc, prec, til, ref, request: gr.Request, progress=gr.Progress()):
            session = getattr(request, "session_hash", None) or ""
            try:
                html_view, table, fls, msg, result = logic.run(
                    src, img, lf, sel, enc, prec, til, ref, session=session,
                    progress=lambda frac, text="": progress(frac, desc=text))
            except VaeLabError as err:
                return compat.update(), _error_md(err)
            return html_view, (table, fls, msg, result)

        def show_run(out):
            """Show a run's outcome once (`run_state` is emptied), so a run that Stop cancelled
            does not bring back the previous run's table and status."""
            keep = compat.update()
            if out is None:
                return keep, keep, keep, keep, keep, keep, None
            if isinstance(out, str):  # a one-line error
                return keep, keep, out, keep, keep, keep, None
            (h, r), fls, msg, result = out
            names = list(pair_labels(result))
            a = names[0] if names else None
            b = names[1] if len(names) > 1 else a
            return (_frame(h, r), compat.update(value=fls, visible=True), msg, result,
                    compat.update(choices=names, value=a), compat.update(choices=names, value=b), None)

        run_event = run.click(do_run, [source, image, latent_file, vaes, encoder, precision, tiling, reference],
                              [view, run_state])
        run_event.then(show_run, [run_state], [metrics, files, status, result_state, pair_a, pair_b, run_state],
                       queue=False)

        def do_stop(request: gr.Request):
            logic.cancels.cancel(getattr(request, "session_hash", None) or "")
            return "Stopped."

        stop.click(do_stop, None, [status], cancels=[run_event], queue=False)

        def do_pair(result, a, b, g):
            try:
                return logic.pair(result, a, b, g), compat.update()
            except VaeLabError as err:
                return compat.update(), _error_md(err)

        pair_btn.click(do_pair, [result_state, pair_a, pair_b, gain], [pair_view, status], queue=False)

        def do_download(p, u, request: gr.Request, progress=gr.Progress()):
            cancel = logic.cancels.fresh("download:" + (getattr(request, "session_hash", None) or ""))
            try:
                msg = logic.download(p, u, progress=lambda frac, text="": progress(frac, desc=text), cancel=cancel)
            except VaeLabError as err:
                return _error_md(err), compat.update()
            h, r = logic.catalog_rows()
            return msg, _frame(h, r)

        get_event = get.click(do_download, [pick, url], [get_status, catalog_df])
        get_event.then(logic.refresh, [source, latent_file, vaes], [vaes, reference])
        host_lists = context.vae_list_outputs() if context.vae_list_outputs else []
        if host_lists:
            def update_host_lists():
                updates = [compat.update(**make()) for _, make in host_lists]
                return updates[0] if len(updates) == 1 else updates

            get_event.then(update_host_lists, None, [c for c, _ in host_lists], queue=False)

        def do_stop_download(request: gr.Request):
            logic.cancels.cancel("download:" + (getattr(request, "session_hash", None) or ""))
            return "Download cancelled; nothing was left in the VAE folder."

        get_stop.click(do_stop_download, None, [get_status], cancels=[get_event], queue=False)
    tab.vae_lab = ui
    return tab
