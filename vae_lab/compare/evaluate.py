"""Dataset-level VAE evaluation: round-trip a folder of images, report mean ± std per VAE.

This is what the VAE model cards report ("PSNR 24.5 +/- 3.7" on COCO 2017 val at 256²):
each image is center-cropped to a square (the largest that fits) and resized to
`size`×`size` with Pillow's bicubic filter (antialiased when shrinking), encoded by the
VAE's own encoder (by default), decoded, quantised to uint8 and measured against the
prepared image with `vae_lab.compare.metrics` (PSNR, SSIM as the cards define them; LPIPS when
its weights are local). Standard deviations are population (ddof=0) over images.
rFID is not computed: it needs the FID Inception weights and thousands of images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from vae_lab.errors import VaeLabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
PREPARATION = "center crop to a square, then bicubic resize (Pillow, antialiased) to {size}x{size}"
RFID_NOTE = "rFID: not computed (needs the FID Inception weights and thousands of images)"


def list_images(folder: str) -> list[str]:
    """The image files directly in `folder`, sorted by name; a clear error when there are none."""
    if not os.path.isdir(folder):
        raise VaeLabError(f"{folder}: no such folder")
    files = sorted(
        os.path.join(folder, n) for n in os.listdir(folder)
        if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, n))
    )
    if not files:
        raise VaeLabError(f"{folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def prepare_image(path: str, size: int):
    """HxWx3 uint8: center crop to the largest square, bicubic resize to size×size."""
    import numpy as np
    from PIL import Image

    from vae_lab.files.imaging import load_image_array

    im = Image.fromarray(load_image_array(path))  # the one image loader: regular files, bounded, EXIF, bit depth
    w, h = im.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    im = im.crop((left, top, left + s, top + s))
    if s != size:
        im = im.resize((size, size), Image.BICUBIC)
    return np.asarray(im, dtype=np.uint8).copy()


@dataclass
class EvalRow:
    """One VAE's numbers over the dataset."""

    vae: str
    path: str
    family: str | None = None
    psnr: list = field(default_factory=list)
    ssim: list = field(default_factory=list)
    lpips: list = field(default_factory=list)
    decode_seconds: list = field(default_factory=list)
    failed: int = 0
    first_error: str | None = None

    def summary(self) -> dict:
        from vae_lab.compare.metrics import format_mean_std, mean_std

        out = {"vae": self.vae, "path": self.path, "family": self.family, "images": len(self.psnr), "failed": self.failed}
        for key, vals, digits in (("psnr", self.psnr, 1), ("ssim", self.ssim, 2), ("lpips", self.lpips, 3)):
            m, s = mean_std(vals)
            out[f"{key}_mean"] = None if m != m else m
            out[f"{key}_std"] = None if s != s else s
            out[key] = format_mean_std(vals, digits) if vals else None
        m, _ = mean_std(self.decode_seconds)
        out["decode_seconds_mean"] = None if m != m else m
        out["error"] = self.first_error
        return out


@dataclass
class EvalResult:
    size: int
    images: list[str]
    rows: list[EvalRow]
    lpips_note: str | None = None
    rfid_note: str = RFID_NOTE
    skipped_images: list = field(default_factory=list)  # (path, reason)

    def to_dict(self) -> dict:
        return {
            "size": self.size,
            "preparation": PREPARATION.format(size=self.size),
            "images": len(self.images),
            "skipped_images": [{"path": p, "reason": r} for p, r in self.skipped_images],
            "lpips_note": self.lpips_note,
            "rfid_note": self.rfid_note,
            "results": [r.summary() for r in self.rows],
        }

    def table(self) -> str:
        headers = ["VAE", "images", "PSNR", "SSIM", "LPIPS", "rFID"]
        body = []
        for r in self.rows:
            s = r.summary()
            lp = s["lpips"] or ("n/a" if self.lpips_note else "")
            body.append([r.vae, f"{s['images']}" + (f" ({r.failed} failed)" if r.failed else ""), s["psnr"] or "", s["ssim"] or "", lp, "n/a"])
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
        fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        lines = [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
        lines.append(f"{len(self.images)} images, {PREPARATION.format(size=self.size)}; mean +/- std (population)")
        for r in self.rows:
            if r.first_error:
                lines.append(f"{r.vae}: {r.first_error}")
        for p, why in self.skipped_images:
            lines.append(f"skipped {p}: {why}")
        if self.lpips_note:
            lines.append(self.lpips_note)
        lines.append(self.rfid_note)
        return "\n".join(lines)


def evaluate(
    image_paths: list[str],
    vae_paths: list[str],
    *,
    size: int = 256,
    encoder: str = "own",
    precision: str = "auto",
    tile="auto",
    lpips_dir: str | None = None,
    device: str | None = None,
    progress_bar: bool = True,
    load=None,
) -> EvalResult:
    """Round-trip every image with every VAE (see the module doc).

    Under `torchrun` each process takes every WORLD_SIZE-th image (its rank's share, on
    its own GPU: cuda:LOCAL_RANK), and the per-image numbers are gathered in the original
    order, so every rank returns the single-process result; print it on rank 0 only.
    """
    from tqdm import tqdm

    from vae_lab.compare.runner import CompareRequest, run_compare

    if size < 16:
        raise VaeLabError(f"--size must be at least 16, got {size}")
    if not vae_paths:
        raise VaeLabError("no VAE to evaluate: give at least one")
    rank, world = _distributed()
    if world > 1 and device is None:
        device = _rank_device()
    records = []  # this process's share of the images, as plain data (gathered across ranks)
    mine = list(enumerate(image_paths))[rank::world]
    for index, path in tqdm(mine, desc="eval", unit="img", disable=not progress_bar or rank != 0, dynamic_ncols=True):
        try:
            img = prepare_image(path, size)
        except VaeLabError as err:
            records.append({"i": index, "path": path, "skip": str(err)})
            continue
        req = CompareRequest(image=img, vae_paths=list(vae_paths), encoder=encoder, precision=precision,
                             tile=tile, lpips_dir=lpips_dir, device=device)
        res = run_compare(req, load=load)
        records.append({"i": index, "path": path, "skip": None, "lpips_note": res.lpips_note,
                        "out": [(o.name, o.family, o.ok, o.psnr, o.ssim, o.lpips, o.decode_seconds, o.error)
                                for o in res.outcomes]})
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, records)
        records = [r for part in gathered for r in part]
    records.sort(key=lambda r: r["i"])  # the single-process order: the same lists, the same means
    rows = [EvalRow(vae=os.path.basename(p), path=p) for p in vae_paths]
    result = EvalResult(size=size, images=[], rows=rows)
    for rec in records:
        if rec["skip"] is not None:
            result.skipped_images.append((rec["path"], rec["skip"]))
            continue
        result.images.append(rec["path"])
        result.lpips_note = rec["lpips_note"]
        for row, (name, family, ok, psnr, ssim, lpips, secs, error) in zip(rows, rec["out"]):
            row.vae, row.family = name, family or row.family
            if not ok or psnr is None:
                row.failed += 1
                row.first_error = row.first_error or error
                continue
            row.psnr.append(psnr)
            if ssim is not None:
                row.ssim.append(ssim)
            if lpips is not None:
                row.lpips.append(lpips)
            if secs is not None:
                row.decode_seconds.append(secs)
    if not result.images:
        raise VaeLabError("none of the images could be read")
    return result


def _distributed() -> tuple[int, int]:
    """(rank, world size) under `torchrun` (torch.distributed, initialised here: nccl on CUDA,
    gloo on CPU); (0, 1) in a plain process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _rank_device() -> str:
    import torch

    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"
