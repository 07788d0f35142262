"""The comparison app in a real browser: `python -m vae_lab serve` in a subprocess, driven by
Debian's Chromium through Playwright. Only 127.0.0.1 is reachable; every other request is aborted.

Set VAE_LAB_SCREENSHOTS=folder to also write the docs' screenshots of the tab (1920 and 800 px wide).
"""

from __future__ import annotations

import os
import re
import shutil
import urllib.request
from pathlib import Path

import pytest

from testkit.serve import running_app
from vae_folder import BROKEN, KL_NAMES, make_vae_folder

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("VAE_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(ok: bool, reason: str):
    if not ok:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: browser tests must run)")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sync_playwright():
    _need(os.path.exists(CHROMIUM) or shutil.which(CHROMIUM) is not None, f"no chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright as sp
    except ImportError:
        _need(False, "playwright is not installed")
    return sp


@pytest.fixture(scope="module")
def server(tmp_path_factory, taef2_pair, sync_playwright):
    folder = make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)
    log = tmp_path_factory.mktemp("log") / "serve.log"
    # "auto" is fp32 in the app, on any CPU: the captions say fp32
    try:
        with running_app(folder, log, env={"VAE_LAB_FAST_BF16": "0"}, wait_s=60) as url:
            yield url + "/"
    except RuntimeError as err:
        pytest.fail(str(err))


BLOCKED: list[str] = []  # every request the page tried to send anywhere but 127.0.0.1


@pytest.fixture(scope="module")
def browser_context(sync_playwright):
    def route(r):
        url = r.request.url
        if re.match(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]", url) or url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            BLOCKED.append(url)
            r.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
        ctx.route(re.compile(r".*"), route)
        yield ctx
        browser.close()


@pytest.fixture(scope="module")
def page(server, browser_context):
    pg = browser_context.new_page()
    pg.goto(server)
    pg.wait_for_selector("#vae_lab_run")
    return pg


@pytest.fixture(scope="module")
def photo(tmp_path_factory, astronaut):
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(astronaut).resize((192, 192), Image.LANCZOS).save(p)
    return p


def _transforms(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => getComputedStyle(e).transform)")


def _scale(matrix: str) -> float:
    if matrix in ("none", ""):
        return 1.0
    return float(matrix[len("matrix("):].split(",")[0])


def _tick(page, *names):
    for name in names:
        page.locator("#vae_lab_vaes label", has_text=name).locator("input").check()


def _untick_all(page):
    page.click("#vae_lab_vaes [data-vae-lab-select=none]")
    page.wait_for_function("![...document.querySelectorAll('#vae_lab_vaes input[type=checkbox]')].some(i => i.checked)")


def _upload(page, elem_id, path):
    """Put `path` into a file input, clearing the file it holds first (Gradio hides the input then)."""
    clear = page.locator(f"#{elem_id} button[aria-label=Clear]")
    if clear.count() and clear.first.is_visible():
        clear.first.click()
    page.wait_for_selector(f"#{elem_id} input[type=file]", state="attached")
    page.set_input_files(f"#{elem_id} input[type=file]", str(path))


def _status(page) -> str:
    return page.locator("#vae_lab_status").first.inner_text()


def _wait_run(page, timeout=90_000):
    page.wait_for_selector("#vae_lab_metrics table", timeout=timeout)
    page.wait_for_function("document.querySelector('#vae_lab_status').innerText.trim() !== ''", timeout=timeout)


def test_first_screen_explains_and_the_page_talks_only_to_its_host(page):
    empty = page.locator("#vae_lab_view .vae-lab-empty").first
    assert "see what each VAE does" in empty.inner_text()
    assert not page.locator("#vae_lab_pair_controls").first.is_visible()  # nothing to pair yet
    # no "Last generation's latents" in the standalone app, where there never are any
    assert page.locator("#vae_lab_source label").all_inner_texts() == ["Image (round trip)", "Latent file"]
    assert "Use via API" not in page.content()
    html = urllib.request.urlopen(page.url, timeout=5).read().decode()
    assert "https://cdnjs" not in html and "fonts.googleapis" not in html
    assert BLOCKED == []


