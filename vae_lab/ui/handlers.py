"""What the tab's buttons do, as plain functions and one `TabLogic` object: tests call them
without a browser, and `blocks.py` wires them to Gradio events.

Nothing here builds components; the only Gradio it touches is `gradio_compat.update`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading

from vae_lab.compare.report import format_bytes
from vae_lab.errors import VaeLabError
from vae_lab.ui import gradio_compat as compat
from vae_lab.ui.context import UiContext
from vae_lab.ui.exports import write_downloads
from vae_lab.ui.library import forget_missing, vae_choices
from vae_lab.ui.render import metrics_table, pair_labels, render_pair, render_view, status_line

SOURCE_IMAGE = "Image (round trip)"
SOURCE_LAST = "Last generation's latents"
SOURCE_FILE = "Latent file"
SOURCES = [SOURCE_IMAGE, SOURCE_LAST, SOURCE_FILE]
ENCODER_FIRST = "First VAE's encoder"
ENCODER_OWN = "Each VAE's own encoder"
TILINGS = ["auto", "off", "on"]
NO_REFERENCE = "(none)"


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

    try:
        t, meta = latent_files.load_latents(path)
    except VaeLabError:
        raise
    except Exception as err:  # never let a bad upload break the tab: one line, like every error
        raise VaeLabError(f"{os.path.basename(path)}: could not read latents ({type(err).__name__}: {err})") from None
    family = meta.get("family") or None
    b, c, h, w = t.shape
    return t, family, f"{os.path.basename(path)}: {b}×{c}×{h}×{w}" + (f" ({family})" if family else "")


def _file_path(f) -> str | None:
    if f is None:
        return None
    if isinstance(f, (str, os.PathLike)):
        return str(f)
    return getattr(f, "name", None)


def _tile_value(tiling: str):
    return {"auto": "auto", "off": False, "on": True}.get(tiling, "auto")



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
        forget_missing()
        updates = self.on_source(source, latent_file, selected)
        return updates[3], updates[5]

    # -- the comparison ------------------------------------------------------------------
    def request(self, source, image, latent_file, vaes, encoder, precision, tiling, reference):
        from vae_lab.compare.result import CompareRequest

        if not vaes:
            raise VaeLabError("choose at least one VAE")
        kw = dict(vae_paths=list(vaes), precision=precision or "auto", tile=_tile_value(tiling or "auto"))
        if source == SOURCE_IMAGE:
            if image is None:
                raise VaeLabError("upload an image first")
            import numpy as np

            arr = np.asarray(image)
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=-1)
            arr = arr[..., :3].astype("uint8")
            return CompareRequest(image=arr, latents=None, encoder="own" if encoder == ENCODER_OWN else "first", **kw)
        latents, family, _ = load_latent_input(source, latent_file, self.context)
        return CompareRequest(image=None, latents=latents, latents_family=family,
                              reference=self.reference_path(reference), **kw)

    def run(self, source, image, latent_file, vaes, encoder, precision, tiling, reference, session="", progress=None):
        """Run the comparison; returns (view html, table, files, status, result)."""
        from vae_lab.compare.runner import default_cache, run_compare

        req = self.request(source, image, latent_file, vaes, encoder, precision, tiling, reference)
        cancel = self.cancels.fresh(session or "default")
        device = self.context.device
        if progress is not None and self.context.lock is not None:
            progress(0.0, "waiting for the running generation to finish")
        with self.context.lock or contextlib.nullcontext():
            result = run_compare(req, progress=progress, cancel=cancel,
                                 load=lambda path: default_cache().load(path, device=device))
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

        res = download.download(target, dest, tokens=self.context.tokens, progress=on_progress, cancel=cancel,
                                console=False)
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
