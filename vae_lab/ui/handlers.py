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

from vae_lab.units import format_bytes
from vae_lab.errors import VaeLabError
from vae_lab.files.imaging import image_to_rgb8
from vae_lab.identity import field_of as _get
from vae_lab.ui import gradio_compat as compat
from vae_lab.ui import vae_ids
from vae_lab.ui.exposure import upload_name
from vae_lab.ui.context import UiContext
from vae_lab.ui.exports import crop_grid, run_stem, write_downloads
from vae_lab.ui.library import forget_missing, vae_choices
from vae_lab.ui.render import (image_preview, metrics_table, pair_labels, pair_note, render_pair,
                               render_view, status_line, toast)

SOURCE_IMAGE = "Image (round trip)"
SOURCE_LAST = "Last generation's latents"
SOURCE_FILE = "Latent file"
SOURCES = [SOURCE_IMAGE, SOURCE_LAST, SOURCE_FILE]
ENCODER_FIRST = "First VAE of each latent family"  # the runner's "family": works for any mix
ENCODER_OWN = "Each VAE's own encoder"
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"]
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

    name = upload_name(latent_file)  # the user's file name, never the server's path
    try:
        t, meta = latent_files.load_latents(path)
    except VaeLabError as err:  # name the file as the user knows it, not by Gradio's temp path
        raise VaeLabError(_without_path(str(err), path, name)) from None
    except Exception as err:  # never let a bad upload break the tab: one line, like every error
        raise VaeLabError(f"{name}: could not read latents ({type(err).__name__})") from None
    family = meta.get("family") or None
    b, c, h, w = t.shape
    return t, family, f"{name}: {b}×{c}×{h}×{w}" + (f" ({family})" if family else "")


def _without_path(message: str, path: str, name: str) -> str:
    for p in sorted({path, os.path.abspath(path), os.path.realpath(path)}, key=len, reverse=True):
        message = message.replace(p, name)
    return message.splitlines()[0][:300] if message else name


