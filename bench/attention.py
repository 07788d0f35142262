"""Windowed vs global mid-block attention: what the opt-in fast mode costs in fidelity, and saves in time.

`Vae.decode(..., attention="window")` runs the kl-f8 mid-block attention within
overlapping windows (`vae_lab/models/kl.py`, `WindowedAttention`) instead of over the
whole latent. Two measurements on SD-size random weights (83.7 M parameters), fp32:

- decodes: windowed vs global decode of the same smooth random latents (bicubic-upsampled
  noise): PSNR dB, share of identical 8-bit values, and the attention block's own time
  inside each decode (forward hooks);
- the attention block alone at SD width (512 channels) on smooth random inputs: its time
  and the error of its contribution, global vs windowed with the far field (what
  `attention="window"` runs) and pure windows (without it), for larger latents than a
  whole decode fits on a small CPU.

The mode's far field (the keys outside a window, average-pooled to at most 128 x 128
cells) is what keeps it close: pure windows, measured too, lose far more; its error grows
with the cell size, so smaller sizes are measured with the cells larger images get. Random weights make the
attention nearly uniform (each query weighs all keys about equally), which is the case a
pooled far field approximates best: trained weights may lose more or less; not measured.
Full run: decodes at 1024² (512 px windows; 4x4 and 8x8-position cells, pure) and 2048²
(tiled, which is exact: the engine's mode, 4x4 cells, pure), the block alone on 128² and
256² latents. --quick: a 512² decode with 256 px windows (4x4 and 8x8-position cells,
pure) and the block on 128² latents (2x2 cells, pure): about 2 minutes on 2 busy cores.
"""

from __future__ import annotations


class _Timer:
    """Seconds spent in one module's forward (summed over calls), by forward hooks."""

    def __init__(self, module):
        import time

        self.seconds, self._t0, self._clock = 0.0, None, time.perf_counter
        self._handles = [module.register_forward_pre_hook(self._start), module.register_forward_hook(self._stop)]

    def _start(self, *_args):
        self._t0 = self._clock()

    def _stop(self, *_args):
        self.seconds += self._clock() - self._t0

    def close(self):
        for h in self._handles:
            h.remove()


