"""AUTOMATIC1111's WebUI (1.10) as a `Host`: `first_stage_model`, `sd_vae`'s bookkeeping, `p.sd_vae_*`.

The WebUI's own switch (`sd_vae.reload_vae_weights`) moves the whole model to the CPU and back;
VAE Lab puts cached weights into `first_stage_model` by reference instead (no copy, see
`runtime.swap`) and leaves `sd_vae.loaded_vae_file`,
`sd_vae.base_vae`, `model.loaded_vae_file` and `model.base_vae` exactly as the WebUI's own
`load_vae` would, so its later reloads (a Settings change, a checkpoint switch) behave.
"""

from __future__ import annotations

import os

from modules import devices, processing, sd_models, sd_vae, shared

from vae_lab.webui.host import Host

FORGE_MESSAGE = (
    "VAE Lab: Forge manages VAEs itself (top bar 'VAE / Text Encoder'); per-generation and "
    "per-checkpoint swaps are off. The VAE Lab tab works as usual."
)


def looks_like_forge() -> bool:
    """Forge's `sd_vae` functions are no-ops; it selects VAEs via `forge_additional_modules`."""
    if hasattr(shared.opts, "forge_additional_modules"):
        return True
    model = sd_models.model_data.sd_model  # peek: never load a model just to ask
    return model is not None and getattr(model, "first_stage_model", True) is None


class _RefreshAlso:
    """`sd_vae.refresh_vae_list` while VAE Lab is loaded: the WebUI's own rescan, then `also`.

    The WebUI rebuilds `vae_dict` from its own folders at startup, on the SD VAE setting's 🔄,
    in the checkpoint editor and through the API; each looks `sd_vae.refresh_vae_list` up at
    call time, so replacing it keeps downloads in a folder the WebUI does not scan listed everywhere.
    """

    def __init__(self, webui_refresh, also):
        self.webui_refresh = webui_refresh
        self.also = also

    def __call__(self, *args, **kwargs):
        result = self.webui_refresh(*args, **kwargs)
        self.also()
        return result


class A1111Host(Host):
    name = "AUTOMATIC1111"

    def loaded_model(self):
        return sd_models.model_data.sd_model

    def current_model(self):
        return shared.sd_model

    def vae_module(self, model):
        return model.first_stage_model

    def model_flags(self, model) -> dict:
        return dict(
            is_sdxl=bool(getattr(model, "is_sdxl", False)),
            is_sd3=bool(getattr(model, "is_sd3", False)),
            is_flux=bool(getattr(model, "is_flux", False)),
            latent_channels=int(getattr(model, "latent_channels", 4) or 4),
        )

    def loaded_vae_file(self, model) -> str | None:
        return sd_vae.loaded_vae_file

    def base_vae(self, model):
        return sd_vae.base_vae

    def keep_base_vae(self, model) -> None:
        """The WebUI's `store_base_vae`, by reference and once per checkpoint.

        The WebUI deep-copies the checkpoint's VAE (on the model's device) each time a file's VAE
        goes in. Here the module's own tensors are kept as they are: a swap re-points the module
        at other tensors (`runtime.swap.swap_in`), so the checkpoint's own stay intact, cost no
        copy and take the memory the WebUI's copy would; the WebUI's `base_vae` is that dict.
        """
        info = getattr(model, "sd_checkpoint_info", None)
        if info is not None and sd_vae.checkpoint_info == info and sd_vae.base_vae is not None:
            return  # the WebUI already holds this checkpoint's own VAE
        assert not sd_vae.loaded_vae_file, "Trying to store non-base VAE!"
        from vae_lab.runtime import swap as weights

        sd_vae.base_vae, sd_vae.checkpoint_info = weights.tensors_of(self.vae_module(model)), info

    def mark_loaded(self, model, vae_file: str | None) -> None:
        if vae_file is None:
            sd_vae.delete_base_vae()  # what the WebUI's restore_base_vae leaves behind
        sd_vae.loaded_vae_file = vae_file
        model.loaded_vae_file = vae_file
        model.base_vae = sd_vae.base_vae
        if vae_file and os.path.basename(vae_file) not in sd_vae.vae_dict:
            sd_vae.vae_dict[os.path.basename(vae_file)] = vae_file

    def webui_choice(self, model) -> tuple[str | None, str]:
        info = getattr(model, "sd_checkpoint_info", None)
        try:
            res = sd_vae.resolve_vae(info.filename) if info is not None else None
        except Exception:  # the WebUI's own resolution failing must not break ours
            res = None
        if res is None:
            return sd_vae.loaded_vae_file, "the WebUI"
        return res.vae, f"the WebUI ({res.source})" if res.source else "the WebUI"

    def preference_blocked_by(self) -> str | None:
        if self.fixed_vae():
            return "the command line (--vae-path)"
        if self.option("sd_vae_overrides_per_model_preferences", True) and not sd_vae.is_automatic():
            return f"Settings > SD VAE ({shared.opts.sd_vae})"
        return None

    def fixed_vae(self) -> str | None:
        return getattr(shared.cmd_opts, "vae_path", None) or None

    def vae_list(self) -> dict[str, str]:
        return sd_vae.vae_dict

    def refresh_vae_list(self) -> None:
        current = sd_vae.refresh_vae_list
        getattr(current, "webui_refresh", current)()  # the WebUI's own, not the hooked one

    def hook_vae_list(self, also) -> None:
        current = sd_vae.refresh_vae_list
        sd_vae.refresh_vae_list = _RefreshAlso(getattr(current, "webui_refresh", current), also)  # never twice

    def unhook_vae_list(self) -> None:
        current = sd_vae.refresh_vae_list
        if isinstance(current, _RefreshAlso):
            sd_vae.refresh_vae_list = current.webui_refresh

    def vae_folder(self) -> str:
        return sd_vae.vae_path

    def extra_vae_folders(self) -> list[str]:
        extra = getattr(shared.cmd_opts, "vae_dir", None)
        return [extra] if extra else []

    def decode(self, model, samples):
        return processing.decode_latent_batch(model, samples, target_device=devices.cpu, check_for_nans=True)

    def record_main_vae(self, p, name: str | None, short_hash: str | None) -> None:
        # The WebUI captured p.sd_vae_name/hash once, before any per-generation swap or
        # override could be known to it: write what really decodes the main images.
        p.sd_vae_name = name
        p.sd_vae_hash = short_hash

    def option(self, key: str, default):
        return getattr(shared.opts, key, default)

    def unsupported(self) -> str | None:
        return FORGE_MESSAGE if looks_like_forge() else None
