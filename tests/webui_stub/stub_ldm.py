"""The stand-in's fake Stable Diffusion models, with a real kl-f8 autoencoder inside.

A1111 builds `LatentDiffusion` (SD1/SD2) or sgm's `DiffusionEngine` (SDXL) from a YAML config.
Here one small `nn.Module` plays both: it carries a fake "unet" (one conv, only so checkpoints
have more than VAE keys) and a *real* kl-f8 `first_stage_model` in the LDM layout, so decoded
pixels really depend on the VAE weights that are loaded into it.

The autoencoder is the engine's `vae_lab.models.kl.AutoencoderKL` (the LDM module names), given
ldm's interface on top: `encode(x)` returns a `DiagonalGaussian` (`.sample()`, `.mode()`), as
`ldm.models.autoencoder.AutoencoderKL.encode` does, and `.dtype`. If that module cannot be
imported, `_PlaceholderKL` below (same parameter names and forward pass) stands in for it.

Every `.to()` on the model is recorded in `to_calls` so tests can tell the WebUI's VAE reload
(which moves the whole model CPU <-> device) from an extension's in-place swap (which does not).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from vae_lab.models.arch import KLArch

# tiny kl-f8 configs, the same as tests.factories (kept here so the stand-in has no test imports)
TINY_KL = KLArch(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=4)
TINY_KL16 = KLArch(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=16, use_quant_conv=False)

SD1_SCALE = 0.18215
SDXL_SCALE = 0.13025
SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609


# ---------------------------------------------------------------------------------------------
# placeholder kl-f8 autoencoder (LDM `model.py` structure, own code)

def _norm(c):
    return nn.GroupNorm(num_groups=min(32, c), num_channels=c, eps=1e-6, affine=True)


class _Resnet(nn.Module):
    def __init__(self, c_in, c_out):
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = _norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x):
        h = self.conv1(torch.nn.functional.silu(self.norm1(x)))
        h = self.conv2(torch.nn.functional.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class _Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = _norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (t.reshape(b, c, h * w).transpose(1, 2) for t in (self.q(n), self.k(n), self.v(n)))
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1) @ v
        return x + self.proj_out(a.transpose(1, 2).reshape(b, c, h, w))


class _Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = _Resnet(c, c), _Attn(c), _Resnet(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class _Sample(nn.Module):
    def __init__(self, c, down):
        super().__init__()
        self.down = down
        self.conv = nn.Conv2d(c, c, 3, stride=2 if down else 1, padding=0 if down else 1)

    def forward(self, x):
        if self.down:
            return self.conv(torch.nn.functional.pad(x, (0, 1, 0, 1)))
        return self.conv(torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Encoder(nn.Module):
    def __init__(self, a: KLArch):
        super().__init__()
        self.conv_in = nn.Conv2d(a.in_channels, a.ch, 3, padding=1)
        self.down = nn.ModuleList()
        c = a.ch
        for i, m in enumerate(a.ch_mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(a.num_res_blocks):
                level.block.append(_Resnet(c, a.ch * m))
                c = a.ch * m
            if i != len(a.ch_mult) - 1:
                level.downsample = _Sample(c, down=True)
            self.down.append(level)
        self.mid = _Mid(c)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, 2 * a.z_channels, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))


class _Decoder(nn.Module):
    def __init__(self, a: KLArch):
        super().__init__()
        c = a.ch * a.ch_mult[-1]
        self.conv_in = nn.Conv2d(a.z_channels, c, 3, padding=1)
        self.mid = _Mid(c)
        self.up = nn.ModuleList([nn.Module() for _ in a.ch_mult])
        for i in reversed(range(len(a.ch_mult))):
            level = self.up[i]
            level.block = nn.ModuleList()
            for _ in range(a.num_res_blocks + 1):
                level.block.append(_Resnet(c, a.ch * a.ch_mult[i]))
                c = a.ch * a.ch_mult[i]
            if i != 0:
                level.upsample = _Sample(c, down=False)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, a.out_channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            for block in self.up[i].block:
                h = block(h)
            if hasattr(self.up[i], "upsample"):
                h = self.up[i].upsample(h)
        return self.conv_out(torch.nn.functional.silu(self.norm_out(h)))


class DiagonalGaussian:
    """ldm's DiagonalGaussianDistribution: `.sample()`, `.mode()`, `.mean`, `.std`."""

    def __init__(self, moments):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))

    def sample(self, generator=None):
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * noise

    def mode(self):
        return self.mean


class _PlaceholderKL(nn.Module):
    """ldm's AutoencoderKL (inference part): `encode(x) -> DiagonalGaussian`, `decode(z) -> x`."""

    def __init__(self, arch: KLArch):
        super().__init__()
        self.arch = arch
        self.encoder = _Encoder(arch)
        self.decoder = _Decoder(arch)
        if arch.use_quant_conv:
            self.quant_conv = nn.Conv2d(2 * arch.z_channels, 2 * arch.z_channels, 1)
            self.post_quant_conv = nn.Conv2d(arch.z_channels, arch.z_channels, 1)

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    def encode(self, x):
        h = self.encoder(x)
        if hasattr(self, "quant_conv"):
            h = self.quant_conv(h)
        return DiagonalGaussian(h)

    def decode(self, z):
        if hasattr(self, "post_quant_conv"):
            z = self.post_quant_conv(z)
        return self.decoder(z)