def _block_rows(cases, window, device):
    """The attention block alone (SD width) on smooth inputs: time, and the error of its contribution."""
    import sys
    import time

    import torch
    import torch.nn.functional as F

    from testkit.factories import random_kl_state_dict
    from vae_lab.models.arch import SD_KL
    from vae_lab.models.kl import AttnBlock, WindowedAttention, window_spans

    sd = random_kl_state_dict(SD_KL, seed=0)
    prefix = "decoder.mid.attn_1."
    c = SD_KL.ch * SD_KL.ch_mult[-1]  # 512
    block = AttnBlock(c)
    block.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    block = block.to(device).eval()

    def timed(spec):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = block(x, spec)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    rows = []
    for n, fars in cases:
        gen = torch.Generator().manual_seed(n)
        x = F.interpolate(torch.randn(1, c, max(2, n // 6), max(2, n // 6), generator=gen), size=(n, n),
                          mode="bicubic", align_corners=False)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref, t_global = timed(None)
            delta = (ref - x).norm()
            count = len(window_spans(n, window)) ** 2
            for far in fars:
                out, t = timed(WindowedAttention(window, far_grid=far))
                label = f"far field {far}² cells ({-(-n // far)}² positions each)" if far else "pure windows (no far field)"
                err = float((out - ref).norm() / delta)
                rows.append({"case": f"attention block alone, {n}² latents ({n * 8}² px), {c} ch",
                             "attention": f"{label}, {window * 8} px windows ({count})",
                             "attention s": round(t, 2), "global attention s": round(t_global, 2),
                             "decode s": "", "global decode s": "", "PSNR dB": "", "identical 8-bit": "",
                             "attention error": f"{err:.1%}"})
                print(rows[-1], file=sys.stderr, flush=True)
                del out
    return rows


def _model_decode(vae, z, window_px: int, far_grid: int):
    """A decode with a `WindowedAttention` the engine does not offer (another far field), and its seconds."""
    import time

    import torch

    from vae_lab.identity import families
    from vae_lab.models.kl import WindowedAttention

    raw = families.from_diffusion(z.float(), vae.scale, vae.shift).contiguous(memory_format=torch.channels_last)
    t0 = time.perf_counter()
    with torch.inference_mode():
        images = vae._model.decode(raw, WindowedAttention(window_px // 8, far_grid=far_grid)).float().cpu()
    return images.clamp(-1, 1), time.perf_counter() - t0


def run(quick: bool) -> dict:
    import sys

    import numpy as np
    import torch

    from decode import _latents, _psnr
    from testkit.factories import random_kl_state_dict
    from vae_lab.files.imaging import tensor_to_array
    from vae_lab.models.arch import SD_KL
    from vae_lab.models.kl import window_spans
    from vae_lab.runtime.engine import Vae

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae = Vae.from_state_dict(random_kl_state_dict(SD_KL, seed=0), arch=SD_KL, family="sd1", device=device,
                              state_dir="/tmp/vae-lab-bench-state")
    attn = vae._model.decoder.mid.attn_1
    # (image side px, tile, [(window px, far grid)]); far grid None: what `attention="window"` runs
    # (engine.ATTENTION_FAR_GRID: exact up to 1024², so smaller sizes take smaller far grids with
    # the cells the engine uses at larger sizes: 4x4 positions at 4096², 8x8 at 8192²). 2048² is
    # tiled (exact), so the whole decode's ~10 GiB need not fit.
    if quick:
        cases = [(512, False, [(256, 16), (256, 8), (256, 0)])]
        blocks = [(128, (64, 0))]
    else:
        cases = [(1024, False, [(512, 32), (512, 16), (512, 0)]), (2048, True, [(512, None), (512, 64), (512, 0)])]
        blocks = [(128, (64, 32, 0)), (256, (128, 64, 0))]
    rows = []
    for size, tile, variants in cases:
        z = _latents(size, seed=1).to(device)
        timer = _Timer(attn)
        whole = vae.decode(z, precision="fp32", tile=tile)
        g_attn, timer.seconds = timer.seconds, 0.0
        w8 = tensor_to_array(whole.images[0])
        for window, far in variants:
            count = len(window_spans(size // 8, window // 8)) ** 2
            if far is None:
                res = vae.decode(z, precision="fp32", tile=tile, attention="window", attention_window=window)
                images, seconds, label = res.images, res.seconds, "attention='window'"
            else:
                images, seconds = _model_decode(vae, z, window, far)
                label = f"far field {far}² cells ({size // 8 // far}² positions each)" if far else "pure windows"
            same = float(np.mean(tensor_to_array(images[0]) == w8))
            rows.append({"case": f"decode {size}²" + (" (tiled)" if tile else ""),
                         "attention": f"{label}, {window} px windows ({count})",
                         "attention s": round(timer.seconds, 2), "global attention s": round(g_attn, 2),
                         "decode s": round(seconds, 2), "global decode s": round(whole.seconds, 2),
                         "PSNR dB": round(_psnr(images, whole.images), 1), "identical 8-bit": f"{same:.2%}",
                         "attention error": ""})
            timer.seconds = 0.0
            print(rows[-1], file=sys.stderr, flush=True)
            del images
        timer.close()
        del whole
    rows += _block_rows(blocks, 64, device)
    notes = [
        f"device {device.type}, torch threads {torch.get_num_threads()}; one run each (a shared machine adds noise to times)",
        "random weights: attention is nearly uniform, so these dB are an estimate; trained VAEs may differ (not measured)",
        "attention error: |windowed - global| / |global - input| of the block's output (its own contribution)",
        "windows overlap by a quarter, blended with tent weights; GroupNorm statistics stay global",
    ]
    return {"title": "Windowed vs global mid-block attention (SD-size random weights, fp32)", "rows": rows,
            "notes": notes}
