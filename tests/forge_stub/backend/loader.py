"""backend/loader.py: how Forge turns a checkpoint plus "additional modules" into a model.

Faithful: `split_state_dict(sd, additional_state_dicts)` reads the checkpoint and then
every additional module file from disk (`load_torch_file`), and `replace_state_dict` drops
the checkpoint's own VAE keys and puts a VAE file's keys under the VAE prefix when the file
has `decoder.conv_in.weight` (loader.py 213-218, 454-458); a file with the VAE under
`first_stage_model.` is merged only when its latent channels fit the model type.
`forge_loader` runs under `torch.inference_mode()` (so every weight of the model is an
inference tensor: an in-place copy outside inference mode raises), and the VAE is loaded
with `strict=False` + printed missing/unexpected keys (backend/state_dict.py), so a file
that does not fit is not refused, only half loaded (a shape mismatch still raises).
Simplified: the model type comes from the A1111 stand-in's rules (`stub_ldm.detect_kind`)
instead of huggingface_guess; no text encoders; `file_reads` (stand-in only) lists every
file read.
"""

import os

import torch

import stub_ldm
from backend.diffusion_engine.sd15 import StableDiffusion
from backend.diffusion_engine.sd20 import StableDiffusion2
from backend.diffusion_engine.sd35 import StableDiffusion3
from backend.diffusion_engine.sdxl import StableDiffusionXL
from backend.nn.vae import IntegratedAutoencoderKL

ENGINES = {"sd1": StableDiffusion, "sd2": StableDiffusion2, "sdxl": StableDiffusionXL, "sd3": StableDiffusion3}
VAE_KEY_PREFIX = "first_stage_model."

file_reads: list = []  # stand-in only


def load_torch_file(ckpt, safe_load=False, device=None):
    if isinstance(ckpt, dict):
        return ckpt
    file_reads.append(os.path.abspath(ckpt))
    if ckpt.lower().endswith(".safetensors"):
        import safetensors.torch
        return safetensors.torch.load_file(ckpt, device=str(device or "cpu"))
    sd = torch.load(ckpt, map_location=device or "cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


class Guess:
    def __init__(self, kind):
        self.kind = kind
        self.vae_key_prefix = [VAE_KEY_PREFIX]
        self.unet_key_prefix = ["model.diffusion_model."]
        self.huggingface_repo = kind
        self.ztsnr = False

    def inpaint_model(self):
        return False


def replace_state_dict(sd, asd, guess):
    vae_key_prefix = guess.vae_key_prefix[0]
    if "decoder.conv_in.weight" in asd:
        for k in [k for k in sd if k.startswith(vae_key_prefix)]:
            del sd[k]
        for k, v in asd.items():
            sd[vae_key_prefix + k] = v
    if "first_stage_model.decoder.conv_in.weight" in asd:
        channels = asd["first_stage_model.decoder.conv_in.weight"].shape[1]
        if (guess.kind == "sd3") == (channels == 16):
            sd.update(asd)
    return sd


def split_state_dict(sd, additional_state_dicts: list = None):
    sd = dict(load_torch_file(sd))
    guess = Guess(stub_ldm.detect_kind(sd))
    if isinstance(additional_state_dicts, list):
        for asd in additional_state_dicts:
            asd = load_torch_file(asd)
            sd = replace_state_dict(sd, asd, guess)
            del asd
    state_dict = {
        "unet": {k[len("model.diffusion_model."):]: v for k, v in sd.items() if k.startswith("model.diffusion_model.")},
        "vae": {k[len(VAE_KEY_PREFIX):]: v for k, v in sd.items() if k.startswith(VAE_KEY_PREFIX)},
    }
    print(f"StateDict Keys: { {k: len(v) for k, v in state_dict.items()} }")
    return state_dict, guess


@torch.inference_mode()
def forge_loader(sd, additional_state_dicts=None):
    try:
        state_dicts, estimated_config = split_state_dict(sd, additional_state_dicts=additional_state_dicts)
    except Exception:
        raise ValueError("Failed to recognize model type!") from None
    vae_sd = state_dicts["vae"]
    assert isinstance(vae_sd, dict) and len(vae_sd) > 16, "You do not have VAE state dict!"
    vae = IntegratedAutoencoderKL(estimated_config.kind)
    missing, unexpected = vae.load_state_dict(vae_sd, strict=False)
    if missing:
        print(f"IntegratedAutoencoderKL Missing: {missing}")
    if unexpected:
        print(f"IntegratedAutoencoderKL Unexpected: {unexpected}")
    unet = torch.nn.Module()
    for k, v in state_dicts["unet"].items():
        unet.register_buffer(k.replace(".", "_"), v)
    return ENGINES[estimated_config.kind](estimated_config, {"vae": vae, "unet": unet})