def read_image(upload, limits=None):
    """(HxWx3 uint8 array, file name) of an uploaded image, or a `VaeLabError` saying why not.

    Read here rather than by Gradio's image widget, so that a file that is no image gets a
    message instead of a blank preview and a server traceback. EXIF rotation is applied and
    alpha is composited over white (as the WebUI does for img2img); then `image_to_rgb8`, the
    CLI's conversion (16-bit and float images by bit depth, the pixel bound)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path, name = _file_path(upload), upload_name(upload) or "the image"
    if not path or not os.path.isfile(path):
        raise VaeLabError("upload an image first")
    try:
        with Image.open(path) as im:
            if limits is not None:  # before decoding the pixels: the header has the size
                limits.check_image(*im.size, what=name)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, rgba)
            arr = image_to_rgb8(im, name)  # the CLI's conversion: bit depth, pixel bound
    except UnidentifiedImageError:
        raise VaeLabError(f"{name} is not an image this tab can read (PNG, JPEG, WebP, BMP, TIFF or GIF)") from None
    except Image.DecompressionBombError:
        raise VaeLabError(f"{name} is too large to open safely; crop or scale it down first") from None
    except (OSError, ValueError, SyntaxError) as err:
        reason = "the file is cut short" if "truncated" in str(err).lower() else "the file is damaged"
        raise VaeLabError(f"{name} could not be read as an image: {reason}") from None
    if min(arr.shape[:2]) < 8:
        raise VaeLabError(f"{name} is {arr.shape[1]}×{arr.shape[0]}: at least 8×8 pixels are needed")
    return arr, name


def _file_path(f) -> str | None:
    if f is None:
        return None
    if isinstance(f, (str, os.PathLike)):
        return str(f)
    return getattr(f, "name", None)


def _tile_value(tiling: str):
    return {"auto": "auto", "off": False, "on": True}.get(tiling, "auto")


# Ticked: every encode and decode of the run uses the engine's attention="window" (exact
# global attention otherwise; docs/benchmarks.md, *Windowed attention*, for its cost).
FAST_ATTENTION_LABEL = "Fast attention for huge images (windowed; slightly inexact)"



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
        self._stems: dict[int, tuple] = {}  # id(result) -> (its download folder, file stem, its files)

    # -- VAE list ------------------------------------------------------------------------
    def choices_for(self, source, latent_file=None):
        """(multi-select choices, reference choices, note) for the chosen input."""
        choices, refs, note, _ = self._choices(source, latent_file)
        return choices, refs, note

    def _choices(self, source, latent_file):
        """`choices_for` and whether the note is an error (the latents could not be read)."""
        entries = self.context.entries()
        channels = family = None
        note, failed = "", False
        if source != SOURCE_IMAGE:
            try:
                t, family, note = load_latent_input(source, latent_file, self.context)
                channels = int(t.shape[1])
            except VaeLabError as err:
                note, failed = str(err), True
        choices = vae_choices(entries, channels, family)
        # Gradio 3.41 dropdowns take plain strings: the reference is chosen by its label
        refs = [NO_REFERENCE] + [label for (label, p) in choices if not label.startswith("✕")]
        return choices, refs, note, failed

    def reference_path(self, label) -> str | None:
        if label in (None, "", NO_REFERENCE):
            return None
        for e in self.context.entries():
            if e.label == label:
                return e.path
        raise VaeLabError(f"reference VAE {label!r} is no longer in the VAE folder: refresh the list")

    def on_source(self, source, latent_file, selected):
        """Show the inputs of `source`; mark (and untick, saying so) the VAEs its latents exclude."""
        choices, refs, note, failed = self._choices(source, latent_file)
        valid = {p for (label, p) in choices if not label.startswith("✕")}
        latent_mode = source != SOURCE_IMAGE
        kept = [p for p in (selected or []) if p in valid]
        names = {vae_ids.vae_id(e): e.name for e in self.context.entries()}
        dropped = [names[p] for p in (selected or []) if p not in valid and p in names]
        if dropped:
            note = (note + " · " if note else "") + "unticked (cannot decode these latents): " + ", ".join(dropped)
        return (
            compat.update(visible=source == SOURCE_IMAGE),
            compat.update(visible=source == SOURCE_FILE),
            compat.update(value=toast(note, "error" if failed else "info") if note else "", visible=latent_mode),
            compat.update(choices=choices, value=kept),
            compat.update(visible=not latent_mode),
            compat.update(visible=latent_mode, choices=refs, value=NO_REFERENCE),
        )

    def refresh(self, source, latent_file, selected):
        forget_missing()
        updates = self.on_source(source, latent_file, selected)
        return updates[3], updates[5]

    def on_image(self, upload):
        """(preview html, status html) after an upload: the picture with its size, or why not."""
        if upload is None:
            return "", ""
        try:
            arr, name = read_image(upload, self.limits())
        except VaeLabError as err:
            return "", toast(str(err), "error")
        return image_preview(arr, name), ""

    # -- the comparison ------------------------------------------------------------------
    def request(self, source, image, latent_file, vaes, encoder, precision, tiling, reference, fast_attention=False):
        from vae_lab.compare.result import CompareRequest

        entries = self.context.entries()
        # ids the server gave out -> entries of its own list (never a client-named path)
        paths = vae_ids.resolve_paths(vaes, entries)
        names = {e.path: e.name for e in entries if e.name != os.path.basename(e.path)}
        kw = dict(vae_paths=paths, precision=precision or "auto", tile=_tile_value(tiling or "auto"), names=names,
                  attention="window" if fast_attention else "global")
        limits = self.limits()
        if source == SOURCE_IMAGE:
            if image is None:
                raise VaeLabError("upload an image first")
            arr, name = self._image_array(image, limits)
            if not vaes:
                raise VaeLabError("tick at least one VAE")
            req = CompareRequest(image=arr, latents=None, encoder="own" if encoder == ENCODER_OWN else "family", **kw)
            return req, {"name": name, "width": int(arr.shape[1]), "height": int(arr.shape[0])}
        latents, family, _ = load_latent_input(source, latent_file, self.context)
        limits.check_latents(latents.shape)
        if not vaes:
            raise VaeLabError("tick at least one VAE")
        src = {"name": upload_name(latent_file) if source == SOURCE_FILE else "last generation",
               "latent_shape": list(latents.shape)}
        return CompareRequest(image=None, latents=latents, latents_family=family,
                              reference=self.reference_path(reference), **kw), src

    def limits(self):
        from vae_lab.limits import Limits

        return self.context.limits or Limits.default()

    @staticmethod
    def _image_array(image, limits):
        import numpy as np

        if isinstance(image, np.ndarray):  # an array from a host or a test
            arr = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
            limits.check_image(arr.shape[1], arr.shape[0])
            return np.ascontiguousarray(arr[..., :3].astype("uint8")), None
        return read_image(image, limits)

    def run(self, source, image, latent_file, vaes, encoder, precision, tiling, reference, session="", progress=None,
            fast_attention=False):
        """Run the comparison; returns (view html, (headers, rows), files, status html, result).

        Stop (`cancels.cancel(session)`) is seen between VAEs (and between tiles where the engine
        takes `cancel`); what finished stays in the result."""
        from vae_lab.compare.runner import default_cache, run_compare

        req, source_info = self.request(source, image, latent_file, vaes, encoder, precision, tiling, reference,
                                        fast_attention)
        cancel = self.cancels.fresh(session or "default")
        device = self.context.device
        if progress is not None and self.context.lock is not None:
            progress(0.0, "waiting for the running generation to finish")
        with self.context.lock or contextlib.nullcontext():
            result = run_compare(req, progress=progress, cancel=cancel,
                                 load=lambda path: default_cache().load(path, device=device))
        result.source = source_info
        headers, rows = metrics_table(result)
        out = self._fresh_output_dir()
        stem = run_stem(source_info.get("name") or ("image" if result.mode == "roundtrip" else "latents"))
        files = write_downloads(result, out, stem=stem, relative_to=self.context.vae_dirs)
        self._stems[id(result)] = (out, stem, files)
        return render_view(result, run_id=stem), (headers, rows), files, status_line(result), result

    def _fresh_output_dir(self) -> str:
        """A new folder for one run's downloads; only the newest `KEEP_RUNS` runs stay on disk."""
        old = sorted((e for e in os.scandir(self._out_root) if e.is_dir()), key=lambda e: e.stat().st_mtime_ns)
        for e in old[: max(0, len(old) - self.KEEP_RUNS + 1)]:
            shutil.rmtree(e.path, ignore_errors=True)
        return tempfile.mkdtemp(dir=self._out_root)

    def pair(self, result, a, b, gain) -> str:
        """The before/after slider and difference map of two entries, chosen by pair label."""
        import numpy as np

        if result is None:
            raise VaeLabError("run a comparison first")
        labels = pair_labels(result)
        if a not in labels or b not in labels:
            raise VaeLabError("choose two images to compare")
        ia, ib = labels[a], labels[b]
        entries = result.entries()
        diff = result.difference_map(ia, ib, gain=float(gain))
        raw = int(np.abs(entries[ia][1].astype(np.int16) - entries[ib][1].astype(np.int16)).max())
        offset = 1 if result.reference_image is not None else 0
        oa = result.outcomes[ia - offset] if ia >= offset else None
        ob = result.outcomes[ib - offset] if ib >= offset else None
        return render_pair(a, entries[ia][1], b, entries[ib][1], diff, float(gain), max_diff=raw,
                           note=pair_note(oa, ob))

    def crop(self, result, box) -> list[str]:
        """The run's files with the grid of the region the viewer shows (`box` "x,y,w,h" as
        fractions) at 1:1 added first."""
        if result is None:
            raise VaeLabError("run a comparison first")
        try:
            x, y, w, h = (float(v) for v in str(box or "").split(","))
        except ValueError:
            raise VaeLabError("zoom into a region of the images first") from None
        if not (0 < w <= 1 and 0 < h <= 1):
            raise VaeLabError("zoom into a region of the images first")
        out, stem, files = self._stems.get(id(result)) or (self._fresh_output_dir(), None, [])
        path = crop_grid(result, (x, y, w, h), out, stem=stem)
        return [path] + [f for f in files if f != path]

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

        url = (url or "").strip()
        if url and not url.lower().startswith(("http://", "https://")):
            raise VaeLabError("paste a link that starts with https:// (or choose a VAE from the catalog list)")
        target = url or (pick or "").strip()
        if not target:
            raise VaeLabError("choose a catalog entry or paste a URL")
        dest = self.context.target_dir()

        def on_progress(done, total):
            if progress is not None:
                frac = min(done / total, 1.0) if total else 0.0
                progress(frac, f"{format_bytes(done)} of {format_bytes(total) if total else '?'}")

        # public hosts only (unless the host allows local ones), checked at every hop and on every
        # connection (the policy's session); an overall deadline
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


def offered_sources(context: UiContext) -> list[str]:
    """The input choices: "last generation's latents" only where a host keeps them (the WebUI)."""
    return SOURCES if context.last_latents is not None else [SOURCE_IMAGE, SOURCE_FILE]




def _present_ids(catalog, entries) -> set:
    """Catalog ids of the files in the VAE folders, matched by SHA-256 (never by file name)."""
    ids = set()
    for e in entries:
        known = catalog.known_by_sha256(e.sha256) if e.sha256 else None
        if known is not None:
            ids.add(known.id)
    return ids
