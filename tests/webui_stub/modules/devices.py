"""Devices and dtypes (modules/devices.py). The stand-in always runs on the CPU.

`dtype_vae` follows the real rules: float16 unless `--no-half`/`--no-half-vae`; the NaN retry
in `processing.decode_latent_batch` may change it for the rest of the session.
"""

import contextlib

import torch

from modules.shared_cmd_options import cmd_opts

cpu = torch.device("cpu")
device = device_interrogate = device_gfpgan = device_esrgan = device_codeformer = cpu
fp8 = False
force_fp16 = False
unet_needs_upcast = False

dtype = torch.float32 if cmd_opts.no_half or cmd_opts.precision == "full" else torch.float16
dtype_vae = torch.float32 if (cmd_opts.no_half or cmd_opts.no_half_vae) else torch.float16
dtype_unet = dtype
dtype_inference = dtype

gc_count = 0  # stand-in only: torch_gc calls


def get_optimal_device_name():
    return "cpu"


def get_optimal_device():
    return cpu


def get_device_for(task):
    return cpu


def has_mps():
    return False


def has_xpu():
    return False


def torch_gc():
    global gc_count
    gc_count += 1


def autocast(disable=False):
    # CPU: the real one returns a null context unless CUDA autocast applies
    return contextlib.nullcontext()


def without_autocast(disable=False):
    return contextlib.nullcontext()


def cond_cast_unet(x):
    return x


def cond_cast_float(x):
    return x


class NansException(Exception):
    pass


def test_for_nans(x, where):
    """Raise NansException if the FIRST element of `x` is NaN (the real check looks nowhere else)."""
    if cmd_opts.disable_nan_check:
        return
    if not torch.isnan(x[(0,) * x.dim()]):
        return
    if where == "unet":
        message = "A tensor with NaNs was produced in Unet."
    elif where == "vae":
        message = "A tensor with NaNs was produced in VAE."
    else:
        message = "A tensor with NaNs was produced."
    message += " Use --disable-nan-check commandline argument to disable this check."
    raise NansException(message)