def test_unreadable_image_is_named_with_the_reason(page, tmp_path):
    junk = tmp_path / "holiday.png"
    junk.write_bytes(b"definitely not a PNG")
    _upload(page, "vae_lab_image", str(junk))
    page.wait_for_selector("#vae_lab_status .vae-lab-toast-error", timeout=20_000)
    assert "holiday.png is not an image this tab can read" in _status(page)
    # the toast sits right under the Compare button
    run_box = page.locator("#vae_lab_run").bounding_box()
    toast = page.locator("#vae_lab_status .vae-lab-toast").bounding_box()
    assert 0 <= toast["y"] - (run_box["y"] + run_box["height"]) < 60


def test_mixed_selection_compares_with_the_default_encoder(page, photo):
    """TAEF2 ticked first, then kl-f8 VAEs: each latent family gets its own encoder (issue 14.1),
    the broken file fails in its own cell, and the status says who encoded what."""
    _upload(page, "vae_lab_image", str(photo))
    page.wait_for_selector("#vae_lab_preview img")
    assert "astronaut.png · 192×192" in page.locator("#vae_lab_preview").first.inner_text()
    _untick_all(page)
    _tick(page, "taef2_decoder.pth", *KL_NAMES, BROKEN)
    assert page.locator("#vae_lab_encoder input:checked").first.evaluate("e => e.value") == "First VAE of each latent family"
    page.evaluate("""() => { window.vaeLabProgress = {texts: [], most: 0}; new MutationObserver(() => {
        const bars = document.querySelectorAll('.progress-level');
        window.vaeLabProgress.most = Math.max(window.vaeLabProgress.most, bars.length);
        bars.forEach(b => window.vaeLabProgress.texts.push(b.textContent.trim()));
      }).observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    page.click("#vae_lab_run")
    _wait_run(page)
    cells = page.locator("#vae_lab_view figure.vae-lab-cell")
    assert cells.count() == 5  # reference + TAEF2 + two kl + the broken one
    captions = cells.all_inner_texts()
    for name in ("taef2_decoder.pth", *KL_NAMES):
        cap = next(c for c in captions if name in c)
        assert "fp32" in cap and "PSNR" in cap and "colour shift" in cap
    assert page.locator("#vae_lab_view figure.vae-lab-failed").count() == 1
    assert page.locator("#vae_lab_view svg.vae-lab-hist").count() == 3
    status = _status(page)
    assert "4 of 4" not in status and "3 of 4 VAEs decoded" in status
    assert f"4-channel from {KL_NAMES[0]}'s encoder (for {KL_NAMES[0]}, {KL_NAMES[1]})" in status
    assert "32-channel from taef2_decoder.pth's encoder (for itself)" in status
    progress = page.evaluate("window.vaeLabProgress")
    assert progress["most"] == 1  # one progress bar, over the view
    assert any(t.startswith("decoding with taef2_decoder.pth") for t in progress["texts"])
    sizes = page.eval_on_selector_all("#vae_lab_view img.vae-lab-zoom", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert all(s == [192, 192] for s in sizes)
    # images take the pointer, so the browser's own "Save image as…" works on them
    assert page.eval_on_selector("#vae_lab_view img.vae-lab-zoom", "e => getComputedStyle(e).pointerEvents") != "none"
    # the pair view is drawn for the pair the dropdowns show, without another click
    a = page.locator("#vae_lab_pair_a input").first.input_value()
    b = page.locator("#vae_lab_pair_b input").first.input_value()
    assert (a, b) == ("original image", "taef2_decoder.pth")
    labels = page.locator("#vae_lab_pair .vae-lab-ba-label").all_inner_texts()
    assert labels == ["A · original image", "B · taef2_decoder.pth"]
    assert "largest difference:" in page.locator("#vae_lab_pair").first.inner_text()
    assert BLOCKED == []


def test_metrics_table_sorts_numerically(page):
    psnr = page.locator("#vae_lab_metrics th", has_text="PSNR")
    header = page.locator("#vae_lab_metrics th").all_inner_texts()
    col = next(i for i, h in enumerate(header) if h.startswith("PSNR"))
    assert "peak MiB" in header

    def column():
        return page.eval_on_selector_all(
            "#vae_lab_metrics tbody tr", f"rs => rs.map(r => r.cells[{col}].getAttribute('data-v'))")

    psnr.click()
    values = [v for v in column() if v]
    assert values == sorted(values, key=float) and len(values) == 3
    assert column()[-1] == ""  # the failed VAE's empty cell goes last
    psnr.click()
    values = [v for v in column() if v]
    assert values == sorted(values, key=float, reverse=True)


def test_viewer_zoom_keys_loupe_and_flicker(page):
    imgs = "#vae_lab_view img.vae-lab-zoom"
    page.click("#vae_lab_view [data-vae-lab=fit]")
    frame = page.locator("#vae_lab_view .vae-lab-frame").first
    box = frame.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    # a trackpad: twenty 2 px events zoom a little, not to the maximum
    for _ in range(20):
        page.mouse.wheel(0, -2)
    page.wait_for_timeout(100)
    s = _scale(_transforms(page, imgs)[0])
    assert s == pytest.approx(1.2 ** 0.4, rel=0.02)
    page.mouse.wheel(0, -100)  # a mouse notch: 1.2×
    page.wait_for_timeout(100)
    zoomed = _transforms(page, imgs)
    assert len(set(zoomed)) == 1 and _scale(zoomed[0]) == pytest.approx(1.2 ** 1.4, rel=0.02)
    readout = page.locator("#vae_lab_view .vae-lab-readout").first.inner_text()
    assert readout.endswith("× fit)") and "%" in readout
    # keyboard over the view: 0 fits, + zooms 1.25×, arrows pan, 1 is one image pixel per screen pixel
    page.keyboard.press("0")
    assert all(_scale(t) == 1.0 for t in _transforms(page, imgs))
    page.keyboard.press("+")
    assert _scale(_transforms(page, imgs)[0]) == pytest.approx(1.25)
    before = _transforms(page, imgs)[0]
    page.keyboard.press("ArrowRight")
    after = _transforms(page, imgs)
    assert after[0] != before and len(set(after)) == 1
    page.keyboard.press("1")
    assert page.evaluate("vaeLab.pixelZoom(document.querySelector('#vae_lab_view .vae-lab-sync'))") == pytest.approx(1.0, abs=0.01) \
        or _scale(_transforms(page, imgs)[0]) == 1.0  # a 192 px image is smaller than its cell: fit is the least
    # the loupe shows the same image point in every cell
    page.keyboard.press("l")
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
    page.wait_for_timeout(100)
    spots = page.eval_on_selector_all("#vae_lab_view .vae-lab-loupe", "ls => ls.map(l => l.getAttribute('data-at'))")
    assert len(spots) == 4 and len(set(spots)) == 1 and spots[0] is not None
    assert page.locator("#vae_lab_view .vae-lab-loupe").first.is_visible()
    page.keyboard.press("l")
    # double-click fits again; the pair view's zoom is its own
    page.mouse.dblclick(box["x"] + 10, box["y"] + 10)
    assert all(_scale(t) == 1.0 for t in _transforms(page, imgs))

    # before/after: the divider is dragged on the image; F flickers between A and B
    ba = page.locator("#vae_lab_pair .vae-lab-ba").first
    ba.scroll_into_view_if_needed()
    handle = page.locator("#vae_lab_pair .vae-lab-ba-handle").first.bounding_box()
    bb = ba.bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(bb["x"] + bb["width"] * 0.25, handle["y"] + 5, steps=4)
    page.mouse.up()
    pos = float(ba.evaluate("e => e.style.getPropertyValue('--vae-lab-pos')").strip().rstrip("%"))
    assert pos == pytest.approx(25, abs=2)
    assert page.locator("#vae_lab_pair .vae-lab-ba-range").first.input_value() in (str(round(pos)), str(int(pos)))
    page.mouse.move(bb["x"] + bb["width"] * 0.6, bb["y"] + bb["height"] * 0.6)
    page.keyboard.press("f")
    assert ba.get_attribute("data-showing") == "A"
    page.keyboard.press("f")
    assert ba.get_attribute("data-showing") == "B"


def test_exports_hold_every_decode_with_names_hashes_and_no_paths(page, server, tmp_path):
    import csv
    import io
    import json
    import zipfile

    files = page.locator("#vae_lab_files a")
    links = files.evaluate_all("as => as.map(a => a.href)")
    names = [u.rsplit("/", 1)[-1] for u in links]
    assert len(names) == 8 and all(n.startswith("astronaut_") for n in names), names
    zip_url = next(u for u in links if u.endswith("_all.zip"))
    data = urllib.request.urlopen(zip_url, timeout=10).read()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        listing = z.namelist()
        stem = listing[0].split("_metrics")[0].split("_grid")[0]
        assert re.fullmatch(r"astronaut_\d{8}-\d{6}", stem), stem
        assert {f"{stem}_grid.png", f"{stem}_metrics.csv", f"{stem}_metrics.json", f"{stem}_original_image.png",
                f"{stem}_taef2_decoder.png"} <= set(listing)
        rows = list(csv.DictReader(io.StringIO(z.read(f"{stem}_metrics.csv").decode())))
        doc = json.loads(z.read(f"{stem}_metrics.json"))
    assert {r["source"] for r in rows} == {"astronaut.png"} and rows[0]["source_width"] == "192"
    taef2 = next(r for r in rows if r["vae"] == "taef2_decoder.pth")
    assert len(taef2["vae_hash"]) == 10 and len(taef2["weights_id"]) == 64 and taef2["path"] == "taef2_decoder.pth"
    assert doc["source"] == {"name": "astronaut.png", "width": 192, "height": 192}
    assert "/" not in "".join(r["path"] for r in rows)  # relative to the VAE folder, no server paths
    # the zoomed region as a 1:1 grid
    frame = page.locator("#vae_lab_view .vae-lab-frame").first.bounding_box()
    page.mouse.move(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)
    page.mouse.wheel(0, -380)  # 2×
    page.click("#vae_lab_crop")
    try:
        page.wait_for_function("[...document.querySelectorAll('#vae_lab_files a')].some(a => a.href.includes('_crop_'))",
                               timeout=20_000)
    except Exception:
        pytest.fail(f"no crop file; status: {_status(page)!r}")
    crop_url = next(u for u in page.locator("#vae_lab_files a").evaluate_all("as => as.map(a => a.href)") if "_crop_" in u)
    from PIL import Image

    grid = Image.open(io.BytesIO(urllib.request.urlopen(crop_url, timeout=10).read()))
    assert grid.width >= 4 * 90  # four tiles of the ~96 px region, not scaled down


def test_new_run_clears_stale_state_and_keeps_the_zoom(page):
    imgs = "#vae_lab_view img.vae-lab-zoom"
    page.locator("#vae_lab_view .vae-lab-frame").first.scroll_into_view_if_needed()
    frame = page.locator("#vae_lab_view .vae-lab-frame").first.bounding_box()
    page.mouse.move(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)
    page.keyboard.press("0")
    page.mouse.wheel(0, -200)
    zoom = _scale(_transforms(page, imgs)[0])
    assert zoom > 1.3
    _untick_all(page)
    _tick(page, KL_NAMES[1])
    page.click("#vae_lab_run")
    # the old table, status and pair view go at once, not when the new run ends
    page.wait_for_function("!document.querySelector('#vae_lab_metrics table')", timeout=5_000)
    assert _status(page).strip() == "" and page.locator("#vae_lab_pair .vae-lab-ba").count() == 0
    _wait_run(page)
    assert page.locator("#vae_lab_view figure.vae-lab-cell").count() == 2
    assert _scale(_transforms(page, imgs)[0]) == pytest.approx(zoom, rel=1e-3)  # zoom kept across runs
    b = page.locator("#vae_lab_pair_b input").first.input_value()
    assert b == KL_NAMES[1] and f"B · {KL_NAMES[1]}" in page.locator("#vae_lab_pair").first.inner_text()
    # choosing another pair redraws at once, without a button
    page.locator("#vae_lab_pair_b input").first.click()
    page.locator("ul.options li", has_text="original image").first.click()
    page.wait_for_function("document.querySelector('#vae_lab_pair').innerText.includes('B · original image')",
                           timeout=10_000)


def test_stop_stops_and_keeps_what_finished(page, big_photo):
    _upload(page, "vae_lab_image", str(big_photo))
    page.wait_for_selector("#vae_lab_preview img")
    _untick_all(page)
    _tick(page, "taef2_decoder.pth", *KL_NAMES)
    page.get_by_label("Each VAE's own encoder").check()
    page.click("#vae_lab_run")
    page.wait_for_function("[...document.querySelectorAll('.progress-level')].some(b => b.textContent.includes('decoding with'))",
                           timeout=60_000)
    page.click("#vae_lab_stop")
    page.wait_for_function("document.querySelector('#vae_lab_status').innerText.includes('finishing the current step')",
                           timeout=5_000)
    try:
        page.wait_for_function("document.querySelector('#vae_lab_status').innerText.includes('Cancelled after')",
                               timeout=60_000)
    except Exception:
        pytest.fail(f"status: {_status(page)!r}")
    status = _status(page)
    done = int(re.search(r"Cancelled after (\d) of 3", status).group(1))
    assert 0 <= done < 3
    # what finished is on screen: the original plus the finished decodes, the rest marked cancelled
    assert page.locator("#vae_lab_view img.vae-lab-zoom").count() == 1 + done
    assert page.locator("#vae_lab_view .vae-lab-error", has_text="cancelled").count() == 3 - done
    page.get_by_label("First VAE of each latent family").check()


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory, astronaut):
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "astronaut-512.png"
    Image.fromarray(astronaut).save(p)
    return p


def test_latents_disable_incompatible_vaes(page, tmp_path):
    """With a 32-channel latent file, the 4-channel VAEs are struck through and cannot be ticked."""
    import torch

    lat = tmp_path / "flux2.pt"
    torch.save({"latent_tensor": torch.randn(1, 32, 8, 8)}, lat)
    _untick_all(page)
    _tick(page, KL_NAMES[0])
    page.get_by_label("Latent file").check()
    _upload(page, "vae_lab_latent_file", str(lat))
    page.wait_for_selector("#vae_lab_vaes label.vae-lab-incompatible", timeout=30_000)
    state = page.eval_on_selector_all(
        "#vae_lab_vaes label", "ls => ls.map(l => [l.textContent.trim(), l.querySelector('input').disabled])")
    by_name = {text.lstrip("✕ ").split(" · ")[0]: disabled for text, disabled in state}
    assert by_name["taef2_decoder.pth"] is False
    assert all(by_name[n] is True for n in KL_NAMES)
    note = page.locator("#vae_lab_latent_note").first.inner_text()
    assert "flux2.pt: 1×32×8×8" in note and f"unticked (cannot decode these latents): {KL_NAMES[0]}" in note
    assert not page.locator("#vae_lab_image").first.is_visible()
    assert page.locator("#vae_lab_reference").first.is_visible()
    # a model file is not latents: one short line, no temp path, no tensor list
    model = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({f"layer{i}.weight": torch.zeros(2) for i in range(180)}, str(model))
    _upload(page, "vae_lab_latent_file", str(model))
    page.wait_for_function("document.querySelector('#vae_lab_latent_note').innerText.includes('180 tensors')",
                           timeout=20_000)
    note = page.locator("#vae_lab_latent_note").first.inner_text()
    assert "model.safetensors: holds 180 tensors" in note and "layer1" not in note and "/tmp" not in note
    assert page.locator("#vae_lab_latent_note .vae-lab-toast-error").count() == 1
    # the VAE list: filter and select all / none
    page.get_by_label("Image (round trip)").check()
    page.wait_for_selector("#vae_lab_image", state="visible")
    page.fill("#vae_lab_vaes .vae-lab-filter", "random")
    shown = page.eval_on_selector_all("#vae_lab_vaes label", "ls => ls.filter(l => l.style.display !== 'none').length")
    assert shown == 2
    page.click("#vae_lab_vaes [data-vae-lab-select=all]")
    checked = page.eval_on_selector_all("#vae_lab_vaes label", "ls => ls.filter(l => l.querySelector('input').checked).map(l => l.textContent)")
    assert len(checked) == 2 and all("random" in c for c in checked)
    page.fill("#vae_lab_vaes .vae-lab-filter", "")
    assert BLOCKED == []


def test_narrow_window_stacks_and_brings_results_into_view(browser_context, server, photo):
    pg = browser_context.new_page()
    pg.set_viewport_size({"width": 800, "height": 900})
    pg.goto(server + "?__theme=dark")
    pg.wait_for_selector("#vae_lab_run")
    _upload(pg, "vae_lab_image", photo)
    pg.wait_for_selector("#vae_lab_preview img")
    _tick(pg, KL_NAMES[0])
    pg.locator("#vae_lab_run").scroll_into_view_if_needed()
    pg.click("#vae_lab_run")
    _wait_run(pg)
    pg.wait_for_timeout(800)  # the smooth scroll
    inputs = pg.locator("#vae_lab_inputs").bounding_box()
    view = pg.locator("#vae_lab_view .vae-lab-view").first.bounding_box()
    assert view["y"] > inputs["y"] + inputs["height"] - 5  # stacked under the inputs
    assert view["width"] > 0.8 * 800 - 40
    assert -5 <= view["y"] < 900 - 80  # scrolled into sight
    pg.close()


def test_screenshots_of_the_tab(page, browser_context, server, photo):
    """With VAE_LAB_SCREENSHOTS=folder: the tab at 1920 and 800 px wide, after a comparison."""
    folder = os.environ.get("VAE_LAB_SCREENSHOTS")
    if not folder:
        pytest.skip("set VAE_LAB_SCREENSHOTS to write the docs' screenshots")
    for width, height in ((1920, 1080), (800, 1000)):
        pg = browser_context.new_page()
        pg.set_viewport_size({"width": width, "height": height})
        pg.goto(server)
        pg.wait_for_selector("#vae_lab_run")
        _upload(pg, "vae_lab_image", str(photo))
        pg.wait_for_selector("#vae_lab_preview img")
        _tick(pg, "taef2_decoder.pth", *KL_NAMES)
        pg.click("#vae_lab_run")
        _wait_run(pg)
        box = pg.locator("#vae_lab_view .vae-lab-frame").first.bounding_box()
        pg.mouse.move(box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.3)
        pg.mouse.wheel(0, -250)
        pg.mouse.move(5, 5)
        pg.wait_for_timeout(300)
        pg.evaluate("window.scrollTo(0, 0)")
        pg.screenshot(path=os.path.join(folder, f"tab-{width}.png"), full_page=width < 1000)
        if width < 1000:  # narrow: the inputs stack above the results
            inputs = pg.locator("#vae_lab_inputs").bounding_box()
            view = pg.locator("#vae_lab_view").first.bounding_box()
            assert view["y"] > inputs["y"] + inputs["height"] - 5 and view["width"] > 0.8 * width - 40
        pg.close()


def test_script_waits_for_the_webuis_onUiLoaded(browser_context):
    """Inside A1111 the script is a classic <script> in <head>: it must install through
    `onUiLoaded` and listen on `gradioApp()`, not before the UI exists."""
    js = (ROOT / "javascript" / "vae_lab.js").read_text()
    frame = '<div class="vae-lab-frame" style="width:200px;height:200px"><img class="vae-lab-zoom" ' \
            'src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" style="width:200px;height:200px"></div>'
    html = f"""<html><head><script>
        var loaded = [];
        function onUiLoaded(cb) {{ loaded.push(cb); }}
        function gradioApp() {{ return document.querySelector('gradio-app'); }}
        </script><script>{js}</script></head>
        <body><gradio-app><div class="vae-lab-sync" style="display:flex">{frame}{frame}</div></gradio-app></body></html>"""
    pg = browser_context.new_page()
    pg.set_content(html)
    pg.mouse.move(100, 100)
    pg.mouse.wheel(0, -300)
    pg.wait_for_timeout(100)
    assert all(_scale(t) == 1.0 for t in _transforms(pg, "img.vae-lab-zoom"))  # not installed yet
    assert pg.evaluate("loaded.length") == 1
    pg.evaluate("loaded.forEach(cb => cb())")  # what A1111 does once its UI is built
    pg.mouse.wheel(0, -300)
    pg.wait_for_function("getComputedStyle(document.querySelector('img.vae-lab-zoom')).transform !== 'none'")
    t = _transforms(pg, "img.vae-lab-zoom")
    assert len(set(t)) == 1 and _scale(t[0]) > 1.0
    pg.close()
