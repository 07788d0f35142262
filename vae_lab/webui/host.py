"""What the adapter needs from a WebUI, in one small interface: the seam for a second host.

A1111 (`a1111.A1111Host`) and Forge keep the model's VAE, its bookkeeping and the infotext
fields in different places; everything else in `vae_lab.webui` (swaps, generation hooks, the
per-checkpoint preference, Settings, the tab) talks to the WebUI only through a `Host`.
This module imports nothing of the WebUI, so it can be read (and faked) without one.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod


class Host(ABC):
    """One WebUI flavour: where the loaded model's VAE is and how to swap and record it."""

    name: str = "WebUI"

    # Forge builds a fresh model object in `forge_model_reload()`, which runs after the scripts'
    # `before_process` (and again before each batch), even for the same checkpoint: the model
    # a generation uses is known only from `process` on, and every build has the host's own VAE.
    rebuilds_model: bool = False

    # --- the model --------------------------------------------------------------------------

    @abstractmethod
    def loaded_model(self):
        """The loaded model, or None; never loads one just to ask."""

    @abstractmethod
    def current_model(self):
        """The model a generation uses (may load it, as the WebUI's own `shared.sd_model`)."""

    @abstractmethod
    def vae_module(self, model):
        """The `torch.nn.Module` whose weights a swap replaces (its decoder decodes the latents)."""

    @abstractmethod
    def model_flags(self, model) -> dict:
        """`compatibility.model_family` keywords: is_sdxl, is_sd3, is_flux, latent_channels."""

    def checkpoint_key(self, model) -> str | None:
        """The checkpoint's name as preferences store it (e.g. `sd15.safetensors`)."""
        info = getattr(model, "sd_checkpoint_info", None)
        return getattr(info, "name", None) if info is not None else None

    def checkpoint_file(self, model) -> str | None:
        info = getattr(model, "sd_checkpoint_info", None)
        return getattr(info, "filename", None)

    # --- the VAE in use and the WebUI's own bookkeeping -----------------------------------

    @abstractmethod
    def loaded_vae_file(self, model) -> str | None:
        """The VAE file in use (None: the checkpoint's own), as the WebUI believes."""

    @abstractmethod
    def base_vae(self, model) -> dict | None:
        """The checkpoint's own VAE weights kept aside while another VAE is in, or None."""

    @abstractmethod
    def keep_base_vae(self, model) -> None:
        """Keep the checkpoint's own VAE weights before a file's go in (as the WebUI would)."""

    @abstractmethod
    def mark_loaded(self, model, vae_file: str | None) -> None:
        """Record that `vae_file` (None: the checkpoint's own) is now in `model`, the host's way,
        so the host's own later VAE reloads (a Settings change, a checkpoint switch) behave."""

    @abstractmethod
    def webui_choice(self, model) -> tuple[str | None, str]:
        """(file, who chose it) by the host's own rules, without VAE Lab (e.g. Settings > SD VAE)."""

    @abstractmethod
    def preference_blocked_by(self) -> str | None:
        """What outranks a VAE Lab per-checkpoint preference now (a command-line VAE, ...), or None."""

    def fixed_vae(self) -> str | None:
        """A VAE the command line forces on every generation (A1111's --vae-path), or None."""
        return None

    def writing_weights(self):
        """A context every weight copy into `vae_module` runs in (Forge: `torch.inference_mode()`,
        as its weights are inference tensors that may be written only there)."""
        return contextlib.nullcontext()

    # --- the VAE list -------------------------------------------------------------------------

    @abstractmethod
    def vae_list(self) -> dict[str, str]:
        """The host's VAE list: name -> absolute path (the live dict: additions are seen by it)."""

    @abstractmethod
    def refresh_vae_list(self) -> None:
        """The host's own rescan of its VAE folders."""

    def hook_vae_list(self, also) -> None:
        """Have every refresh of the host's VAE list also run `also` (VAE Lab's download folder)."""
        return None  # a host whose list VAE Lab cannot extend: refreshes show its own folders only

    def unhook_vae_list(self) -> None:
        """Undo `hook_vae_list` (Reload UI re-imports the script, which hooks again)."""
        return None

    @abstractmethod
    def vae_folder(self) -> str:
        """The host's VAE folder (models/VAE)."""

    def extra_vae_folders(self) -> list[str]:
        return []

    # --- generations --------------------------------------------------------------------------

    @abstractmethod
    def decode(self, model, samples):
        """Decode a batch of latents with the VAE now in `model`, as the host's main decode does."""

    @abstractmethod
    def record_main_vae(self, p, name: str | None, short_hash: str | None) -> None:
        """Make the infotext name the VAE that decoded the main images (VAE / VAE hash)."""

    def main_vae_name(self, p) -> str | None:
        """The VAE name the infotext records for the main images."""
        return getattr(p, "sd_vae_name", None)

    def main_vae_hash(self, p) -> str | None:
        return getattr(p, "sd_vae_hash", None)

    def requested_vae(self, p) -> str | None:
        """A VAE this generation asks for that the host itself will not apply (Forge ignores
        `override_settings['sd_vae']`: API, pasted chip, X/Y/Z VAE axis), or None."""
        return None

    def before_sampling(self, p, has_extras: bool) -> None:
        """Last word before the sampler runs, after the generation's VAE went in (Forge: X/Y/Z
        cells that differ only by that VAE reuse the previous cell's latents)."""
        return None

    def on_infotext_pasted(self, infotext: str, params: dict) -> None:
        """Adjust the fields parsed from a pasted infotext (Forge: "VAE" back to the accordion)."""
        return None

    def option(self, key: str, default):
        """A Settings value (the host's `opts`), or `default` before the option exists."""
        return default

    def unsupported(self) -> str | None:
        """Why swaps are off in this host (one line for the user), or None when they work."""
        return None
