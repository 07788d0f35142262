"""Key normalisation: every way a VAE's tensors are named on disk, mapped to one layout.

kl-f8 VAEs end up in the LDM/CompVis layout that A1111 loads strictly
(`encoder.down.0.block.0.norm1.weight`, …; see `vae_lab.models.shapes.expected_shapes`).
TAE halves end up as `encoder.N…` / `decoder.N…` with the indices of madebyollin's
`.pth` files.

Handled here: `{"state_dict": …}` wrappers, full checkpoints with a baked VAE
(`first_stage_model.`, `model.first_stage_model.`, `vae.`, `model.vae.`), the keys A1111
drops (`loss*`, `model_ema.*`), the diffusers `AutoencoderKL` layout in both its newer
(`to_q`, `to_out.0`) and older (`query`, `proj_attn`) attention names, and the diffusers
`AutoencoderTiny` layout (`encoder.layers.N`, `decoder.layers.N` without the Clamp).
Layouts are detected from keys, never from file names.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Prefixes under which full checkpoints carry their VAE, most specific first.
CHECKPOINT_PREFIXES = ("model.first_stage_model.", "first_stage_model.", "model.vae.", "vae.")

_VAE_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def unwrap(obj):
    """The flat name → value mapping inside what a pickle held (A1111: `pop("state_dict", sd)`)."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        return obj["state_dict"]
    return obj


def find_prefix(keys) -> str:
    """The prefix of a baked VAE inside a full checkpoint, or "" for a VAE file."""
    keys = list(keys)
    if any(k.startswith(_VAE_ROOTS) for k in keys):
        return ""
    for prefix in CHECKPOINT_PREFIXES:
        if any(k.startswith(prefix + root) for k in keys for root in ("encoder.", "decoder.")):
            return prefix
    return ""


def is_dropped(key: str) -> bool:
    """Keys that are not part of the model: training loss modules and EMA bookkeeping."""
    return key.startswith("loss") or key.startswith("model_ema.")


# --- kind / layout detection ----------------------------------------------------------------

_DIFFUSERS_KL = re.compile(r"^(encoder|decoder)\.(down_blocks|up_blocks|mid_block|conv_norm_out)\.")
_LDM_KL = re.compile(r"^(encoder\.(down|mid|conv_in|conv_out|norm_out)\.|decoder\.(up|mid|conv_in|conv_out|norm_out)\.|(post_)?quant_conv\.)")
_TAE_PTH = re.compile(r"^\d+\.")
_TAE_DIFFUSERS = re.compile(r"^(encoder|decoder)\.layers\.\d+\.")
_TAE_NORMALISED = re.compile(r"^(encoder|decoder)\.\d+\.")


def detect(keys) -> tuple[str, str] | None:
    """(kind, on-disk layout) from the key names: ("kl", "ldm"|"diffusers") or
    ("tae", "tae"|"tae-diffusers"); None when nothing looks like a VAE."""
    keys = list(keys)
    if not keys:
        return None
    if any(_DIFFUSERS_KL.match(k) for k in keys):
        return "kl", "diffusers"
    if any(_LDM_KL.match(k) for k in keys):
        return "kl", "ldm"
    if any(_TAE_DIFFUSERS.match(k) for k in keys):
        return "tae", "tae-diffusers"
    if any(_TAE_PTH.match(k) for k in keys) or any(_TAE_NORMALISED.match(k) for k in keys):
        return "tae", "tae"
    return None


# --- diffusers AutoencoderKL -> LDM -----------------------------------------------------------

_ATTN_NAMES = {
    "group_norm": "norm",
    "to_q": "q",
    "query": "q",
    "to_k": "k",
    "key": "k",
    "to_v": "v",
    "value": "v",
    "to_out.0": "proj_out",
    "proj_attn": "proj_out",
}

_RULES = [
    (re.compile(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\."), lambda m, n: f"encoder.down.{m[1]}.block.{m[2]}."),
    (re.compile(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\."), lambda m, n: f"encoder.down.{m[1]}.downsample."),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\."), lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}."),
    (re.compile(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\."), lambda m, n: f"decoder.up.{n - 1 - int(m[1])}.upsample."),
    (re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\."), lambda m, n: f"{m[1]}.mid.block_{int(m[2]) + 1}."),
    (
        re.compile(r"^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0|query|key|value|proj_attn)\."),
        lambda m, n: f"{m[1]}.mid.attn_1.{_ATTN_NAMES[m[2]]}.",
    ),
    (re.compile(r"^(encoder|decoder)\.conv_norm_out\."), lambda m, n: f"{m[1]}.norm_out."),
]


_UP_BLOCK = re.compile(r"^decoder\.up_blocks\.(\d+)\.")


def diffusers_kl_key(key: str, n_up: int) -> str:
    """One diffusers `AutoencoderKL` key in the LDM layout (`n_up`: number of decoder up blocks)."""
    for pattern, repl in _RULES:
        m = pattern.match(key)
        if m:
            key = repl(m, n_up) + key[m.end():]
            break
    return key.replace(".conv_shortcut.", ".nin_shortcut.")


def diffusers_kl_to_ldm(sd: Mapping) -> dict:
    """A diffusers `AutoencoderKL` state dict in the LDM layout.

    The decoder's up blocks are numbered the other way round, attention projections are
    `nn.Linear` `[C, C]` in diffusers and 1x1 convs `[C, C, 1, 1]` in LDM.
    """
    ups = {int(m[1]) for k in sd if (m := _UP_BLOCK.match(k))}
    n_up = max(ups) + 1 if ups else 0
    out = {}
    for key, t in sd.items():
        new = diffusers_kl_key(key, n_up)
        if ".mid.attn_1." in new and new.endswith(".weight") and getattr(t, "ndim", 0) == 2:
            t = t.reshape(*t.shape, 1, 1)
        out[new] = t
    return out


# --- TAE layouts -------------------------------------------------------------------------------


def tae_half_of(sd: Mapping) -> str | None:
    """Which half a bare `.pth` TAE state dict is, from its tensors: "encoder", "decoder" or None.

    The encoder starts with `0.weight` `[64, 3, 3, 3]` (an RGB input); the decoder's index 0 is
    the parameterless Clamp, so its first conv is `1.weight` `[64, C, 3, 3]`.
    """
    first = sd.get("0.weight")
    if first is not None and tuple(first.shape)[1:2] == (3,):
        return "encoder"
    if first is None and sd.get("1.weight") is not None and getattr(sd["1.weight"], "ndim", 0) == 4:
        return "decoder"
    return None


def tae_pth_to_normalised(sd: Mapping, half: str) -> dict:
    return {f"{half}.{k}": t for k, t in sd.items()}


def tae_diffusers_to_normalised(sd: Mapping) -> dict:
    """`AutoencoderTiny` keys → `.pth` indices: the decoder lost its Clamp at index 0, so +1."""
    out = {}
    for key, t in sd.items():
        m = _TAE_DIFFUSERS.match(key)
        if not m:
            out[key] = t
            continue
        half = m[1]
        idx = int(key.split(".")[2])
        rest = key[m.end():]
        out[f"{half}.{idx + 1 if half == 'decoder' else idx}.{rest}"] = t
    return out
