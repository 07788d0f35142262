"""The comparison core: encode once, decode with many VAEs, measure against a reference.

Two modes:

* **round trip** (`image` given): the image is encoded once — by the first VAE's own
  encoder (default), by each VAE's own encoder (`encoder="own"`), or by a chosen VAE file —
  and decoded by every VAE. The reference is the original image.
* **latents** (`latents` given: the last generation's, or a latent file): every VAE decodes
  the same latents. The reference, when asked for, is a chosen VAE's fp32 decode.

What the metrics compare is what the user sees: each decode is quantised to uint8 (the
PNG that is shown and written), and PSNR/SSIM/LPIPS are computed between that array and
the reference's uint8 array, as float in [0, 1] (`vae_lab.compare.metrics`).

Each VAE is run on its own: one that fails to load, has no decoder, or does not speak the
latents' space gets its error in its own `VaeOutcome` and the others still run. Loaded
VAEs are kept in a small LRU (`compare.cache.VaeCache`) so repeated runs in the tab don't re-read files.

The request and result data live in `result.py`, their tables in `report.py`.
The Gradio tab (`vae_lab.ui`) and `python -m vae_lab compare/eval` are built on
`run_compare`; this module does not know about either.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

from vae_lab.compare.cache import VaeCache, default_cache
from vae_lab.compare.report import caption_lines, family_label
from vae_lab.compare.result import ENCODERS, CompareRequest, CompareResult, VaeOutcome
from vae_lab.errors import Cancelled, IncompatibleVae, VaeLabError
from vae_lab.identity import compatibility

# the data and report names are importable from here too (the CLI, the tab and bench use them)
__all__ = ["run_compare", "CompareCancelled", "CompareRequest", "CompareResult", "VaeOutcome",
           "VaeCache", "default_cache", "caption_lines", "family_label"]


class CompareCancelled(VaeLabError):
    """The user cancelled the comparison."""


@dataclass
class _Latents:
    """Latents made once from the image and decoded by several VAEs (round trip)."""

    latents: Any
    family: str | None
    encoder_name: str
    encoder_index: int | None  # which entry's own encoder made them (its encode time is shown)
    seconds: float | None


def _cancel_kwargs(fn, cancel) -> dict:
    """`{"cancel": cancel}` when `fn` (Vae.encode/decode) takes one, so Stop also ends a long
    decode between its tiles; older engines without it are only stopped between VAEs."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {"cancel": cancel} if "cancel" in params else {}


def _attention_kwargs(req: CompareRequest) -> dict:
    """The request's attention mode for Vae.encode/decode; nothing for the default (exact) one,
    so engines and stand-ins without the option still run."""
    if req.attention == "global" and req.attention_window is None:
        return {}
    return {"attention": req.attention, "attention_window": req.attention_window}


def _is_engine_cancel(err: BaseException) -> bool:
    from vae_lab import errors

    typed = getattr(errors, "Cancelled", None)
    return isinstance(err, CompareCancelled) or (isinstance(typed, type) and isinstance(err, typed))


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _error_line(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, VaeLabError):
        return msg or type(err).__name__
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _entry_error(err: BaseException, path: str) -> str:
    """`_error_line` for one VAE's entry, naming the file by its name (the entry's label),
    not by the full path the loader put in its message; always starts with the name."""
    msg = _error_line(err)
    name = _name_of(path)
    for p in sorted({path, os.path.abspath(path), os.path.realpath(path)}, key=len, reverse=True):
        msg = msg.replace(p, name)
    return msg if msg.startswith(name) else f"{name}: {msg}"


