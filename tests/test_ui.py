"""The tab under Gradio 3.41.2 without a browser: the Blocks, its wiring, listing, rendering,
the handlers run for real on the TAEF2 pair and tiny kl VAEs, and `serve`'s bad input."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from vae_folder import BROKEN, KL_NAMES, make_vae_folder
from vae_lab.ui import gradio_compat as compat
from vae_lab.ui import tab as ui
from vae_lab.ui.vae_ids import vae_id
from vae_lab.download.policy import HostPolicy

LOCAL_DOWNLOADS = HostPolicy(allow_local=True)
from vae_lab.errors import VaeLabError


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, taef2_pair):
    return make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)


@pytest.fixture(scope="module")
def context(vae_dir):
    return ui.UiContext(vae_dirs=[str(vae_dir)])


def _blocks_config(blocks):
    return blocks.get_config_file()


def _by_elem_id(config):
    return {c["props"].get("elem_id"): c for c in config["components"] if c["props"].get("elem_id")}


# --- Gradio 3/4 compatibility --------------------------------------------------------------


def test_compat_speaks_the_installed_gradio():
    """3.41.2 here (A1111's pin); the same test passes under Gradio 4.40 (Forge's pin)."""
    import gradio as gr

    major = compat.gradio_major()
    assert major == int(gr.__version__.split(".")[0])
    assert compat.js_kwargs("() => 1") == ({"_js": "() => 1"} if major < 4 else {"js": "() => 1"})
    assert compat.js_kwargs(None) == {}
    with gr.Blocks():
        img = compat.upload_image(type="numpy")
    assert (img.source == "upload") if major < 4 else (img.sources == ["upload"])


def test_compat_switches_keywords_for_gradio_4(monkeypatch):
    monkeypatch.setattr(compat, "gradio_major", lambda: 4)
    assert compat.js_kwargs("() => 1") == {"js": "() => 1"}

    class Blocks:
        def queue(self, **kw):
            self.kw = kw
            return self

    assert compat.enable_queue(Blocks()).kw == {"default_concurrency_limit": 1}


# --- listing --------------------------------------------------------------------------------


def test_scan_lists_each_vae_once_and_a_tae_pair_as_its_decoder(vae_dir):
    names = [e.name for e in ui.scan_vae_dirs([str(vae_dir)])]
    assert sorted(names) == sorted(["taef2_decoder.pth", *KL_NAMES, BROKEN])
    (vae_dir / ".partial.vaelab-part").write_bytes(b"x")
    (vae_dir / "notes.txt").write_text("x")
    assert sorted(e.name for e in ui.scan_vae_dirs([str(vae_dir), str(vae_dir)])) == sorted(names)


def test_incompatible_vaes_are_marked_with_the_reason():
    kl = ui.VaeEntry("/v/kl.safetensors", "kl.safetensors", family="sd1", kind="kl", latent_channels=4)
    xl = ui.VaeEntry("/v/xl.safetensors", "xl.safetensors", family="sdxl", kind="kl", latent_channels=4)
    tae = ui.VaeEntry("/v/taef2_decoder.pth", "taef2_decoder.pth", family="flux2", kind="tae", latent_channels=32)
    unknown = ui.VaeEntry("/v/x.pt", "x.pt")
    choices = dict((p, label) for label, p in ui.vae_choices([kl, xl, tae, unknown], channels=32, family=None))
    assert choices[vae_id("/v/taef2_decoder.pth")].startswith("taef2_decoder.pth")
    assert choices[vae_id("/v/kl.safetensors")].startswith("✕") and "4-channel VAE, latents have 32" in choices[vae_id("/v/kl.safetensors")]
    assert not choices[vae_id("/v/x.pt")].startswith("✕")  # unknown: offered, the run decides
    by_family = dict((p, label) for label, p in ui.vae_choices([kl, xl], channels=4, family="sd1"))
    assert not by_family[vae_id("/v/kl.safetensors")].startswith("✕")
    assert "SDXL VAE, latents are SD1/SD2" in by_family[vae_id("/v/xl.safetensors")]
    # no latents chosen (round trip): nothing is marked
    assert all(not label.startswith("✕") for label, _ in ui.vae_choices([kl, xl, tae]))


def test_last_latents_mode_marks_vaes_for_those_latents(vae_dir):
    import torch

    from vae_lab.runtime.last_latents import LastLatents

    last = LastLatents(torch.zeros(1, 32, 8, 8), "flux2")
    ctx = ui.UiContext(vae_dirs=[str(vae_dir)], last_latents=lambda: last,
                       list_vaes=lambda: [ui.VaeEntry(str(vae_dir / KL_NAMES[0]), KL_NAMES[0], "sd1", "kl", 4),
                                          ui.VaeEntry(str(vae_dir / "taef2_decoder.pth"), "taef2_decoder.pth",
                                                      "flux2", "tae", 32)])
    logic = ui.TabLogic(ctx)
    updates = logic.on_source(ui.SOURCE_LAST, None, [vae_id(vae_dir / KL_NAMES[0])])
    image_u, file_u, note_u, vaes_u, encoder_u, ref_u = updates
    assert image_u["visible"] is False and encoder_u["visible"] is False and ref_u["visible"] is True
    assert "1×32×8×8" in note_u["value"] and "flux2" in note_u["value"]
    labels = dict((p, label) for label, p in vaes_u["choices"])
    assert labels[vae_id(vae_dir / KL_NAMES[0])].startswith("✕")
    assert vaes_u["value"] == []  # the incompatible selection is dropped
    assert ref_u["choices"] == [ui.NO_REFERENCE, "taef2_decoder.pth · FLUX.2 · 32 ch"]
    assert logic.reference_path("taef2_decoder.pth · FLUX.2 · 32 ch") == str(vae_dir / "taef2_decoder.pth")
    assert logic.reference_path(ui.NO_REFERENCE) is None
    with pytest.raises(VaeLabError, match="no longer in the VAE folder"):
        logic.reference_path("gone.safetensors · sd1")

    empty = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)], last_latents=lambda: None))
    note = empty.on_source(ui.SOURCE_LAST, None, [])[2]["value"]
    assert "no generation's latents yet" in note


# --- the Blocks -----------------------------------------------------------------------------


def test_build_tab_has_the_documented_components(context):
    tab = ui.build_tab(context)
    ids = _by_elem_id(_blocks_config(tab))
    for elem in ("vae_lab_source", "vae_lab_image", "vae_lab_latent_file", "vae_lab_vaes", "vae_lab_encoder",
                 "vae_lab_reference", "vae_lab_precision", "vae_lab_tiling", "vae_lab_run", "vae_lab_stop",
                 "vae_lab_view", "vae_lab_metrics", "vae_lab_pair", "vae_lab_gain", "vae_lab_files",
                 "vae_lab_catalog", "vae_lab_url", "vae_lab_download"):
        assert elem in ids, elem
    vaes = ids["vae_lab_vaes"]["props"]["choices"]
    assert sorted(label.split(" · ")[0] for label, _ in vaes) == sorted(["taef2_decoder.pth", *KL_NAMES, BROKEN])
    props = ids["vae_lab_image"]["props"]
    assert props.get("source") == "upload" or props.get("sources") == ["upload"]
    assert ids["vae_lab_precision"]["props"]["choices"][0] in ("auto", ["auto", "auto"], ("auto", "auto"))


def test_extra_hook_gets_the_components_and_adds_controls(context):
    import gradio as gr

    seen = {}

    def extra(tab_ui):
        seen["ui"] = tab_ui
        gr.Checkbox(label="Prefer for this checkpoint", elem_id="vae_lab_test_extra")

    ctx = ui.UiContext(vae_dirs=context.vae_dirs, extra=extra)
    tab = ui.build_tab(ctx)
    assert seen["ui"].vaes is tab.vae_lab.vaes and "view" in seen["ui"].components
    assert "vae_lab_test_extra" in _by_elem_id(_blocks_config(tab))


def test_app_injects_css_and_the_script_on_load(context):
    from vae_lab.ui.app import build_app, page_assets

    css, js = page_assets()
    demo = build_app(context)
    cfg = _blocks_config(demo)
    assert ".vae-lab-frame" in cfg["css"]
    loads = [d for d in cfg["dependencies"] if d.get("js") and "vaeLab" in d["js"]]
    trigger = loads[0].get("trigger") or loads[0]["targets"][0][1]  # Gradio 3: "trigger"; 4: targets
    assert len(loads) == 1 and trigger == "load" and js.strip() in loads[0]["js"]
    assert demo.enable_queue or demo._queue is not None  # progress bars need the queue


# --- serve: bad input is one line and exit 2 --------------------------------------------------


def test_serve_refuses_a_missing_folder_and_a_busy_port(tmp_path, capsys):
    from vae_lab.cli.main import main

    assert main(["serve", "--vae-dir", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --vae-dir") and "not a folder" in err and "\n" not in err

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--vae-dir", str(tmp_path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"port {port} on 127.0.0.1 is already in use" in err and "\n" not in err

    # 192.0.2.1 (TEST-NET-1) is no address of this machine: binding fails without any lookup
    assert main(["serve", "--vae-dir", str(tmp_path), "--host", "192.0.2.1"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: cannot listen on 192.0.2.1") and captured.err.count("\n") == 1
    assert "warning" not in captured.out  # the error alone, not a warning about a host it never used


# --- the handlers, run for real (TAEF2 pair + tiny random kl VAEs + a broken file) ------------


@pytest.fixture(scope="module")
def small_photo(astronaut):
    from PIL import Image

    return np.asarray(Image.fromarray(astronaut).resize((64, 64), Image.LANCZOS))


@pytest.fixture(scope="module")
def roundtrip(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    vaes = [vae_id(vae_dir / "taef2_decoder.pth"), vae_id(vae_dir / KL_NAMES[0]), vae_id(vae_dir / BROKEN)]
    steps = []
    out = logic.run(ui.SOURCE_IMAGE, small_photo, None, vaes, ui.ENCODER_OWN, "auto", "auto", ui.NO_REFERENCE,
                    session="t", progress=lambda frac, text: steps.append((frac, text)))
    return logic, out, steps


def _data_uri_images(view_html):
    import base64
    import io
    import re

    from PIL import Image

    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', view_html)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB")) for u in uris]


def test_run_shows_reference_first_then_each_vae_and_the_failure(roundtrip, small_photo):
    _, (view, (headers, rows), files, status, result), steps = roundtrip
    images = _data_uri_images(view)
    assert len(images) == 3  # original + TAEF2 + tiny kl; the broken file has an error cell instead
    assert np.array_equal(images[0], small_photo)  # lossless: exactly the pixels measured
    assert np.array_equal(images[1], result.outcomes[0].image)
    assert view.index("Reference") < view.index("taef2_decoder.pth") < view.index(KL_NAMES[0])
    assert 'class="vae-lab-cell vae-lab-failed"' in view and BROKEN in view
    assert "2 of 3 VAEs decoded" in status
    assert steps and steps[-1][0] == 1.0 and any("taef2" in text for _, text in steps)
    taef2 = result.outcomes[0]
    assert f"PSNR {taef2.psnr:.2f} dB" in view and "fp32" in view and "peak" in view


def test_metrics_table_matches_skimage_and_says_why_lpips_is_missing(roundtrip, small_photo):
    from skimage.metrics import peak_signal_noise_ratio

    _, (_, (headers, rows), _, _, result), _ = roundtrip
    assert headers[0] == "VAE" and "PSNR dB" in headers and "SSIM" in headers
    lpips_header = next(h for h in headers if h.startswith("LPIPS"))
    if result.lpips_note:
        assert lpips_header != "LPIPS" and "weights" in lpips_header
    row = next(r for r in rows if r[0] == "taef2_decoder.pth")
    expected = peak_signal_noise_ratio(small_photo, result.outcomes[0].image, data_range=255)
    assert float(row[headers.index("PSNR dB")]) == pytest.approx(expected, abs=0.01)
    assert expected > 20  # a real round trip of a photo, not noise
    broken = next(r for r in rows if r[0] == BROKEN)
    assert broken[-1]  # its error is in the note column


def test_downloads_are_the_table_and_the_grid(roundtrip):
    import csv
    import io

    from PIL import Image

    _, (_, _, files, _, result), _ = roundtrip
    by_name = {p.rsplit("/", 1)[-1]: p for p in files}
    assert set(by_name) == {"vae_lab_metrics.csv", "vae_lab_metrics.json", "vae_lab_grid.png"}
    rows = list(csv.DictReader(io.StringIO(open(by_name["vae_lab_metrics.csv"]).read())))
    assert [r["vae"] for r in rows] == ["taef2_decoder.pth", KL_NAMES[0], BROKEN]
    doc = json.loads(open(by_name["vae_lab_metrics.json"]).read())
    assert doc["results"][0]["psnr"] == pytest.approx(result.outcomes[0].psnr)
    grid = Image.open(by_name["vae_lab_grid.png"])
    assert grid.width >= 3 * 64


def test_pair_view_is_a_slider_and_the_amplified_difference(roundtrip, small_photo):
    logic, (_, _, _, _, result), _ = roundtrip
    labels = list(ui.pair_labels(result))
    assert labels == ["original image", "taef2_decoder.pth", KL_NAMES[0]]
    html_pair = logic.pair(result, labels[0], labels[1], 8)
    a, b, diff = _data_uri_images(html_pair)
    assert 'class="vae-lab-ba-range"' in html_pair
    assert np.array_equal(a, result.outcomes[0].image) and np.array_equal(b, small_photo)
    expected = np.clip(np.abs(small_photo.astype(int) - result.outcomes[0].image.astype(int)) * 8, 0, 255)
    assert np.abs(diff.astype(int) - expected).max() <= 1
    with pytest.raises(VaeLabError):
        logic.pair(result, labels[0], BROKEN, 8)  # failed VAEs have no image to compare
    with pytest.raises(VaeLabError, match="run a comparison first"):
        logic.pair(None, "a", "b", 4)


def test_latent_file_mode_refuses_other_families_and_uses_a_reference(context, vae_dir, small_photo, tmp_path):
    from vae_lab.runtime.engine import load_vae
    from vae_lab.files.imaging import array_to_tensor
    import torch

    tae = load_vae(str(vae_dir / "taef2_decoder.pth"))
    lat = tae.encode(array_to_tensor(small_photo)).latents
    f = str(tmp_path / "x.pt")
    torch.save({"latent_tensor": lat}, f)  # a .pt latent file (engine's latents.load_latents reads it)
    logic = ui.TabLogic(context)
    _, _, note, vaes_u, _, ref_u = logic.on_source(ui.SOURCE_FILE, f, [])
    assert "x.pt: 1×32×8×8" in note["value"]
    labels = {p: label for label, p in vaes_u["choices"]}
    assert labels[vae_id(vae_dir / KL_NAMES[0])].startswith("✕")
    ref_label = next(r for r in ref_u["choices"] if r.startswith("taef2_decoder.pth"))
    view, (headers, rows), _, status, result = logic.run(
        ui.SOURCE_FILE, None, f, [vae_id(vae_dir / "taef2_decoder.pth"), vae_id(vae_dir / KL_NAMES[0])],
        ui.ENCODER_FIRST, "fp32", "off", ref_label, session="lat")
    assert result.mode == "latents" and "Reference: taef2_decoder.pth (fp32)" in status
    assert "PSNR inf (identical)" in view  # same VAE, same precision as the reference
    kl = result.outcomes[1]
    assert kl.image is None and "4-channel" in kl.error and kl.error in view


def test_stop_cancels_between_steps(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    vaes = [vae_id(vae_dir / KL_NAMES[0]), vae_id(vae_dir / KL_NAMES[1])]
    view, _, _, status, result = logic.run(ui.SOURCE_IMAGE, small_photo, None, vaes, ui.ENCODER_OWN, "auto", "auto",
                                           None, session="s", progress=lambda f, t: logic.cancels.cancel("s"))
    # Stop pressed while the first VAE runs: it finishes, the second never starts
    assert result.cancelled and "cancelled" in status
    assert result.outcomes[0].image is not None and result.outcomes[1].error == "cancelled"
    assert "1 of 2 VAEs decoded" in status


def test_bad_requests_are_one_line_errors(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    with pytest.raises(VaeLabError, match="choose at least one VAE"):
        logic.run(ui.SOURCE_IMAGE, small_photo, None, [], ui.ENCODER_FIRST, "auto", "auto", None)
    with pytest.raises(VaeLabError, match="upload an image first"):
        logic.run(ui.SOURCE_IMAGE, None, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST, "auto", "auto", None)
    with pytest.raises(VaeLabError, match="choose a latent file"):
        logic.run(ui.SOURCE_FILE, None, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST, "auto", "auto", None)


# --- Get VAEs: a real download from a 127.0.0.1 server into the VAE folder -------------------


def test_get_vaes_downloads_into_the_folder_and_refreshes(tmp_path):
    from safetensors.torch import save as save_bytes

    from factories import TINY_KL, random_kl_state_dict
    from httpserver import FileServer

    folder = tmp_path / "VAE"
    folder.mkdir()
    changed = []
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)], on_vaes_changed=lambda: changed.append(1),
                                     download_policy=LOCAL_DOWNLOADS))  # the test server is on 127.0.0.1
    headers, rows = logic.catalog_rows()
    assert headers[0] == "Name" and rows and all(r[5] == "" for r in rows)  # nothing present yet
    assert logic.catalog_choices() and all(isinstance(c, str) for c in logic.catalog_choices())

    data = save_bytes(random_kl_state_dict(TINY_KL, seed=7))
    with FileServer() as srv:
        srv.add_file("/vae/my-vae.safetensors", data)
        srv.add_file("/page.safetensors", b"<!doctype html><html>login</html>", content_type="text/html")
        seen = []
        msg = logic.download(None, srv.url("/vae/my-vae.safetensors"), progress=lambda f, t: seen.append(f))
        assert msg.startswith("Saved my-vae.safetensors") and str(folder) in msg
        assert (folder / "my-vae.safetensors").read_bytes() == data
        assert changed == [1] and seen and max(seen) == pytest.approx(1.0)
        choices, _, _ = logic.choices_for(ui.SOURCE_IMAGE)
        assert vae_id(folder / "my-vae.safetensors") in [p for _, p in choices]
        again = logic.download(None, srv.url("/vae/my-vae.safetensors"))
        assert "already in" in again

        with pytest.raises(VaeLabError) as err:
            logic.download(None, srv.url("/page.safetensors"))
        assert "\n" not in str(err.value)
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["my-vae.safetensors"]
    with pytest.raises(VaeLabError, match="choose a catalog entry or paste a URL"):
        logic.download("", "  ")


def test_runs_wait_for_the_hosts_lock_and_keep_few_download_folders(context, vae_dir, small_photo):
    import threading

    lock = threading.Lock()
    held = []

    class Spy:
        def __enter__(self):
            lock.acquire()
            held.append(True)

        def __exit__(self, *exc):
            lock.release()

    logic = ui.TabLogic(ui.UiContext(vae_dirs=context.vae_dirs, lock=Spy()))
    logic.KEEP_RUNS = 2
    seen = []
    vaes = [vae_id(vae_dir / KL_NAMES[0])]
    for _ in range(3):
        *_, result = logic.run(ui.SOURCE_IMAGE, small_photo, None, vaes, ui.ENCODER_FIRST, "auto", "auto", None,
                               progress=lambda f, t: seen.append(t))
    assert held == [True] * 3 and not lock.locked()
    assert seen[0] == "waiting for the running generation to finish"
    import os

    assert len(os.listdir(logic._out_root)) == 2


def test_refresh_lists_new_files_and_forgets_removed_ones(tmp_path):
    from safetensors.torch import save_file

    from factories import TINY_KL, random_kl_state_dict

    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(tmp_path)]))
    vaes_u, ref_u = logic.refresh(ui.SOURCE_IMAGE, None, [])
    assert vaes_u["choices"] == []
    save_file(random_kl_state_dict(TINY_KL, seed=5), str(tmp_path / "new.safetensors"))
    vaes_u, _ = logic.refresh(ui.SOURCE_IMAGE, None, [])
    assert [p for _, p in vaes_u["choices"]] == [vae_id(tmp_path / "new.safetensors")]
    (tmp_path / "new.safetensors").unlink()
    vaes_u, _ = logic.refresh(ui.SOURCE_IMAGE, None, [vae_id(tmp_path / "new.safetensors")])
    assert vaes_u["choices"] == [] and vaes_u["value"] == []


def test_a_bad_latent_file_is_a_note_not_a_crash(context, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    logic = ui.TabLogic(context)
    note = logic.on_source(ui.SOURCE_FILE, str(bad), [])[2]["value"]
    assert "bad.safetensors" in note and "\n" not in note
    with pytest.raises(VaeLabError):
        logic.run(ui.SOURCE_FILE, None, str(bad), [vae_id(context.entries()[0])], ui.ENCODER_FIRST, "auto", "auto", None)


def test_safetensors_latent_file_written_by_encode_is_accepted(context, tmp_path):
    import torch

    from vae_lab.files.latents import save_latents

    f = save_latents(tmp_path / "x.safetensors", torch.zeros(1, 32, 8, 8), family="flux2")
    note = ui.TabLogic(context).on_source(ui.SOURCE_FILE, f, [])[2]["value"]
    assert note == "x.safetensors: 1×32×8×8 (flux2)"


def test_get_vaes_sends_the_hosts_tokens_only_where_they_belong(tmp_path):
    """The tab's downloads use the tokens the host passes (the WebUI's Settings), per host."""
    from safetensors.torch import save as save_bytes

    from factories import TINY_KL, random_kl_state_dict
    from httpserver import FileServer
    from vae_lab.download.tokens import TokenPolicy

    folder = tmp_path / "VAE"
    folder.mkdir()
    data = save_bytes(random_kl_state_dict(TINY_KL, seed=8))
    with FileServer() as srv:
        srv.add_file("/gated/vae.safetensors", data)
        # 127.0.0.1 plays the Hugging Face host here; "localhost" is any other host.
        policy = TokenPolicy(tokens={"hf": "hf_from_settings"}, hosts={"hf": ("127.0.0.1",)}, require_https=False)
        logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)], tokens=lambda: policy, download_policy=LOCAL_DOWNLOADS))
        logic.download(None, srv.url("/gated/vae.safetensors"))
        sent = [r.authorization for r in srv.requests_for("/gated/vae.safetensors")]
        assert sent and all(a == "Bearer hf_from_settings" for a in sent)

        other = srv.url("/gated/vae.safetensors").replace("127.0.0.1", "localhost")
        (folder / "vae.safetensors").unlink()
        logic.download(None, other)
        assert srv.requests_for("/gated/vae.safetensors")[-1].authorization is None


def test_default_precision_comes_from_the_host():
    assert ui.UiContext().default_precision() == "auto"
    assert ui.UiContext(precision=lambda: "fp16").default_precision() == "fp16"
    assert ui.UiContext(precision=lambda: "nonsense").default_precision() == "auto"
