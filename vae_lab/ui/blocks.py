"""The tab's Gradio layout and event wiring: `build_tab(context)` returns a `gr.Blocks`
(A1111 renders it as a tab through `on_ui_tabs`; the standalone app launches it).

What the events do lives in `handlers.py`; the HTML in `render.py`; Gradio 3/4 differences
in `gradio_compat.py`.
"""

# No `from __future__ import annotations` here: Gradio reads the `gr.Progress` defaults of the
# event handlers at run time.
from vae_lab.errors import VaeLabError
from vae_lab.ui import gradio_compat as compat
from vae_lab.runtime import precision as prec
from vae_lab.ui.context import TabUi, UiContext
from vae_lab.ui.handlers import (ENCODER_FIRST, ENCODER_OWN, FAST_ATTENTION_LABEL, IMAGE_TYPES, NO_REFERENCE,
                                 SOURCE_IMAGE, TILINGS, TabLogic, offered_sources)
from vae_lab.ui.render import EMPTY_VIEW, metrics_html, pair_labels, toast

# the browser side: read the viewer's zoomed region (x,y,w,h as fractions) for the crop export
_JS_CROP = "(result, box) => [result, (window.vaeLab && window.vaeLab.cropBox('view')) || '']"


def _frame(headers, rows):
    """A Dataframe value with new headers (Gradio 3.41's `update` cannot change headers)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=headers)


class _SessionKey:
    """A key per browser session, held in a `gr.State` (Gradio deep-copies a State's value for
    each session). Stop is a quick event outside the queue, and Gradio 3.41 gives those no
    session hash, so Stop and the queued run it stops find each other by this key instead."""

    def __init__(self):
        import uuid

        self.value = uuid.uuid4().hex

    def __deepcopy__(self, memo):
        return _SessionKey()


def _error(err: Exception) -> str:
    return toast(str(err), "error")


def build_tab(context: UiContext | None = None, **blocks_kwargs):
    """The comparison tab as a `gr.Blocks` (A1111 renders it as a tab; the app launches it)."""
    import gradio as gr

    context = context or UiContext()
    logic = TabLogic(context)
    initial, refs, _ = logic.choices_for(SOURCE_IMAGE)
    quiet = compat.event_kwargs()  # no unnamed endpoints in an API page

    with gr.Blocks(analytics_enabled=False, **blocks_kwargs) as tab:
        result_state = gr.State(None)
        session = gr.State(_SessionKey())
        with gr.Row(elem_id="vae_lab_main", equal_height=False):
            with gr.Column(scale=1, min_width=300, elem_id="vae_lab_inputs"):
                source = gr.Radio(offered_sources(context), value=SOURCE_IMAGE, label="Input", elem_id="vae_lab_source")
                image = compat.upload_file(label="Image (PNG, JPEG, WebP…)", file_types=IMAGE_TYPES,
                                           elem_id="vae_lab_image")
                preview = gr.HTML("", elem_id="vae_lab_preview")
                latent_file = compat.upload_file(label="Latent file (.safetensors / .pt)",
                                                 file_types=[".safetensors", ".pt"],
                                                 visible=False, elem_id="vae_lab_latent_file")
                latent_note = gr.HTML("", visible=False, elem_id="vae_lab_latent_note")
                with gr.Row(elem_id="vae_lab_buttons"):
                    run = gr.Button("Compare", variant="primary", scale=3, min_width=100, elem_id="vae_lab_run")
                    stop = gr.Button("Stop", scale=1, min_width=60, elem_id="vae_lab_stop")
                status = gr.HTML("", elem_id="vae_lab_status")
                vaes = gr.CheckboxGroup(initial, value=[], label="VAEs", elem_id="vae_lab_vaes")
                refresh = gr.Button("Refresh list", size="sm", elem_id="vae_lab_refresh")
                encoder = gr.Radio([ENCODER_FIRST, ENCODER_OWN], value=ENCODER_FIRST, label="Round-trip encoder",
                                   elem_id="vae_lab_encoder")
                reference = gr.Dropdown(refs, value=NO_REFERENCE, label="Reference VAE (decoded in fp32)",
                                        visible=False, elem_id="vae_lab_reference")
                with gr.Row():
                    # The setting's value at every page load (not ui-config.json's): on Gradio 3 a
                    # callable value; Gradio 4 would list that load event in the API, so there the
                    # value is refreshed by an unnamed load event below.
                    precision = gr.Dropdown(list(prec.CHOICES),
                                            value=context.default_precision if compat.gradio_major() < 4
                                            else context.default_precision(),
                                            label="Precision (auto: fp16 on GPU)", min_width=120,
                                            elem_id="vae_lab_precision")
                    tiling = gr.Dropdown(TILINGS, value="auto", label="Tiling", min_width=100, elem_id="vae_lab_tiling")
                fast_attention = gr.Checkbox(False, label=FAST_ATTENTION_LABEL, elem_id="vae_lab_fast_attention")
                extra_column = gr.Column(elem_id="vae_lab_extra")
            with gr.Column(scale=3, elem_id="vae_lab_outputs"):
                view = gr.HTML(EMPTY_VIEW, elem_id="vae_lab_view")
                metrics = gr.HTML("", elem_id="vae_lab_metrics")
                with gr.Row(elem_id="vae_lab_pair_controls", visible=False) as pair_row:
                    pair_a = gr.Dropdown([], label="A (left of the divider)", elem_id="vae_lab_pair_a")
                    pair_b = gr.Dropdown([], label="B (right)", elem_id="vae_lab_pair_b")
                    gain = gr.Slider(1, 32, value=8, step=1, label="Difference gain", elem_id="vae_lab_gain")
                pair_view = gr.HTML("", elem_id="vae_lab_pair")
                with gr.Row(elem_id="vae_lab_export_row", visible=False) as export_row:
                    crop_btn = gr.Button("Grid of the zoomed region (1:1 PNG)", size="sm", elem_id="vae_lab_crop")
                    crop_box = gr.Textbox(visible=False)
                files = compat.file_output(label="Downloads: everything (zip), grid, metrics (CSV, JSON), each decode (PNG)",
                                           visible=False, elem_id="vae_lab_files")
        with gr.Accordion("Get VAEs", open=False, elem_id="vae_lab_get"):
            headers, rows = logic.catalog_rows()
            catalog_df = gr.Dataframe(value=rows or None, headers=headers, interactive=False, wrap=True,
                                      elem_id="vae_lab_catalog")
            with gr.Row(equal_height=True):
                pick = gr.Dropdown(logic.catalog_choices(), label="From the catalog", scale=2,
                                   elem_id="vae_lab_catalog_pick")
                url = gr.Textbox(label="…or any http(s) URL (Hugging Face, Civitai)", placeholder="https://",
                                 scale=3, elem_id="vae_lab_url")
                get = gr.Button("Download into the VAE folder", variant="primary", scale=1, min_width=120,
                                elem_id="vae_lab_download")
                get_stop = gr.Button("Cancel", scale=0, min_width=80, elem_id="vae_lab_download_stop")
            get_status = gr.Markdown("", elem_id="vae_lab_download_status")

        ui = TabUi(tab, vaes, run, status, dict(source=source, image=image, latent_file=latent_file,
                                                 encoder=encoder, reference=reference, precision=precision,
                                                 tiling=tiling, fast_attention=fast_attention, view=view, metrics=metrics, files=files,
                                                 preview=preview, pair_view=pair_view))
        if context.extra is not None:
            with extra_column:
                context.extra(ui)

        source_outputs = [image, latent_file, latent_note, vaes, encoder, reference]
        # quick events skip the queue, so they answer while a long comparison runs
        source.change(logic.on_source, [source, latent_file, vaes], source_outputs, queue=False, **quiet)
        latent_file.change(logic.on_source, [source, latent_file, vaes], source_outputs, queue=False, **quiet)
        image.change(logic.on_image, [image], [preview, status], queue=False, **quiet)
        refresh.click(logic.refresh, [source, latent_file, vaes], [vaes, reference], queue=False, **quiet)

        # The long step outputs only the view, so Gradio draws one progress bar (over the view)
        # instead of one on every output; the quick step after it fills the table, downloads,
        # status and the pair view from what the long step left in `run_state`. Before it, the
        # previous run's table, status and pair view are cleared, so nothing stale stays.
        run_state = gr.State(None)

        def clear():
            hidden = compat.update(value=None, visible=False)
            return "", "", "", hidden

        def do_run(key, src, img, lf, sel, enc, prec, til, ref, fast, progress=gr.Progress()):
            try:
                html_view, table, fls, msg, result = logic.run(
                    src, img, lf, sel, enc, prec, til, ref, session=key.value, fast_attention=bool(fast),
                    progress=lambda frac, text="": progress(frac, desc=text))
            except VaeLabError as err:
                return compat.update(), _error(err)
            return html_view, (table, fls, msg, result)

        def show_run(out, g):
            """Show a run's outcome once (`run_state` is emptied)."""
            keep = compat.update()
            if out is None:
                return keep, keep, keep, keep, keep, keep, keep, keep, keep, None
            if isinstance(out, str):  # a one-line error
                return keep, keep, out, keep, keep, keep, keep, keep, keep, None
            (h, r), fls, msg, result = out
            names = list(pair_labels(result))
            a = names[0] if names else None
            b = names[1] if len(names) > 1 else a
            try:
                pair_html = logic.pair(result, a, b, g) if a is not None else ""
            except VaeLabError:
                pair_html = ""
            shown = compat.update(visible=True)
            return (metrics_html(h, r), compat.update(value=fls, visible=True), msg, result,
                    compat.update(choices=names, value=a), compat.update(choices=names, value=b), pair_html,
                    shown, shown, None)

        cleared = run.click(clear, None, [status, metrics, pair_view, files], queue=False, **quiet)
        run_event = cleared.then(do_run, [session, source, image, latent_file, vaes, encoder, precision, tiling,
                                          reference, fast_attention],
                                 [view, run_state], **quiet)
        run_event.then(show_run, [run_state, gain],
                       [metrics, files, status, result_state, pair_a, pair_b, pair_view, pair_row, export_row, run_state],
                       queue=False, **quiet)

        def do_stop(key):
            # no `cancels=`: killing the job would throw away what finished and leave the
            # decode running in its thread; the runner stops at the next check instead
            logic.cancels.cancel(key.value)
            return toast("Stopping: finishing the current step…", "info")

        stop.click(do_stop, [session], [status], queue=False, **quiet)

        def do_pair(result, a, b, g):
            if result is None:
                return compat.update(), compat.update()
            try:
                return logic.pair(result, a, b, g), compat.update()
            except VaeLabError as err:
                return compat.update(), _error(err)

        for event in (pair_a.select, pair_b.select, gain.release):
            event(do_pair, [result_state, pair_a, pair_b, gain], [pair_view, status], queue=False, **quiet)

        def do_crop(result, box):
            try:
                return compat.update(value=logic.crop(result, box), visible=True), compat.update()
            except VaeLabError as err:
                return compat.update(), _error(err)

        crop_btn.click(do_crop, [result_state, crop_box], [files, status], queue=False,
                       **compat.js_kwargs(_JS_CROP), **quiet)

        def do_download(key, p, u, progress=gr.Progress()):
            cancel = logic.cancels.fresh("download:" + key.value)
            try:
                return logic.download(p, u, progress=lambda frac, text="": progress(frac, desc=text), cancel=cancel)
            except VaeLabError as err:
                return f"⚠️ {err}"

        def catalog_now():
            h, r = logic.catalog_rows()
            return _frame(h, r)

        # the long step outputs only the status line, so the catalog table stays in view
        get_event = get.click(do_download, [session, pick, url], [get_status], **quiet)
        get_event.then(catalog_now, None, [catalog_df], queue=False, **quiet)
        get_event.then(logic.refresh, [source, latent_file, vaes], [vaes, reference], queue=False, **quiet)
        host_lists = context.vae_list_outputs() if context.vae_list_outputs else []
        if host_lists:
            def update_host_lists():
                updates = [compat.update(**make()) for _, make in host_lists]
                return updates[0] if len(updates) == 1 else updates

            get_event.then(update_host_lists, None, [c for c, _ in host_lists], queue=False, **quiet)

        def do_stop_download(key):
            logic.cancels.cancel("download:" + key.value)
            return ("Download cancelled: nothing unverified was put in the VAE folder; any part already "
                    "received stays hidden there, so the same download resumes where it stopped.")

        get_stop.click(do_stop_download, [session], [get_status], cancels=[get_event], queue=False, **quiet)
        if compat.gradio_major() >= 4:
            tab.load(context.default_precision, None, precision, **compat.event_kwargs())
    tab.vae_lab = ui
    return tab
