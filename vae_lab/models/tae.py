"""madebyollin's Tiny AutoEncoders (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2, TAESANA).

A small conv-only encoder/decoder distilled from a full VAE. Structure and module
indices follow madebyollin/taesd `taesd.py`, so the `.pth` state dicts (bare
`nn.Sequential` dicts) load directly and strictly. The variant is read from the weights:

- latent channels from the first decoder conv / last encoder conv (4, 16 or 32);
- FLUX.2 (taef2): some blocks carry a `pool` branch (1x1 conv -> GroupNorm(4) -> ReLU ->
  1x1 conv, added to the block input) — found by the presence of `N.pool.*` keys;
- Sana (taesana): 32x spatial scale, wider decoder — found by the first conv shapes.

TAE convention: images in [0, 1] and latents as the diffusion model sees them (scale
1, shift 0). This wrapper speaks the project's convention at its edges: images in
[-1, 1]; latents stay in TAE (= diffusion) space, which `families.latent_scaling` maps
with the identity.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn

from vae_lab.errors import BadVaeFile
from vae_lab.tiling import SyncGroupNorm


def conv(n_in: int, n_out: int, **kwargs) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of decoder input latents to about [-3, 3]."""

    def forward(self, x):
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    def __init__(self, n_in: int, n_out: int, pool: bool = False):
        super().__init__()
        self.conv = nn.Sequential(conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out))
        self.skip = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()
        self.pool = None
        if pool:  # FLUX.2's global-statistics branch
            wide = n_in * 4
            self.pool = nn.Sequential(
                nn.Conv2d(n_in, wide, 1, bias=False), SyncGroupNorm(4, wide), nn.ReLU(), nn.Conv2d(wide, n_in, 1, bias=False)
            )

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))


def _pooled(sd: dict, index: int) -> bool:
    return f"{index}.pool.0.weight" in sd


def build_encoder(sd: dict, latent_channels: int, f32: bool) -> nn.Sequential:
    """The encoder Sequential whose indices match `sd` (TAESD `.pth` layout)."""
    layers: list[nn.Module] = []

    def block(c):
        layers.append(Block(c, c, pool=_pooled(sd, len(layers))))

    if f32:
        layers += [conv(3, 32, stride=2), nn.ReLU(), conv(32, 64, stride=2), nn.ReLU()]
        block(64)
        stages = 4
    else:
        layers.append(conv(3, 64))
        block(64)
        stages = 3
    for _ in range(stages):
        layers.append(conv(64, 64, stride=2, bias=False))
        for _ in range(3):
            block(64)
    layers.append(conv(64, latent_channels))
    return nn.Sequential(*layers)


def build_decoder(sd: dict, latent_channels: int, f32: bool) -> nn.Sequential:
    """The decoder Sequential whose indices match `sd` (TAESD `.pth` layout)."""
    widths = [256, 128, 64, 64, 64, 64] if f32 else [64, 64, 64, 64]
    layers: list[nn.Module] = [Clamp(), conv(latent_channels, widths[0]), nn.ReLU()]
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        for _ in range(3):
            layers.append(Block(c_in, c_in, pool=_pooled(sd, len(layers))))
        layers += [nn.Upsample(scale_factor=2), conv(c_in, c_out, bias=False)]
    layers.append(Block(widths[-1], widths[-1], pool=_pooled(sd, len(layers))))
    layers.append(conv(widths[-1], 3))
    return nn.Sequential(*layers)


def split_state_dict(state_dict: dict) -> tuple[dict, dict]:
    """`encoder.N…`/`decoder.N…` keys -> (encoder dict, decoder dict) with bare indices."""
    enc, dec = {}, {}
    for key, value in state_dict.items():
        part, _, rest = key.partition(".")
        if part == "encoder":
            enc[rest] = value
        elif part == "decoder":
            dec[rest] = value
        else:
            raise BadVaeFile(f"unexpected tensor {key!r} in a TAE state dict (want encoder.* / decoder.*)")
    return enc, dec


def _last_conv(sd: dict) -> torch.Tensor:
    idx = max(int(m.group(1)) for k in sd if (m := re.match(r"(\d+)\.weight$", k)))
    return sd[f"{idx}.weight"]


class TAE(nn.Module):
    """Tiny autoencoder: `encode(images[-1,1]) -> latents`, `decode(latents) -> images[-1,1]`."""

    kind = "tae"

    def __init__(self, state_dict: dict):
        """Build from a normalised TAE state dict (`encoder.N…` and/or `decoder.N…`) and load it."""
        super().__init__()
        enc_sd, dec_sd = split_state_dict(state_dict)
        if not enc_sd and not dec_sd:
            raise BadVaeFile("a TAE state dict with neither encoder nor decoder tensors")
        try:
            c_dec = dec_sd["1.weight"].shape[1] if dec_sd else None
            c_enc = _last_conv(enc_sd).shape[0] if enc_sd else None
        except (KeyError, ValueError) as err:
            raise BadVaeFile(f"not a TAESD-layout state dict ({err})") from None
        if c_dec is not None and c_enc is not None and c_dec != c_enc:
            raise BadVaeFile(f"TAE encoder makes {c_enc}-channel latents but the decoder takes {c_dec}")
        self.latent_channels = c_dec if c_dec is not None else c_enc
        f32 = bool((dec_sd and dec_sd["1.weight"].shape[0] == 256) or (enc_sd and enc_sd.get("0.weight", torch.empty(0, 0, 0, 0)).shape[0] == 32))
        self.downscale = 32 if f32 else 8
        self.variant = "f32" if f32 else ("flux_2" if any(".pool." in k for k in state_dict) else "sd")
        self.encoder = build_encoder(enc_sd, self.latent_channels, f32) if enc_sd else None
        self.decoder = build_decoder(dec_sd, self.latent_channels, f32) if dec_sd else None
        try:
            if self.encoder is not None:
                self.encoder.load_state_dict(enc_sd, strict=True)
            if self.decoder is not None:
                self.decoder.load_state_dict(dec_sd, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            raise BadVaeFile(f"TAE weights do not fit the TAESD layout: {first[1].strip() if len(first) > 1 else first[0]}") from None

    @property
    def has_encoder(self) -> bool:
        return self.encoder is not None

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_tail(self.encode_head(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_tail(self.decode_head(z))

    # The split used by tiling: the full-resolution half may run tile by tile, the
    # latent-resolution half (where FLUX.2's pooled GroupNorms sit) runs whole.
    def _split(self, seq: nn.Sequential, first_up: bool) -> int:
        kinds = [isinstance(m, nn.Upsample) for m in seq]
        if first_up:
            return kinds.index(True)  # decoder: everything before the first upsample
        strided = [i for i, m in enumerate(seq) if isinstance(m, nn.Conv2d) and m.stride[0] == 2]
        return strided[-1] + 1  # encoder: everything up to the last stride-2 conv

    def encode_head(self, x):
        k = self._split(self.encoder, False)
        return self.encoder[:k](x * 0.5 + 0.5)

    def encode_tail(self, h):
        return self.encoder[self._split(self.encoder, False):](h)

    def decode_head(self, z):
        return self.decoder[: self._split(self.decoder, True)](z)

    def decode_tail(self, h):
        return self.decoder[self._split(self.decoder, True):](h) * 2.0 - 1.0
