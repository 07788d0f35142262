"""Forge's device and memory manager (backend/memory_management.py), CPU-only.

Faithful names: `cpu`, `vae_dtype()`, `vae_device()`, `vae_offload_device()`,
`intermediate_device()`, `load_models_gpu`, `load_model_gpu`, `unload_all_models`,
`soft_empty_cache`, `get_free_memory`, `dtype_size`, `OOM_EXCEPTION`, `VAE_ALWAYS_TILED`.
Simplified: one device (the CPU, as under `--always-cpu`), so "loading to the GPU" moves
nothing; `loads` / `unloads` count the calls (stand-in only).
"""

import torch

cpu = torch.device("cpu")
OOM_EXCEPTION = torch.cuda.OutOfMemoryError if hasattr(torch.cuda, "OutOfMemoryError") else MemoryError
VAE_ALWAYS_TILED = False
total_vram = 8192  # MB, as reported on a CPU install
current_inference_memory = 1024 * 1024 * 1024
PIN_SHARED_MEMORY = False

loads: list = []  # stand-in only: the patchers passed to load_models_gpu
unloads = 0  # stand-in only: unload_all_models calls


def get_torch_device():
    return cpu


def vae_device():
    return cpu


def vae_offload_device():
    return cpu


def intermediate_device():
    return cpu


def vae_dtype(device=None, allowed_dtypes=()):
    return torch.float32  # CPU: Forge keeps the VAE in fp32


def text_encoder_dtype(device=None):
    return torch.float32


def dtype_size(dtype):
    return torch.empty((), dtype=dtype).element_size()


def get_free_memory(device=None, torch_free_too=False):
    return 16 * 1024 ** 3


def load_models_gpu(models, memory_required=0):
    loads.extend(models)


def load_model_gpu(model):
    return load_models_gpu([model])


def unload_all_models():
    global unloads
    unloads += 1


def soft_empty_cache(force=False):
    pass
