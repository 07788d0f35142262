"""madebyollin's Tiny AutoEncoders (TAESD, TAESDXL, TAESD3, TAEF1, TAEF2, TAESANA).

A small conv-only encoder/decoder distilled from a full VAE. The architecture is a
`vae_lab.models.arch.TAEArch` (latent channels, 8x or 32x, which Blocks carry FLUX.2's `pool`
branch); the layers come from its plans `tae_encoder_plan` / `tae_decoder_plan`, whose
indices follow madebyollin/taesd `taesd.py`, so the `.pth` state dicts (bare
`nn.Sequential` dicts) load directly and strictly.

TAE convention: images in [0, 1] and latents as the diffusion model sees them (scale
1, shift 0). This wrapper speaks the project's convention at its edges: images in
[-1, 1]; latents stay in TAE (= diffusion) space, which `families.latent_scaling` maps
with the identity.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vae_lab.models.arch import TAEArch, infer_tae_arch, tae_decoder_plan, tae_encoder_plan
from vae_lab.errors import BadVaeFile


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
                nn.Conv2d(n_in, wide, 1, bias=False), nn.GroupNorm(4, wide), nn.ReLU(), nn.Conv2d(wide, n_in, 1, bias=False)
            )

    def forward(self, x):
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + self.skip(x))

    def graph(self, g, x):
        """This block in a `tiling.Graph` (same ops as `forward`)."""
        if self.pool is not None:
            wide, gn, _relu, narrow = self.pool
            p = g.map(g.norm(g.conv(x, wide), gn), torch.relu, name="pool.relu")
            x = g.add(x, g.conv(p, narrow), name="pool.add")
        h = _sequential_graph(g, self.conv, x)
        skip = x if isinstance(self.skip, nn.Identity) else g.conv(x, self.skip, name="skip")
        return g.keep(g.map(g.add(h, skip), torch.relu, name="block.out"), "small")


def _sequential_graph(g, seq, x):
    """The layers of a TAE `nn.Sequential` (convs, ReLUs, x2 upsampling, Clamp, Blocks) in a graph."""
    for m in seq:
        if isinstance(m, nn.Conv2d):
            x = g.conv(x, m)
        elif isinstance(m, nn.ReLU):
            x = g.map(x, torch.relu, name="relu")
        elif isinstance(m, Clamp):
            x = g.map(x, m, name="clamp")
        elif isinstance(m, nn.Upsample):
            x = g.up2(x)
        elif isinstance(m, Block):
            x = m.graph(g, x)
        else:
            raise TypeError(f"no tiled form for {type(m).__name__}")
    return x


def _sequential(plan: list[tuple], latent_channels: int, pool_blocks: tuple[int, ...], filler) -> nn.Sequential:
    """The layers of `plan`; the indices it skips (no parameters) are `filler(index)`."""
    layers: list[nn.Module] = []
    for kind, index, *dims in plan:
        layers += [filler(i) for i in range(len(layers), index)]
        if kind == "conv":
            c_in, c_out, stride, bias = dims
            layers.append(conv(c_in or latent_channels, c_out or latent_channels, stride=stride, bias=bias))
        else:
            layers.append(Block(dims[0], dims[0], pool=index in pool_blocks))
    return nn.Sequential(*layers)


def build_encoder(arch: TAEArch) -> nn.Sequential:
    """madebyollin's `Encoder` / `F32Encoder`: the skipped indices are ReLUs."""
    return _sequential(tae_encoder_plan(arch.downscale), arch.latent_channels, arch.encoder_pool_blocks,
                       lambda i: nn.ReLU())


def build_decoder(arch: TAEArch) -> nn.Sequential:
    """madebyollin's `Decoder` / `F32Decoder`: Clamp at 0, ReLU at 2, the other skipped indices upsample."""
    return _sequential(tae_decoder_plan(arch.downscale), arch.latent_channels, arch.decoder_pool_blocks,
                       lambda i: Clamp() if i == 0 else nn.ReLU() if i == 2 else nn.Upsample(scale_factor=2))


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


class TAE(nn.Module):
    """Tiny autoencoder: `encode(images[-1,1]) -> latents`, `decode(latents) -> images[-1,1]`."""

    kind = "tae"

    def __init__(self, state_dict: dict, arch: TAEArch | None = None):
        """Build `arch` (read from the keys when None) and load the normalised TAE state dict
        (`encoder.N…` and/or `decoder.N…`) into it."""
        super().__init__()
        enc_sd, dec_sd = split_state_dict(state_dict)
        if arch is None:
            try:
                arch = infer_tae_arch(state_dict)
            except ValueError as err:
                raise BadVaeFile(f"not a TAESD-layout state dict ({err})") from None
        self.arch = arch
        self.latent_channels = arch.latent_channels
        self.downscale = arch.downscale
        from vae_lab.models import empty_init, load_weights

        with empty_init():
            self.encoder = build_encoder(arch) if arch.has_encoder else None
            self.decoder = build_decoder(arch) if arch.has_decoder else None
        try:
            if self.encoder is not None:
                load_weights(self.encoder, enc_sd)
            if self.decoder is not None:
                load_weights(self.decoder, dec_sd)
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

    def encode_head_graph(self, g):
        x = g.map(g.input, lambda t: t * 0.5 + 0.5, name="to01")
        return _sequential_graph(g, self.encoder[: self._split(self.encoder, False)], x)

    def decode_tail_graph(self, g):
        y = _sequential_graph(g, self.decoder[self._split(self.decoder, True):], g.input)
        return g.map(y, lambda t: t * 2.0 - 1.0, name="to11")
