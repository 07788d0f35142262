"""modules/sd_samplers_common.py, Forge's: a "Full" decode is `model.decode_first_stage(sample)`
(the engine's, through `forge_objects.vae`), without A1111's dtype cast to `first_stage_model`
(Forge's engine has `first_stage_model = None`); an encode is `model.encode_first_stage`.
The approximations are the A1111 stand-in's."""

import torch

from modules._a1111 import inherit

inherit(globals(), "sd_samplers_common")


def samples_to_images_tensor(sample, approximation=None, model=None):
    global full_decodes
    if approximation is None:
        approximation = approximation_indexes.get(opts.show_progress_type, 0) or 1  # noqa: F821
    if approximation in (1, 2, 3):
        return _cheap_approximation(sample)  # noqa: F821
    if model is None:
        model = shared.sd_model  # noqa: F821
    x_sample = model.decode_first_stage(sample)
    full_decodes += 1
    return x_sample


def decode_first_stage(model, x):
    approx_index = approximation_indexes.get(opts.sd_vae_decode_method, 0)  # noqa: F821
    return samples_to_images_tensor(x, approx_index, model)


def images_tensor_to_samples(image, approximation=None, model=None):
    if approximation is None:
        approximation = approximation_indexes.get(opts.sd_vae_encode_method, 0)  # noqa: F821
    if model is None:
        model = shared.sd_model  # noqa: F821
    if approximation == 3:
        return torch.nn.functional.avg_pool2d(image.float(), 8).mean(1, keepdim=True).repeat(1, model.forge_objects.vae.latent_channels, 1, 1)
    image = image.to(shared.device, dtype=devices.dtype_vae)  # noqa: F821
    image = image * 2 - 1
    if len(image) > 1:
        return torch.stack([model.get_first_stage_encoding(model.encode_first_stage(torch.unsqueeze(img, 0)))[0] for img in image])
    return model.get_first_stage_encoding(model.encode_first_stage(image))
