"""The tab under Gradio 3.41.2 without a browser: the Blocks, its wiring, listing, rendering,
the handlers run for real on the TAEF2 pair and tiny kl VAEs, and `serve`'s bad input."""

from __future__ import annotations

import json
import os
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


def _text(fragment: str) -> str:
    """The text a user reads in an HTML fragment."""
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


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
    assert compat.event_kwargs()["api_name"] is False


def test_compat_switches_keywords_for_gradio_4(monkeypatch):
    monkeypatch.setattr(compat, "gradio_major", lambda: 4)
    assert compat.js_kwargs("() => 1") == {"js": "() => 1"}

    class Blocks:
        def queue(self, **kw):
            self.kw = kw
            return self

    assert compat.enable_queue(Blocks(), api_open=False).kw == {"default_concurrency_limit": 1, "api_open": False}
    assert compat.event_kwargs() == {"api_name": False, "show_api": False}


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
    assert choices[vae_id("/v/kl.safetensors")].startswith("✕") and "decodes 4-channel latents, these have 32 channels" in choices[vae_id("/v/kl.safetensors")]
    assert not choices[vae_id("/v/x.pt")].startswith("✕")  # unknown: offered, the run decides
    by_family = dict((p, label) for label, p in ui.vae_choices([kl, xl], channels=4, family="sd1"))
    assert not by_family[vae_id("/v/kl.safetensors")].startswith("✕")
    assert "is for SDXL latents, these are SD1/SD2" in by_family[vae_id("/v/xl.safetensors")]
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
    assert "1×32×8×8" in _text(note_u["value"]) and "flux2" in note_u["value"]
    # the VAE that was ticked and cannot decode these latents is named, not silently unticked
    assert f"unticked (cannot decode these latents): {KL_NAMES[0]}" in _text(note_u["value"])
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
    assert "no generation's latents yet" in _text(note) and "vae-lab-toast-error" in note


# --- the Blocks -----------------------------------------------------------------------------


def test_build_tab_has_the_documented_components(context):
    tab = ui.build_tab(context)
    ids = _by_elem_id(_blocks_config(tab))
    for elem in ("vae_lab_source", "vae_lab_image", "vae_lab_latent_file", "vae_lab_vaes", "vae_lab_encoder",
                 "vae_lab_reference", "vae_lab_precision", "vae_lab_tiling", "vae_lab_run", "vae_lab_stop",
                 "vae_lab_view", "vae_lab_metrics", "vae_lab_pair", "vae_lab_gain", "vae_lab_files",
                 "vae_lab_catalog", "vae_lab_url", "vae_lab_download", "vae_lab_fast_attention"):
        assert elem in ids, elem
    fast = ids["vae_lab_fast_attention"]["props"]
    assert fast["label"] == "Fast attention for huge images (windowed; slightly inexact)" and fast["value"] is False
    vaes = ids["vae_lab_vaes"]["props"]["choices"]
    assert sorted(label.split(" · ")[0] for label, _ in vaes) == sorted(["taef2_decoder.pth", *KL_NAMES, BROKEN])
    # the image comes in as a file, so the tab reads it (and says why when it cannot)
    assert ".png" in ids["vae_lab_image"]["props"]["file_types"]
    # the standalone app keeps no generations: no "last generation's latents" to offer
    shown = [c[0] if isinstance(c, (list, tuple)) else c for c in ids["vae_lab_source"]["props"]["choices"]]
    assert shown == [ui.SOURCE_IMAGE, ui.SOURCE_FILE]
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
    def trigger(d):
        return d.get("trigger") or d["targets"][0][1]  # Gradio 3: "trigger"; 4: targets

    loads = [d for d in cfg["dependencies"] if d.get("js") and trigger(d) == "load"]
    assert len(loads) == 1 and js.strip() in loads[0]["js"]
    # no event of the tab is in an API page: they are the UI's plumbing
    # (Gradio 4 records api_name=False as "unnamed" with show_api False)
    assert all(d.get("api_name") in (None, False, "unnamed") and not d.get("show_api", False)
               for d in cfg["dependencies"])
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


