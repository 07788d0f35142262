"""Forge (lllyasviel's stable-diffusion-webui-forge, 2.x) as a `Host`: a VAE per generation without a reload.

In Forge `sd_vae`'s loaders are no-ops and the only VAE switch is the top bar's "VAE / Text
Encoder" (`opts.forge_additional_modules`), which rebuilds the whole model at the next
generation (`sd_models.forge_model_reload`). The model has `first_stage_model = None`; its VAE
is `sd_model.forge_objects.vae`, whose `first_stage_model` module (LDM parameter names) every
decode goes through. VAE Lab puts a VAE's weights into that module by reference, from its RAM
cache, and puts the model's own tensors back afterwards; nothing is copied and the checkpoint is
never reloaded.

What differs from A1111, and where the shared code (`generation`, `checkpoint`, `swap`) asks:

* `rebuilds_model`: `before_process` runs before Forge (re)builds the model, so the swap waits
  for `process` (after `forge_model_reload`); a model rebuilt mid-generation, even from the same
  checkpoint, gets it again in `on_model_loaded`.
* `writing_weights`: Forge builds the model under `torch.inference_mode()`; its weights are
  inference tensors, swapped inside inference mode (and given new `Parameter` objects: see
  `runtime.swap._put`).
* The model's own VAE (the checkpoint's, or the top bar's choice) is kept aside by reference once
  per model object before the first swap (`keep_base_vae`); restoring puts those tensors back.
* `record_main_vae`: Forge's infotext has no VAE fields, so "VAE"/"VAE hash" go into
  `p.extra_generation_params`; Forge's parser turns a pasted "VAE" into a "VAE/TE" module
  override (a checkpoint reload), so `on_infotext_pasted` gives it back to the accordion.
* `requested_vae`: an `sd_vae` override (API, pasted chip, the X/Y/Z plot's VAE axis) does
  nothing in Forge; VAE Lab applies it as the generation's VAE, and an X/Y/Z cell that differs
  from the previous one only by that VAE reuses its latents (`before_sampling`).
* A VAE chosen in the top bar is the user's setting ("As in Settings"): a per-checkpoint
  preference does not override it (`preference_blocked_by`).

Forks that keep the VAE elsewhere (e.g. Haoming02's Forge Classic/Neo when they differ) are
recognised by what this module needs (`forge_objects.vae.first_stage_model`) and get one message
(`unsupported`) instead of a half-working swap.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections import OrderedDict

from modules import processing, shared

from vae_lab.webui.a1111 import A1111Host

log = logging.getLogger(__name__)

UNSUPPORTED_MESSAGE = (
    "VAE Lab: this Forge variant keeps its VAE where VAE Lab cannot swap it (no "
    "sd_model.forge_objects.vae.first_stage_model); per-generation, 'also decode with' and "
    "per-checkpoint VAEs are off. The VAE Lab tab works as usual."
)
LATENT_ENTRIES = 16  # X/Y/Z: batches of latents kept for the cells of one plot


def detect() -> bool:
    """Forge proper: its `modules_forge` package is importable (checked without importing it)."""
    try:
        return importlib.util.find_spec("modules_forge") is not None
    except (ImportError, ValueError):
        return False


def _main_vae_field(index: int, option: str):
    """An infotext field (callable, as the WebUI evaluates them per image) naming the main VAE of `p`."""

    def field(**kw):
        main = getattr(kw.get("p"), "_vae_lab_main_vae", None)
        if not main or not getattr(shared.opts, option, True):
            return None
        return main[index]

    return field


class ForgeHost(A1111Host):
    """Forge is A1111 1.10's fork: its VAE list, folders, options and decode are A1111's; the
    model's VAE, its bookkeeping and the infotext are its own."""

    name = "Forge"
    rebuilds_model = True

    def __init__(self):
        self._latents: OrderedDict = OrderedDict()  # signature -> latents of one batch, current plot only
        self._latents_plot = None  # the `override_settings` dict the X/Y/Z cells of one plot share

    # --- the model ------------------------------------------------------------------------

    def vae_module(self, model):
        """The `first_stage_model` of Forge's VAE object, or None (no model yet / another fork)."""
        vae = getattr(getattr(model, "forge_objects", None), "vae", None)
        return getattr(vae, "first_stage_model", None)

    def model_flags(self, model) -> dict:
        vae = getattr(getattr(model, "forge_objects", None), "vae", None)
        return dict(
            is_sdxl=bool(getattr(model, "is_sdxl", False)),
            is_sd3=bool(getattr(model, "is_sd3", False)),
            is_flux=type(model).__name__ in ("Flux", "Chroma"),
            latent_channels=int(getattr(vae, "latent_channels", 4) or 4),
        )

    def writing_weights(self):
        import torch

        return torch.inference_mode()

    # --- the VAE in use ---------------------------------------------------------------------

    def loaded_vae_file(self, model) -> str | None:
        """The VAE file VAE Lab put into `model`; None while it has the VAE Forge built it with."""
        return getattr(model, "_vae_lab_file", None)

    def base_vae(self, model):
        return getattr(model, "_vae_lab_base", None)

    def keep_base_vae(self, model) -> None:
        """Forge's own VAE of this model object, kept by reference once (a rebuilt model is a new
        object): a swap re-points the module at other tensors, so these stay intact uncopied."""
        if getattr(model, "_vae_lab_base", None) is None:
            from vae_lab.runtime import swap as weights

            model._vae_lab_base = weights.tensors_of(self.vae_module(model))

    def mark_loaded(self, model, vae_file: str | None) -> None:
        model._vae_lab_file = vae_file  # Forge keeps no VAE bookkeeping VAE Lab must update

    def top_bar_vae(self) -> str | None:
        """The VAE among the top bar's "VAE / Text Encoder" modules (None: the checkpoint's own)."""
        for path in self.option("forge_additional_modules", None) or []:
            if self._is_vae_file(path):
                return path
        return None

    def _is_vae_file(self, path: str) -> bool:
        listed = self.vae_list().get(os.path.basename(path))
        if listed and os.path.normcase(os.path.abspath(listed)) == os.path.normcase(os.path.abspath(path)):
            return True
        if path.lower().endswith(".safetensors") and os.path.isfile(path):
            try:
                from safetensors import safe_open

                with safe_open(path, framework="pt") as f:
                    return any(k.endswith("decoder.conv_in.weight") for k in f.keys())
            except Exception:  # a module file Forge may read, VAE Lab cannot: not a VAE to it
                return False
        return False

    def webui_choice(self, model) -> tuple[str | None, str]:
        vae = self.top_bar_vae()
        return None, f"Forge's top bar ({os.path.basename(vae)})" if vae else "Forge (the checkpoint's own VAE)"

    def preference_blocked_by(self) -> str | None:
        vae = self.top_bar_vae()
        return f"Forge's top bar 'VAE / Text Encoder' ({os.path.basename(vae)})" if vae else None

    def fixed_vae(self) -> str | None:
        return None  # Forge's --vae-path loader is a no-op

    # --- generations --------------------------------------------------------------------------

    def requested_vae(self, p) -> str | None:
        value = (getattr(p, "override_settings", None) or {}).get("sd_vae")
        if not value or str(value).lower() == "automatic":
            return None
        return str(value)

    def record_main_vae(self, p, name: str | None, short_hash: str | None) -> None:
        p._vae_lab_main_vae = (name, short_hash)
        params = p.extra_generation_params
        for key, index, option in (("VAE", 0, "add_vae_name_to_info"), ("VAE hash", 1, "add_vae_hash_to_info")):
            if callable(params.get(key)):
                continue  # VAE Lab's fields (also the per-image ones of "also decode with") read p already
            params[key] = _main_vae_field(index, option)

    def main_vae_name(self, p) -> str | None:
        main = getattr(p, "_vae_lab_main_vae", None)  # Forge's own p.sd_vae_name is always None
        return main[0] if main else None

    def main_vae_hash(self, p) -> str | None:
        main = getattr(p, "_vae_lab_main_vae", None)
        return main[1] if main else None

    def before_sampling(self, p, has_extras: bool) -> None:
        if self.requested_vae(p) and not has_extras:
            self._reuse_latents_across_cells(p)

    def _signature(self, p) -> tuple:
        """Everything the sampler's result depends on that the cells of a plot can vary."""
        overrides = tuple(sorted((k, repr(v)) for k, v in (p.override_settings or {}).items() if k != "sd_vae"))
        return (
            type(p).__name__, tuple(p.all_prompts or ()), tuple(p.all_negative_prompts or ()),
            tuple(p.all_seeds or ()), tuple(p.all_subseeds or ()) if p.subseed_strength else (), p.subseed_strength,
            p.steps, p.cfg_scale,
            p.sampler_name, getattr(p, "scheduler", None), p.width, p.height, p.batch_size, p.n_iter,
            getattr(p, "denoising_strength", None), bool(getattr(p, "enable_hr", False)),
            getattr(p, "sd_model_hash", None), tuple(self.option("forge_additional_modules", None) or ()),
            overrides, repr(getattr(p, "script_args", None)),
        )

    def _reuse_latents_across_cells(self, p) -> None:
        """Wrap `p.sample`: the same inputs give the latents of the previous cell (plain txt2img only).

        Only cells of one plot share latents: the X/Y/Z script's cells are shallow copies of one
        `p` and share its `override_settings` dict; a new request never does.
        """
        if getattr(p, "enable_hr", False) or not isinstance(p, processing.StableDiffusionProcessingTxt2Img):
            return
        if self._latents_plot is not p.override_settings:  # another plot or a plain request
            self._latents.clear()
            self._latents_plot = p.override_settings
        sample, base, latents = p.sample, self._signature(p), self._latents

        def reuse(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
            key = base + (tuple(seeds), tuple(subseeds) if subseed_strength else ())
            cached = latents.get(key)
            if cached is not None:
                latents.move_to_end(key)
                return cached.clone()
            out = sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts)
            if not getattr(out, "already_decoded", False) and not shared.state.interrupted:
                latents[key] = out.detach().clone()
                while len(latents) > LATENT_ENTRIES:
                    latents.popitem(last=False)
            return out

        p.sample = reuse

    def on_infotext_pasted(self, infotext: str, params: dict) -> None:
        """Give a pasted "VAE: x" back to the accordion instead of Forge's "VAE/TE" module override.

        Forge's parser pops "VAE" and offers it as a module (`forge_additional_modules`), which
        would rebuild the whole model; VAE Lab applies it for that generation instead.
        """
        from modules import infotext_utils

        lastline = infotext.strip().split("\n")[-1]
        vae = dict(infotext_utils.re_param.findall(lastline)).get("VAE")
        if not vae:
            return
        if vae.startswith('"') and vae.endswith('"'):
            vae = infotext_utils.unquote(vae)
        if params.get("VAE/TE") == [vae]:
            params.pop("VAE/TE")
        params["VAE"] = vae

    def unsupported(self) -> str | None:
        model = self.loaded_model()
        if model is not None and getattr(model, "sd_checkpoint_info", None) is not None and self.vae_module(model) is None:
            return UNSUPPORTED_MESSAGE
        return None
