"""modules/sd_vae.py, Forge's: listing and resolution as in A1111, loading stubbed out.

Faithful (sd_vae.py 189-210): `load_vae_dict`, `load_vae`, `_load_vae_dict`,
`clear_loaded_vae` and `reload_vae_weights` are `pass`: they return None and change nothing,
so `loaded_vae_file` stays None, `get_loaded_vae_name()`/`get_loaded_vae_hash()` give None,
and an `sd_vae` override (API, X/Y/Z VAE axis) has no effect on the image. `vae_dict`,
`refresh_vae_list`, `resolve_vae` and friends are A1111's.
"""

from modules._a1111 import inherit

inherit(globals(), "sd_vae")


def load_vae_dict(filename, map_location):
    pass


def load_vae(model, vae_file=None, vae_source="from unknown source"):
    pass


def _load_vae_dict(model, vae_dict_1):
    pass


def clear_loaded_vae():
    pass


def reload_vae_weights(sd_model=None, vae_file=unspecified):  # noqa: F821
    pass