def _name_of(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def _to_uint8(images):
    """Decoded float NCHW in [-1, 1] -> HxWx3 uint8 of the first image."""
    from vae_lab.files.imaging import tensor_to_array

    return tensor_to_array(images[:1])[0]


def _from_uint8(image):
    from vae_lab.files.imaging import array_to_tensor

    return array_to_tensor(image)


def _check_request(req: CompareRequest) -> None:
    if (req.image is None) == (req.latents is None):
        raise VaeLabError("give either an image (round trip) or latents, not both or neither")
    if not req.vae_paths:
        raise VaeLabError("no VAE to compare: give at least one")
    if req.image is not None:
        shape = getattr(req.image, "shape", None)
        if shape is None or len(shape) != 3 or shape[2] != 3 or str(getattr(req.image, "dtype", "")) != "uint8":
            raise VaeLabError(f"the image must be an HxWx3 uint8 array, got {shape}")
        if shape[0] < 8 or shape[1] < 8:
            raise VaeLabError(f"the image is too small ({shape[1]}x{shape[0]}); at least 8x8")
    else:
        shape = tuple(req.latents.shape)
        if len(shape) not in (3, 4):
            raise VaeLabError(f"latents must be [C, h, w] or [B, C, h, w], got {list(shape)}")
        batch = 1 if len(shape) == 3 else shape[0]
        if not 0 <= req.batch_index < batch:
            raise VaeLabError(f"batch index {req.batch_index} is out of range: the latents hold {batch}")
    if req.encoder not in ENCODERS and not os.path.exists(req.encoder):
        raise VaeLabError(f"encoder must be 'first', 'own' or a VAE file; {req.encoder} does not exist")
    if req.diff_pair is not None and len(req.diff_pair) != 2:
        raise VaeLabError("diff_pair must name two entries")
    from vae_lab.runtime.engine import check_attention

    check_attention(req.attention, req.attention_window)


def run_compare(
    request: CompareRequest,
    *,
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
    load: Callable[[str], Any] | None = None,
) -> CompareResult:
    """Run the comparison (see the module doc). Bad requests raise `VaeLabError`.

    `progress(fraction, text)` is called before each step; `cancel` (a callable or a
    `threading.Event`) is checked between steps — when set, the entries not yet run get
    "cancelled" and the result has `cancelled=True`. `load(path)` returns a `Vae`
    (default: the shared `VaeCache`, on `request.device`).
    """
    _check_request(request)
    if load is None:
        load = lambda path: default_cache().load(path, device=request.device)  # noqa: E731
    return _Comparison(request, progress, cancel, load).run()


class _Comparison:
    """One run of `run_compare`: the steps, in order, and the state they share."""

    def __init__(self, req: CompareRequest, progress, cancel, load):
        self.req = req
        self.progress = progress
        self.cancel = cancel
        self.load = load
        self.paths = [os.fspath(p) for p in req.vae_paths]
        self.roundtrip = req.image is not None
        self.result = CompareResult(
            mode="roundtrip" if self.roundtrip else "latents",
            outcomes=[VaeOutcome(name=req.names.get(p) or _name_of(p), path=p) for p in self.paths],
            settings={
                "encoder": req.encoder if self.roundtrip else None,
                "precision": req.precision,
                "tile": req.tile,
                "attention": req.attention,
                "reference": req.reference,
                "batch_index": None if self.roundtrip else req.batch_index,
            },
        )
        shared_encode = self.roundtrip and req.encoder != "own"
        self.steps = len(self.paths) + int(shared_encode) + int(not self.roundtrip and bool(req.reference))
        self.shared: dict[int, _Latents] = {}  # entry index -> the shared latents it decodes
        self.done = 0
        self._vaes: dict[int, Any] = {}
        # what every VAE decodes (round trip with encoder="own": made per VAE instead)
        self.latents = None
        self.latents_family = req.latents_family
        self.size = None
        self.pixels = None
        self.lpips_model = None

    # ---- steps

    def run(self) -> CompareResult:
        res = self.result
        try:
            if self.roundtrip:
                self._prepare_round_trip()
            else:
                self._prepare_latents()
            self._prepare_lpips()
            for i, o in enumerate(res.outcomes):
                if o.error:  # already failed (no encoder could make the latents)
                    self.done += 1
                    continue
                self._step(f"decoding with {o.name}")
                self._run_one(i, o)
        except CompareCancelled:
            res.cancelled = True
            for o in res.outcomes:
                if o.image is None and o.error is None:
                    o.error = "cancelled"
        self._difference_map()
        if self.progress is not None:
            self.progress(1.0, "cancelled" if res.cancelled else "done")
        return res

    def _is_cancelled(self) -> bool:
        return _is_cancelled(self.cancel)

    def _check_cancel(self) -> None:
        if self._is_cancelled():
            raise CompareCancelled("comparison cancelled")

    def _step(self, text: str) -> None:
        self._check_cancel()
        if self.progress is not None:
            self.progress(min(self.done / max(self.steps, 1), 0.99), text)
        self.done += 1

    def _vae(self, i: int):
        """The i-th VAE, loaded once per run; a load error is re-raised for each use."""
        if i not in self._vaes:
            try:
                self._vaes[i] = self.load(self.paths[i])
            except Exception as err:  # the entry shows it; the others still run
                self._vaes[i] = err
        if isinstance(self._vaes[i], Exception):
            raise self._vaes[i]
        return self._vaes[i]

    def _prepare_round_trip(self) -> None:
        req, res = self.req, self.result
        res.reference_image = req.image
        res.reference_label = "original image"
        self.size = tuple(req.image.shape[:2])
        self.pixels = _from_uint8(req.image)
        if req.encoder == "own":
            return
        if req.encoder == "family":
            self._encode_by_family()
            return
        self._step("encoding the image")
        vae, index = self._pick_encoder()
        if isinstance(vae, str):
            for o in res.outcomes:
                o.error = vae
            return
        shared = self._encode(vae, index, range(len(self.paths)))
        if shared is not None:
            res.settings["encoder_used"] = shared.encoder_name

    def _encode(self, vae, index, members) -> _Latents | None:
        """Encode the image with `vae` for the entries `members`; an error goes to each of them."""
        req = self.req
        try:
            er = vae.encode(self.pixels, precision=req.precision, tile=req.tile, **_attention_kwargs(req),
                            **_cancel_kwargs(vae.encode, self._is_cancelled))
        except Exception as err:
            if _is_engine_cancel(err):
                raise CompareCancelled("comparison cancelled") from None
            for i in members:
                self.result.outcomes[i].error = f"encoding with {vae.name} failed: {_error_line(err)}"
            return None
        name = self.result.outcomes[index].name if index is not None else vae.name
        shared = _Latents(er.latents, getattr(vae, "family", None), name, index, er.seconds)
        for i in members:
            self.shared[i] = shared
        self.result.settings["encode_precision"] = er.precision_used
        self.result.settings.setdefault("encoders", []).append({
            "encoder": name, "latent_channels": int(er.latents.shape[1]), "family": shared.family,
            "vaes": [self.result.outcomes[i].name for i in members],
        })
        return shared

    def _encode_by_family(self) -> None:
        """Group the VAEs by latent space (channels and known family); each group's first VAE with
        an encoder makes the latents for the whole group. Any mix of VAEs compares this way."""
        groups: dict[tuple, list[int]] = {}
        for i in range(len(self.paths)):
            self._check_cancel()
            try:
                vae = self._vae(i)
            except Exception:
                continue  # its own entry reports the load error
            groups.setdefault((vae.latent_channels, compatibility.known_family(getattr(vae, "family", None))), []).append(i)
        self.steps = len(self.paths) + len(groups)
        self.done = 0
        for (channels, family), members in groups.items():
            encoder = next((i for i in members if getattr(self._vae(i), "has_encoder", True)), None)
            if encoder is None:
                space = f"{channels}-channel" + (f" {family_label(family)}" if family else "")
                for i in members:
                    o = self.result.outcomes[i]
                    o.error = (f"{o.name} has no encoder, and no other ticked VAE of its latent space "
                               f"({space}) has one to make latents from the image")
                self.done += 1
                continue
            vae = self._vae(encoder)
            others = len(members) - 1
            who = self.result.outcomes[encoder].name
            self._step(f"encoding the image with {who}" + (f" (for {others} more)" if others else ""))
            self._encode(vae, encoder, members)
        if len(groups) == 1 and self.result.settings.get("encoders"):
            self.result.settings["encoder_used"] = self.result.settings["encoders"][0]["encoder"]

    def _pick_encoder(self):
        """(Vae, its index in the list or None), or a one-line reason no encoder can be used.

        "first": the first VAE in the list that loads and has an encoder (normally the first).
        A path: that file's VAE; when it cannot be used the request is bad (VaeLabError).
        """
        req = self.req
        if req.encoder == "first":
            reasons = []
            for i, path in enumerate(self.paths):
                try:
                    vae = self._vae(i)
                except Exception as err:
                    reasons.append(_entry_error(err, path))
                    continue
                if getattr(vae, "has_encoder", True):
                    return vae, i
                reasons.append(f"{vae.name} has no encoder")
            return "no VAE here has an encoder to make latents from the image (" + "; ".join(reasons) + ")", None
        try:
            vae = self.load(req.encoder)
        except Exception as err:
            raise VaeLabError(f"encoder {req.encoder}: {_error_line(err)}") from None
        if not getattr(vae, "has_encoder", True):
            raise VaeLabError(f"encoder {vae.name} has no encoder weights")
        return vae, None

    def _prepare_latents(self) -> None:
        import torch

        req = self.req
        lat = req.latents if req.latents.ndim == 4 else req.latents[None]
        self.latents = lat[req.batch_index : req.batch_index + 1].detach().to("cpu", torch.float32)
        self.size = tuple(req.image_size) if req.image_size else None
        if req.reference:
            self._step("decoding the reference in fp32")
            _reference_decode(self.result, req, self.latents, self.latents_family, self.load)
        else:
            self.result.metrics_note = "no reference chosen: PSNR/SSIM need a reference VAE in latent mode"

    def _prepare_lpips(self) -> None:
        if not self.req.lpips:
            self.result.lpips_note = "LPIPS: off"
        elif self.result.reference_image is not None:
            from vae_lab.compare.metrics import load_lpips

            self.lpips_model, self.result.lpips_note = load_lpips(self.req.lpips_dir, device=_metrics_device(self.req, None))

    def _run_one(self, i: int, o: VaeOutcome) -> None:
        """Decode (and with encoder="own", encode) with the i-th VAE; errors stay in its entry."""
        req = self.req
        vae = None
        try:
            vae = self._vae(i)
            o.name = req.names.get(self.paths[i]) or getattr(vae, "name", None) or o.name
            o.family = getattr(vae, "family", None)
            o.kind = getattr(vae, "kind", None)
            o.latent_channels = getattr(vae, "latent_channels", None)
            o.weights_id = getattr(vae, "weights_id", None)
            sha = getattr(getattr(vae, "info", None), "file_sha256", None)
            o.vae_hash = sha[:10] if sha else None
            latents, family = self.latents, self.latents_family
            cancel = self._is_cancelled
            if self.roundtrip and req.encoder == "own":
                if not getattr(vae, "has_encoder", True):
                    raise IncompatibleVae(f"{vae.name} has no encoder for its own round trip")
                er = vae.encode(self.pixels, precision=req.precision, tile=req.tile, **_attention_kwargs(req),
                                **_cancel_kwargs(vae.encode, cancel))
                latents, family = er.latents, getattr(vae, "family", None)
                o.encoder, o.encode_seconds = o.name, er.seconds
            elif self.roundtrip:
                shared = self.shared[i]
                latents, family = shared.latents, shared.family
                o.encoder = shared.encoder_name
                if shared.encoder_index == i:
                    o.encode_seconds = shared.seconds
            compatibility.check_decode(vae, int(latents.shape[1]), family).raise_if_refused()
            dr = vae.decode(latents, precision=req.precision, tile=req.tile, size=self.size, **_attention_kwargs(req),
                            **_cancel_kwargs(vae.decode, cancel))
            o.image = _to_uint8(dr.images)
            o.precision_used = dr.precision_used
            o.fallback = list(dr.fallback or [])
            o.unsupported = list(dr.unsupported or [])
            o.tiled = bool(dr.tiled)
            o.attention = getattr(dr, "attention", None)
            o.decode_seconds = dr.seconds
            o.peak_memory_bytes = dr.peak_memory_bytes
        except Cancelled:  # Stop reached inside the decode (engine `cancel`): the run ends here
            raise CompareCancelled("comparison cancelled") from None
        except Exception as err:  # one VAE's failure never ends the run
            if _is_engine_cancel(err):
                raise CompareCancelled("comparison cancelled") from None
            o.error, o.image = _error_line(err) if vae is not None else _entry_error(err, self.paths[i]), None
            return
        _measure(o, self.result, req, self.lpips_model, vae)

    def _difference_map(self) -> None:
        req, res = self.req, self.result
        if req.diff_pair is None:
            return
        a, b = req.diff_pair
        try:
            res.diff_image = res.difference_map(a, b, req.diff_gain)
            res.diff_label = f"|{res._entry(a)[0]} - {res._entry(b)[0]}| x{req.diff_gain:g}"
        except VaeLabError as err:
            res.diff_label = f"no difference map: {err}"


def _reference_decode(result, req, latents, latents_family, load):
    try:
        ref = load(req.reference)
        compatibility.check_decode(ref, int(latents.shape[1]), latents_family).raise_if_refused()
        dr = ref.decode(latents, precision="fp32", tile=req.tile, size=req.image_size, **_attention_kwargs(req))
        result.reference_image = _to_uint8(dr.images)
        result.reference_label = f"{ref.name} (fp32)"
    except Exception as err:
        result.metrics_note = f"no reference: {_name_of(req.reference)}: {_error_line(err)}"


def _metrics_device(req, vae):
    import torch

    if req.device:
        return req.device
    dev = getattr(vae, "device", None)
    if dev is not None:
        return str(dev)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _measure(o: VaeOutcome, result: CompareResult, req: CompareRequest, lpips_model, vae) -> None:
    from vae_lab.compare import metrics

    ref = result.reference_image
    if ref is None or o.image is None:
        return
    if ref.shape != o.image.shape:
        o.error = f"decoded {o.image.shape[1]}x{o.image.shape[0]}, reference is {ref.shape[1]}x{ref.shape[0]}"
        return
    dev = _metrics_device(req, vae)
    o.color_shift = metrics.color_shift(ref, o.image)
    o.histogram = metrics.histogram(o.image)
    if result.reference_histogram is None:
        result.reference_histogram = metrics.histogram(ref)
    o.psnr = metrics.psnr(ref, o.image, device=dev)
    o.ssim = metrics.ssim(ref, o.image, device=dev) if min(ref.shape[:2]) >= 11 else None
    if lpips_model is not None:
        o.lpips = lpips_model(ref, o.image)
