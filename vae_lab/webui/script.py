"""The "VAE for this generation" accordion in txt2img and img2img (an always-on script)."""

from __future__ import annotations

import logging

import gradio as gr

from modules import scripts

from vae_lab.webui import generation, state, vaes
from vae_lab.webui.generation import AS_IN_SETTINGS
from vae_lab.webui.vaes import CHECKPOINT_VAE

log = logging.getLogger(__name__)

TITLE = "VAE Lab"


def vae_choices() -> list[str]:
    return [AS_IN_SETTINGS, CHECKPOINT_VAE] + vaes.vae_names()


def extra_choices() -> list[str]:
    return [CHECKPOINT_VAE] + vaes.vae_names()


def current_status() -> str:
    session = state.current()
    return session.host.unsupported() or session.status.text()


def paste_vae(params: dict):
    """Infotext -> dropdown: the `VAE` name when the WebUI lists it (by name, then by hash)."""
    name = params.get("VAE")
    if not name:
        return gr.update(value=AS_IN_SETTINGS)
    vae_dict = state.current().host.vae_list()
    for key in vae_dict:
        if key.lower() == str(name).lower():
            return gr.update(value=key)
    wanted = str(params.get("VAE hash") or "").lower()
    if wanted:
        from modules import hashes

        for key, path in vae_dict.items():
            cached = hashes.sha256_from_cache(path, f"vae/{key}")
            if cached and cached[:10].lower() == wanted:
                return gr.update(value=key)
    log.warning("VAE Lab: pasted VAE %s is not in the VAE list; keeping 'As in Settings'", name)
    return gr.update(value=AS_IN_SETTINGS)


class VaeLabScript(scripts.Script):
    """The "VAE for this generation" accordion; its hooks are `vae_lab.webui.generation`'s."""

    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        from modules.ui_components import FormRow, InputAccordion, ToolButton

        with InputAccordion(False, label="VAE for this generation", elem_id=self.elem_id("accordion")) as enabled:
            unsupported = state.current().host.unsupported()
            if unsupported:
                gr.HTML(f"<p>{unsupported}</p>")
            with FormRow():
                vae = gr.Dropdown(label="VAE", choices=vae_choices(), value=AS_IN_SETTINGS, elem_id=self.elem_id("vae"))
                also = gr.Dropdown(label="Also decode with (the sampler runs once)", choices=extra_choices(),
                                   value=[], multiselect=True, elem_id=self.elem_id("also"))
                refresh = ToolButton(value="\U0001f504", elem_id=self.elem_id("refresh"))
            info = gr.HTML(value=current_status, elem_id=self.elem_id("status"))

        def do_refresh():
            vaes.refresh_vae_list()
            return gr.update(choices=vae_choices()), gr.update(choices=extra_choices()), current_status()

        refresh.click(fn=do_refresh, inputs=[], outputs=[vae, also, info])
        enabled.change(fn=current_status, inputs=[], outputs=[info], queue=False)  # fresh when opened
        if not self.infotext_fields:  # the API calls ui() again in a throwaway Blocks: keep the real ones
            state.current().status_views.append(info)  # the tab's changes update it too
            # The label "VAE" (a string key) claims the infotext's VAE for the accordion, so the paste
            # offers no "VAE" override chip, whose sd_vae override the WebUI may never restore.
            self.infotext_fields = [(enabled, "VAE"), (vae, paste_vae)]
            self.paste_field_names = ["VAE"]
        return [enabled, vae, also]

    def before_process(self, p, *args):
        generation.before_process(p, *args)

    def process(self, p, *args):
        generation.process(p, *args)

    def post_sample(self, p, ps, *args):
        generation.post_sample(p, ps, *args)

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        generation.postprocess_batch_list(p, pp, *args, **kwargs)

    def postprocess(self, p, processed, *args):
        generation.postprocess(p, processed, *args)
