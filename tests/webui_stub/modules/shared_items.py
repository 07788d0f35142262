"""Helpers for option lists, and the `Shared` module class with the lazy `sd_model` (modules/shared_items.py)."""

import types


def sd_vae_items():
    import modules.sd_vae
    return ["Automatic", "None"] + list(modules.sd_vae.vae_dict)


def refresh_vae_list():
    import modules.sd_vae
    modules.sd_vae.refresh_vae_list()


def list_checkpoint_tiles(use_short=False):
    import modules.sd_models
    return modules.sd_models.checkpoint_tiles(use_short)


def refresh_checkpoints():
    import modules.sd_models
    return modules.sd_models.list_models()


def get_infotext_names():
    from modules import shared
    return [info.infotext for info in shared.opts.data_labels.values() if info.infotext]


class Shared(types.ModuleType):
    """Module class for `modules.shared`: reading `sd_model` loads a checkpoint if none is loaded."""

    sd_model_val = None

    @property
    def sd_model(self):
        import modules.sd_models
        return modules.sd_models.model_data.get_sd_model()

    @sd_model.setter
    def sd_model(self, value):
        import modules.sd_models
        modules.sd_models.model_data.set_sd_model(value)
