"""Latent <-> image helpers (modules/sd_samplers_common.py).

"Full" really runs the model's VAE. The approximations (Approx NN, Approx cheap, TAESD) are a fixed
linear latent->RGB map upsampled 8x here (the real ones are small networks); they exist so an
extension can see that a non-Full method bypasses the VAE.
"""

import torch

from modules import devices, shared
from modules.shared import opts

approximation_indexes = {"Full": 0, "Approx NN": 1, "Approx cheap": 2, "TAESD": 3}
full_decodes = 0  # stand-in only: decodes that went through model.decode_first_stage


def _cheap_approximation(sample):
    c = sample.shape[1]
    gen = torch.Generator().manual_seed(c)
    coefs = torch.randn(c, 3, generator=gen) * 0.3
    x = torch.einsum("...lxy,lr -> ...rxy", sample.float(), coefs)
    return torch.nn.functional.interpolate(x, scale_factor=8, mode="nearest").clamp(-1, 1)


def samples_to_images_tensor(sample, approximation=None, model=None):
    """Latents (diffusion space) -> RGB in [-1, 1]."""
    global full_decodes
    if approximation is None:
        approximation = approximation_indexes.get(opts.show_progress_type, 0)
    if approximation in (1, 2, 3):
        return _cheap_approximation(sample)
    if model is None:
        model = shared.sd_model
    with torch.no_grad(), devices.without_autocast():
        x_sample = model.decode_first_stage(sample.to(model.first_stage_model.dtype))
    full_decodes += 1
    return x_sample


def decode_first_stage(model, x):
    x = x.to(devices.dtype_vae)
    approx_index = approximation_indexes.get(opts.sd_vae_decode_method, 0)
    return samples_to_images_tensor(x, approx_index, model)


def images_tensor_to_samples(image, approximation=None, model=None):
    """Images in [0, 1] -> latents (diffusion space); batches are encoded one image at a time."""
    if approximation is None:
        approximation = approximation_indexes.get(opts.sd_vae_encode_method, 0)
    if model is None:
        model = shared.sd_model
    if approximation == 3:
        return torch.nn.functional.avg_pool2d(image.float(), 8).mean(1, keepdim=True).repeat(1, model.latent_channels, 1, 1)
    model.first_stage_model.to(devices.dtype_vae)
    image = image.to(shared.device, dtype=devices.dtype_vae)
    image = image * 2 - 1
    with torch.no_grad():
        if len(image) > 1:
            return torch.stack([model.get_first_stage_encoding(model.encode_first_stage(torch.unsqueeze(img, 0)))[0] for img in image])
        return model.get_first_stage_encoding(model.encode_first_stage(image))


def sample_to_image(samples, index=0, approximation=None):
    import numpy as np
    from PIL import Image
    x = samples_to_images_tensor(samples[index:index + 1], approximation)[0] * 0.5 + 0.5
    x = torch.clamp(x.float(), 0.0, 1.0)
    return Image.fromarray((255.0 * np.moveaxis(x.cpu().numpy(), 0, 2)).astype(np.uint8))


class Sampler:
    pass