def test_fast_attention_box_asks_for_windowed_attention(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    vaes = [vae_id(vae_dir / KL_NAMES[0])]
    args = (ui.SOURCE_IMAGE, small_photo, None, vaes, ui.ENCODER_FIRST, "fp32", "auto", ui.NO_REFERENCE)
    assert logic.request(*args)[0].attention == "global"  # exact unless ticked
    assert logic.request(*args, fast_attention=True)[0].attention == "window"


@pytest.fixture(scope="module")
def roundtrip(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    vaes = [vae_id(vae_dir / "taef2_decoder.pth"), vae_id(vae_dir / KL_NAMES[0]), vae_id(vae_dir / BROKEN)]
    steps = []
    out = logic.run(ui.SOURCE_IMAGE, small_photo, None, vaes, ui.ENCODER_OWN, "fp32", "auto", ui.NO_REFERENCE,
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
    assert "2 of 3 VAEs decoded" in _text(status)
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

    import re
    import zipfile

    _, (_, _, files, _, result), _ = roundtrip
    names = [p.rsplit("/", 1)[-1] for p in files]
    stem = names[0][: -len("_all.zip")]
    # an array has no file name: "image" and the time of the run
    assert re.fullmatch(r"image_\d{8}-\d{6}", stem), stem
    by_name = {n[len(stem) + 1:]: p for n, p in zip(names, files)}
    assert set(by_name) == {"all.zip", "grid.png", "metrics.csv", "metrics.json", "original_image.png",
                            "taef2_decoder.png", KL_NAMES[0].replace(".safetensors", "") + ".png"}
    rows = list(csv.DictReader(io.StringIO(open(by_name["metrics.csv"]).read())))
    assert [r["vae"] for r in rows] == ["taef2_decoder.pth", KL_NAMES[0], BROKEN]
    # relative paths only, the A1111 "VAE hash" (10 hex of the file SHA-256) and the weights id
    assert [r["path"] for r in rows] == ["taef2_decoder.pth", KL_NAMES[0], BROKEN]
    import hashlib

    vae_folder = os.path.dirname(result.outcomes[1].path)
    sha = hashlib.sha256(open(result.outcomes[1].path, "rb").read()).hexdigest()
    assert rows[1]["vae_hash"] == sha[:10] and len(rows[1]["weights_id"]) == 64
    assert rows[0]["source_width"] == "64" and rows[0]["source_height"] == "64"
    doc = json.loads(open(by_name["metrics.json"]).read())
    assert doc["results"][0]["psnr"] == pytest.approx(result.outcomes[0].psnr)
    assert doc["source"] == {"name": None, "width": 64, "height": 64}
    for f in files:
        if f.endswith((".csv", ".json")):
            assert vae_folder not in open(f).read()
    grid = Image.open(by_name["grid.png"])
    assert grid.width >= 3 * 64
    # each decode at full resolution, bit-exact, and all of it in the zip
    taef2 = np.asarray(Image.open(by_name["taef2_decoder.png"]).convert("RGB"))
    assert np.array_equal(taef2, result.outcomes[0].image)
    with zipfile.ZipFile(by_name["all.zip"]) as z:
        assert sorted(z.namelist()) == sorted(names[1:])


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
    assert result.mode == "latents" and "Reference: taef2_decoder.pth (fp32)" in _text(status)
    assert "PSNR inf (identical)" in view  # same VAE, same precision as the reference
    kl = result.outcomes[1]
    assert kl.image is None and "4-channel" in kl.error and kl.error in view


def test_stop_cancels_between_steps(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    vaes = [vae_id(vae_dir / KL_NAMES[0]), vae_id(vae_dir / KL_NAMES[1])]
    view, _, _, status, result = logic.run(ui.SOURCE_IMAGE, small_photo, None, vaes, ui.ENCODER_OWN, "auto", "auto",
                                           None, session="s", progress=lambda f, t: logic.cancels.cancel("s"))
    # Stop pressed as the first VAE starts: the engine stops inside its decode (between
    # blocks), the second never starts
    assert result.cancelled
    assert [o.error for o in result.outcomes] == ["cancelled", "cancelled"]
    assert "Cancelled after 0 of 2 VAEs" in _text(status)
    assert len(_data_uri_images(view)) == 1  # the original stays


def test_bad_requests_are_one_line_errors(context, vae_dir, small_photo):
    logic = ui.TabLogic(context)
    with pytest.raises(VaeLabError, match="tick at least one VAE"):
        logic.run(ui.SOURCE_IMAGE, small_photo, None, [], ui.ENCODER_FIRST, "auto", "auto", None)
    with pytest.raises(VaeLabError, match="upload an image first"):
        logic.run(ui.SOURCE_IMAGE, None, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST, "auto", "auto", None)
    with pytest.raises(VaeLabError, match="choose a latent file"):
        logic.run(ui.SOURCE_FILE, None, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST, "auto", "auto", None)


# --- Get VAEs: a real download from a 127.0.0.1 server into the VAE folder -------------------


def test_get_vaes_downloads_into_the_folder_and_refreshes(tmp_path):
    from safetensors.torch import save as save_bytes

    from testkit.factories import TINY_KL, random_kl_state_dict
    from testkit.httpserver import FileServer

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
    # in the tab, no command-line advice: a URL box that holds no URL says so in the tab's words
    with pytest.raises(VaeLabError) as err:
        logic.download(None, "sdxl-vae")
    assert "https://" in str(err.value) and "python -m" not in str(err.value)


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

    from testkit.factories import TINY_KL, random_kl_state_dict

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
    assert "bad.safetensors" in note and "\n" not in note and str(tmp_path) not in note
    with pytest.raises(VaeLabError):
        logic.run(ui.SOURCE_FILE, None, str(bad), [vae_id(context.entries()[0])], ui.ENCODER_FIRST, "auto", "auto", None)


def test_safetensors_latent_file_written_by_encode_is_accepted(context, tmp_path):
    import torch

    from vae_lab.files.latents import save_latents

    f = save_latents(tmp_path / "x.safetensors", torch.zeros(1, 32, 8, 8), family="flux2")
    note = ui.TabLogic(context).on_source(ui.SOURCE_FILE, f, [])[2]["value"]
    assert _text(note) == "x.safetensors: 1×32×8×8 (flux2)"


def test_get_vaes_sends_the_hosts_tokens_only_where_they_belong(tmp_path):
    """The tab's downloads use the tokens the host passes (the WebUI's Settings), per host."""
    from safetensors.torch import save as save_bytes

    from testkit.factories import TINY_KL, random_kl_state_dict
    from testkit.httpserver import FileServer
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


# --- what the user sees for bad input, names, and the page's own files ------------------------


class _Upload:
    """What Gradio 3.41 hands a handler for an uploaded file: a temp path and the user's name."""

    def __init__(self, path, orig_name):
        self.name, self.orig_name = str(path), orig_name


def test_an_unreadable_image_is_a_message_naming_it(context, tmp_path, small_photo):
    from PIL import Image

    logic = ui.TabLogic(context)
    junk = tmp_path / "tmpab12cd.png"
    junk.write_bytes(b"this is not a picture")
    preview, status = logic.on_image(_Upload(junk, "holiday.png"))
    assert preview == "" and "vae-lab-toast-error" in status
    assert _text(status) == "⚠ holiday.png is not an image this tab can read (PNG, JPEG, WebP, BMP, TIFF or GIF)"
    with pytest.raises(VaeLabError, match="holiday.png is not an image"):
        logic.run(ui.SOURCE_IMAGE, _Upload(junk, "holiday.png"), None, [vae_id(context.entries()[0].path)],
                  ui.ENCODER_FIRST, "fp32", "auto", None)
    cut = tmp_path / "cut.png"
    Image.fromarray(small_photo).save(cut)
    cut.write_bytes(cut.read_bytes()[:200])
    assert "could not be read as an image: the file is cut short" in _text(logic.on_image(_Upload(cut, "cut.png"))[1])
    good = tmp_path / "good.png"
    Image.fromarray(small_photo).save(good)
    preview, status = logic.on_image(_Upload(good, "my photo.png"))
    assert status == "" and "my photo.png · 64×64" in _text(preview)


def test_vae_list_names_diffusers_folders_flags_same_weights_and_gives_reasons(tmp_path):
    import shutil

    from safetensors.torch import save_file

    from factories import TINY_KL, random_kl_state_dict

    (tmp_path / "sdxl-vae").mkdir()
    (tmp_path / "model" / "vae").mkdir(parents=True)
    save_file(random_kl_state_dict(TINY_KL, seed=11), str(tmp_path / "sdxl-vae" / "diffusion_pytorch_model.safetensors"))
    save_file(random_kl_state_dict(TINY_KL, seed=12), str(tmp_path / "model" / "vae" / "diffusion_pytorch_model.safetensors"))
    shutil.copy(tmp_path / "sdxl-vae" / "diffusion_pytorch_model.safetensors", tmp_path / "renamed.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    entries = {e.name: e for e in ui.scan_vae_dirs([str(tmp_path)])}
    assert set(entries) == {"sdxl-vae", "model/vae", "renamed.safetensors", "broken.safetensors"}
    same = [e for e in entries.values() if e.same_as]
    assert len(same) == 1 and {same[0].name, same[0].same_as} == {"sdxl-vae", "renamed.safetensors"}
    assert f"same weights as {same[0].same_as}" in same[0].label
    broken = entries["broken.safetensors"].label
    assert broken.startswith("broken.safetensors · ⚠ not readable: ") and len(broken) < 140
    assert str(tmp_path) not in broken and "(" not in broken  # the reason, not the parser's detail
    # the run shows the folder's name too, not "diffusion_pytorch_model.safetensors"
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(tmp_path)]))
    photo = np.zeros((16, 16, 3), np.uint8)
    *_, result = logic.run(ui.SOURCE_IMAGE, photo, None, [vae_id(entries["sdxl-vae"].path)], ui.ENCODER_FIRST, "fp32",
                           "auto", None)
    assert [o.name for o in result.outcomes] == ["sdxl-vae"] and result.outcomes[0].ok


def test_last_generation_is_offered_only_where_a_host_keeps_generations(context):
    from vae_lab.ui.handlers import offered_sources

    assert ui.SOURCE_LAST not in offered_sources(context)
    assert ui.SOURCE_LAST in offered_sources(ui.UiContext(last_latents=lambda: None))


def test_metrics_table_sorts_numbers_as_numbers(roundtrip):
    from vae_lab.ui.render import metrics_html

    html_table = metrics_html(["VAE", "PSNR dB", "peak MiB", "note"],
                              [["a", "31.17", "40", ""], ["b", "9.15", "", "x"], ["c", "inf", "1", ""]])
    import re

    assert re.findall(r'data-num="(\d)"', html_table) == ["0", "1", "1", "0"]
    assert re.findall(r'data-v="([^"]*)"', html_table) == ["31.17", "40.0", "9.15", "", "1e308", "1.0"]


def test_the_zoomed_region_exports_at_one_to_one(roundtrip):
    from PIL import Image

    logic, (_, _, _, _, result), _ = roundtrip
    path, *rest = logic.crop(result, "0.25,0.25,0.5,0.5")
    assert len(rest) == 7  # the run's other files stay in the list
    grid = Image.open(path)
    # 3 tiles (original, TAEF2, kl) of the 32×32 centre, unscaled, plus the failed one
    assert grid.width >= 3 * 32 and path.rsplit("/", 1)[-1].startswith("image_")
    with pytest.raises(VaeLabError, match="zoom into a region"):
        logic.crop(result, "")


def test_the_page_asks_nothing_of_other_hosts():
    """The app's HTML loses the CDN font preconnects and the iframe-resizer script."""
    import asyncio

    from vae_lab.ui.app import LocalPage

    page = (b'<head><link rel="preconnect" href="https://fonts.googleapis.com" />\n<link\n rel="preconnect"\n'
            b' href="https://fonts.gstatic.com"\n crossorigin="anonymous"\n/>\n<script\n src="https://cdnjs.'
            b'cloudflare.com/ajax/libs/iframe-resizer/4.3.6/iframeResizer.contentWindow.min.js"\n async\n></script>'
            b'<script type="module" crossorigin src="./assets/index.js"></script></head>')

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"1")]})
        await send({"type": "http.response.body", "body": page})

    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(LocalPage(app)({"type": "http"}, None, send))
    body = sent[1]["body"]
    assert b"https://" not in body and b"./assets/index.js" in body
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(body)).encode()
