"""The comparison app in a real browser: `python -m vae_lab serve` in a subprocess, driven by
Debian's Chromium through Playwright. Only 127.0.0.1 is reachable; every other request is aborted.

Set VAE_LAB_SCREENSHOT=path to also write the README screenshot of the tab.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, taef2_pair, sync_playwright):
    folder = make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)
    port = _free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               VAE_LAB_FAST_BF16="0")  # "auto" is fp32 in the app, on any CPU: the captions say fp32
    log = tmp_path_factory.mktemp("log") / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vae_lab", "serve", "--port", str(port), "--vae-dir", str(folder)],
                                cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not answer in 60 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser_context(sync_playwright):
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1500, "height": 1100})
        ctx.route(re.compile(r".*"), lambda route: route.continue_()
                  if re.match(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]", route.request.url)
                  or route.request.url.startswith("data:") else route.abort())
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


def test_compare_in_browser(page, photo):
    """Upload a photo, pick VAEs, run: images, labels, failures, metrics, downloads, synced zoom."""
    page.set_input_files("#vae_lab_image input[type=file]", str(photo))
    page.wait_for_selector("#vae_lab_image img")
    page.get_by_label(re.compile(r"taef2_decoder\.pth")).check()
    for name in KL_NAMES:
        page.get_by_label(re.compile(re.escape(name))).check()
    page.get_by_label(re.compile(re.escape(BROKEN))).check()
    page.get_by_label("Each VAE's own encoder").check()
    # record what Gradio's progress bars say, and on how many outputs at once, while it runs
    page.evaluate("""() => { window.vaeLabProgress = {texts: [], most: 0}; new MutationObserver(() => {
        const bars = document.querySelectorAll('.progress-level');
        window.vaeLabProgress.most = Math.max(window.vaeLabProgress.most, bars.length);
        bars.forEach(b => window.vaeLabProgress.texts.push(b.textContent.trim()));
      }).observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    page.click("#vae_lab_run")

    page.wait_for_selector("#vae_lab_view .vae-lab-error", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#vae_lab_view img.vae-lab-zoom').length >= 4",
                           timeout=60_000)
    cells = page.locator("#vae_lab_view figure.vae-lab-cell")
    assert cells.count() == 5  # reference + TAEF2 + two kl + the broken one
    captions = cells.all_inner_texts()
    assert captions[0].startswith("Reference") or "reference" in captions[0]
    for name in ("taef2_decoder.pth", *KL_NAMES):
        cap = next(c for c in captions if name in c)
        assert "fp32" in cap and "decode" in cap and "peak" in cap and "PSNR" in cap
    broken = page.locator("#vae_lab_view figure.vae-lab-failed")
    assert broken.count() == 1 and BROKEN in broken.inner_text()
    # every decoded image really is the photo's size
    sizes = page.eval_on_selector_all("#vae_lab_view img.vae-lab-zoom", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert all(s == [192, 192] for s in sizes)

    # one progress bar, over the view, naming each step as it runs
    progress = page.evaluate("window.vaeLabProgress")
    assert progress["most"] == 1
    for step in ("taef2_decoder.pth", *KL_NAMES):
        assert any(t.startswith(f"decoding with {step}") for t in progress["texts"]), (step, set(progress["texts"]))

    page.wait_for_function("document.querySelector('#vae_lab_metrics').innerText.includes('PSNR')")
    table = page.locator("#vae_lab_metrics").first.inner_text()
    assert "PSNR" in table and "SSIM" in table and "LPIPS" in table
    for name in ("taef2_decoder.pth", *KL_NAMES):
        assert name in table
    files = re.sub(r"\s+", "", page.locator("#vae_lab_files").first.inner_text())  # Gradio 4 splits name/suffix
    for f in ("vae_lab_metrics.csv", "vae_lab_metrics.json", "vae_lab_grid.png"):
        assert f in files

    # --- synchronized zoom: one wheel on the first image zooms them all, around the cursor
    imgs = "#vae_lab_view img.vae-lab-zoom"
    before = _transforms(page, imgs)
    assert all(_scale(t) == 1.0 for t in before)
    box = page.locator("#vae_lab_view .vae-lab-frame").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"getComputedStyle(document.querySelector('{imgs}')).transform !== 'none'")
    zoomed = _transforms(page, imgs)
    assert len(set(zoomed)) == 1 and _scale(zoomed[0]) > 1.0
    # drag-pan on another image moves every image the same way
    box2 = page.locator("#vae_lab_view .vae-lab-frame").nth(2).bounding_box()
    cx, cy = box2["x"] + box2["width"] / 2, box2["y"] + box2["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 25, cy + 15, steps=3)
    page.mouse.up()
    panned = _transforms(page, imgs)
    assert len(set(panned)) == 1 and panned[0] != zoomed[0]
    # double-click resets all
    page.mouse.dblclick(cx, cy)
    assert all(_scale(t) == 1.0 for t in _transforms(page, imgs))

    # --- the pair view: before/after slider and difference map
    page.click("#vae_lab_pair_run")
    page.wait_for_selector("#vae_lab_pair .vae-lab-ba-range", timeout=30_000)
    assert page.locator("#vae_lab_pair img.vae-lab-zoom").count() == 3
    page.eval_on_selector("#vae_lab_pair .vae-lab-ba-range",
                          "el => { el.value = 20; el.dispatchEvent(new Event('input', {bubbles: true})); }")
    pos = page.eval_on_selector("#vae_lab_pair .vae-lab-ba", "el => el.style.getPropertyValue('--vae-lab-pos')")
    assert pos.strip() == "20%"

    # zoom groups are independent: zooming the side-by-side view leaves the pair view alone
    frame = page.locator("#vae_lab_view .vae-lab-frame").nth(1).bounding_box()
    page.mouse.move(frame["x"] + frame["width"] * 0.45, frame["y"] + frame["height"] * 0.3)
    page.mouse.wheel(0, -400)
    page.wait_for_function(f"getComputedStyle(document.querySelector('{imgs}')).transform !== 'none'")
    assert len(set(_transforms(page, imgs))) == 1
    assert all(_scale(t) == 1.0 for t in _transforms(page, "#vae_lab_pair img.vae-lab-zoom"))

    shot = os.environ.get("VAE_LAB_SCREENSHOT")
    if shot:  # the README picture: zoomed in on the face, the slider part-way
        for _ in range(3):
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(50)
        page.mouse.move(0, 0)
        page.screenshot(path=shot, full_page=True)


def test_latents_disable_incompatible_vaes(page, tmp_path):
    """With a 32-channel latent file, the 4-channel VAEs are struck through and cannot be ticked."""
    import torch

    lat = tmp_path / "flux2.pt"
    torch.save({"latent_tensor": torch.randn(1, 32, 8, 8)}, lat)
    page.get_by_label("Latent file").check()
    page.set_input_files("#vae_lab_latent_file input[type=file]", str(lat))
    page.wait_for_selector("#vae_lab_vaes label.vae-lab-incompatible", timeout=30_000)
    state = page.eval_on_selector_all(
        "#vae_lab_vaes label", "ls => ls.map(l => [l.textContent.trim(), l.querySelector('input').disabled])")
    by_name = {text.lstrip("✕ ").split(" · ")[0]: disabled for text, disabled in state}
    assert by_name["taef2_decoder.pth"] is False
    assert all(by_name[n] is True for n in KL_NAMES)
    assert "flux2.pt: 1×32×8×8" in page.locator("#vae_lab_latent_note").first.inner_text()
    assert not page.locator("#vae_lab_image").is_visible()
    assert page.locator("#vae_lab_reference").is_visible()


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