def _ldm_interface(engine_cls):
    class LdmAutoencoderKL(engine_cls):
        """The engine's kl-f8 model with ldm's `encode -> distribution` and `.dtype`."""

        @property
        def dtype(self):
            return next(self.parameters()).dtype

        def encode(self, x):
            moments = self.encoder.tail(self.encoder.head(x))
            if self.arch.use_quant_conv:
                moments = self.quant_conv(moments)
            return DiagonalGaussian(moments)

    return LdmAutoencoderKL


try:
    from vae_lab.models.kl import AutoencoderKL as _EngineKL
    _AutoencoderKL = _ldm_interface(_EngineKL)
except ImportError:  # the engine's model is not there: same names, own forward pass
    _AutoencoderKL = _PlaceholderKL


def build_autoencoder(arch: KLArch) -> nn.Module:
    """A kl-f8 autoencoder with `.encode(x)` (a distribution) and `.decode(z)`, LDM parameter names."""
    return _AutoencoderKL(arch)


# ---------------------------------------------------------------------------------------------
# the fake diffusion model

MODEL_KINDS = ("sd1", "sd2", "sdxl", "sd3")


def detect_kind(state_dict) -> str:
    """The WebUI's rules (sd_models_config / set_model_type), applied to the stand-in's checkpoints."""
    if "model.diffusion_model.x_embedder.proj.weight" in state_dict:
        return "sd3"
    if any(k.startswith("conditioner.") for k in state_dict):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in state_dict):
        return "sd2"
    return "sd1"


def vae_arch_for(kind: str) -> KLArch:
    return TINY_KL16 if kind == "sd3" else TINY_KL


class FakeDiffusionModel(nn.Module):
    """An SD1/SD2/SDXL/SD3-shaped model: fake unet and conditioner, real kl-f8 first stage."""

    def __init__(self, kind: str = "sd1"):
        super().__init__()
        assert kind in MODEL_KINDS, kind
        self.kind = kind
        arch = vae_arch_for(kind)
        self.model = nn.Module()
        self.model.diffusion_model = nn.Module()
        if kind == "sd3":
            self.model.diffusion_model.x_embedder = nn.Module()
            self.model.diffusion_model.x_embedder.proj = nn.Conv2d(arch.z_channels, 8, 1)
        else:
            self.model.diffusion_model.input_conv = nn.Conv2d(arch.z_channels, 8, 1)
        if kind == "sdxl":
            self.conditioner = nn.Module()
            self.conditioner.embedders = nn.ModuleList([nn.Linear(4, 4)])
        else:
            self.cond_stage_model = nn.Module()
            inner = nn.Module()
            inner.fake = nn.Linear(4, 4)
            if kind == "sd2":
                self.cond_stage_model.model = inner
            else:
                self.cond_stage_model.transformer = inner
        self.first_stage_model = build_autoencoder(arch)
        self.latent_channels = arch.z_channels
        if kind == "sd3":
            self.latent_format = (SD3_SCALE, SD3_SHIFT)
        else:
            self.scale_factor = SDXL_SCALE if kind == "sdxl" else SD1_SCALE
        self.to_calls: list[str] = []  # every .to() target, e.g. ["cpu", "cpu"] for one VAE reload

    def to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device", kwargs.get("dtype"))
        self.to_calls.append(str(target))
        return super().to(*args, **kwargs)

    @property
    def moves(self) -> int:
        return len(self.to_calls)

    @contextlib.contextmanager
    def ema_scope(self, context=None):
        yield

    # ldm: z is diffusion-space; decode divides by scale_factor (SD3: (z / scale) + shift)
    def decode_first_stage(self, z):
        if self.kind == "sd3":
            scale, shift = self.latent_format
            z = z / scale + shift
        else:
            z = z / self.scale_factor
        return self.first_stage_model.decode(z)

    def encode_first_stage(self, x):
        return self.first_stage_model.encode(x)

    def get_first_stage_encoding(self, encoder_posterior):
        z = encoder_posterior.sample() if isinstance(encoder_posterior, DiagonalGaussian) else encoder_posterior
        if self.kind == "sd3":
            scale, shift = self.latent_format
            return (z - shift) * scale
        return self.scale_factor * z


def fake_unet_state_dict(kind: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The non-VAE keys of a stand-in checkpoint of `kind` (detected back by `detect_kind`)."""
    model = FakeDiffusionModel(kind)
    gen = torch.Generator().manual_seed(seed)
    return {
        k: torch.randn(v.shape, generator=gen) * 0.1
        for k, v in model.state_dict().items()
        if not k.startswith("first_stage_model.")
    }
