"""The tab's handlers (the same in `serve` and inside the WebUI) fed what a hostile client sends:
paths instead of the ids the server gave out, huge images and latents, sizes with no bound."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vae_folder import BROKEN, KL_NAMES, make_vae_folder
from vae_lab.errors import VaeLabError
from vae_lab.limits import Limits, TooLarge
from vae_lab.ui import tab as ui
from vae_lab.ui.vae_ids import UNKNOWN, UnknownVae, vae_id


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory, taef2_pair):
    return make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)


@pytest.fixture()
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_the_page_gets_ids_not_paths(vae_dir):
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)]))
    choices, refs, _ = logic.choices_for(ui.SOURCE_IMAGE)
    values = [v for _, v in choices]
    assert len(values) == len(set(values)) == 4  # TAEF2 pair as one entry, two kl, the broken one
    assert all(v.startswith("vae-") and str(vae_dir) not in v and "/" not in v for v in values)
    assert not any(str(vae_dir) in r for r in refs)


def test_a_path_from_the_client_is_never_loaded(vae_dir, tmp_path, photo, monkeypatch):
    """A path sent instead of an id: one message, the same whether the file exists, is a real VAE
    outside the list, or is nothing at all; no VAE is loaded."""
    from safetensors.torch import save_file

    from factories import TINY_KL, random_kl_state_dict
    from vae_lab.compare import runner

    outside = tmp_path / "elsewhere.safetensors"  # a valid VAE, but not in the app's list
    save_file(random_kl_state_dict(TINY_KL, seed=9), str(outside))
    loaded = []
    monkeypatch.setattr(runner.VaeCache, "load", lambda self, path, device=None: loaded.append(path))
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)]))
    messages = []
    for sent in (str(vae_dir / KL_NAMES[0]), str(outside), "/etc/passwd", str(tmp_path / "missing.pt"),
                 vae_id(outside), "vae-0000", "../../etc/shadow", None):
        with pytest.raises(UnknownVae) as err:
            logic.run(ui.SOURCE_IMAGE, photo, None, [vae_id(vae_dir / KL_NAMES[1]), sent], ui.ENCODER_FIRST,
                      "fp32", "off", None)
        messages.append(str(err.value))
    assert set(messages) == {UNKNOWN} and loaded == []


def test_an_id_of_the_list_still_runs(vae_dir, photo):
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)]))
    *_, status, result = logic.run(ui.SOURCE_IMAGE, photo, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST,
                                   "fp32", "off", None)
    assert result.outcomes[0].image is not None and "1 of 1 VAEs decoded" in status


def test_a_file_deleted_after_listing_is_unknown_too(tmp_path, photo):
    from safetensors.torch import save_file

    from factories import TINY_KL, random_kl_state_dict

    f = tmp_path / "gone.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=3), str(f))
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(tmp_path)]))
    the_id = logic.choices_for(ui.SOURCE_IMAGE)[0][0][1]
    f.unlink()
    with pytest.raises(UnknownVae, match="Refresh list"):
        logic.run(ui.SOURCE_IMAGE, photo, None, [the_id], ui.ENCODER_FIRST, "fp32", "off", None)


def test_a_reference_outside_the_list_is_refused(vae_dir):
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)]))
    with pytest.raises(VaeLabError, match="no longer in the VAE folder"):
        logic.reference_path(str(vae_dir / KL_NAMES[0]))


# --------------------------------------------------------------------------- sizes


def test_huge_latents_are_refused_before_any_decode(vae_dir):
    """512×512 latents took 141 s on a CPU (attention is quadratic in the area): refused at once."""
    import torch

    from vae_lab.runtime.last_latents import LastLatents

    last = LastLatents(torch.zeros(1, 4, 512, 512), "sd1")
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)], last_latents=lambda: last))
    t0 = time.monotonic()
    with pytest.raises(TooLarge) as err:
        logic.run(ui.SOURCE_LAST, None, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST, "fp32", "auto", None)
    assert time.monotonic() - t0 < 5
    assert "512×512" in str(err.value) and "limit" in str(err.value) and "\n" not in str(err.value)


def test_huge_images_are_refused_and_the_limit_is_the_operators(vae_dir, photo):
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)]))
    big = np.zeros((2100, 2100, 3), dtype=np.uint8)
    with pytest.raises(TooLarge, match="2100×2100"):
        logic.run(ui.SOURCE_IMAGE, big, None, [vae_id(vae_dir / BROKEN)], ui.ENCODER_FIRST, "fp32", "auto", None)
    strict = ui.TabLogic(ui.UiContext(vae_dirs=[str(vae_dir)], limits=Limits(max_pixels=32 * 32)))
    with pytest.raises(TooLarge, match="64×64"):
        strict.run(ui.SOURCE_IMAGE, photo, None, [vae_id(vae_dir / KL_NAMES[0])], ui.ENCODER_FIRST, "fp32", "off", None)


def test_the_limits_are_one_set_of_numbers(monkeypatch):
    lim = Limits()
    assert lim.max_pixels == 2048 * 2048 and lim.max_latent_area == 256 * 256
    lim.check_latents((1, 4, 256, 256))
    with pytest.raises(TooLarge):
        lim.check_latents((1, 4, 257, 256))
    monkeypatch.setenv("VAE_LAB_MAX_PIXELS", str(4096 * 4096))
    assert Limits.default().max_latent_area == 512 * 512
    monkeypatch.setenv("VAE_LAB_MAX_PIXELS", "lots")
    with pytest.raises(VaeLabError, match="VAE_LAB_MAX_PIXELS"):
        Limits.default()


def test_eval_size_has_an_upper_bound(tmp_path, capsys):
    """`eval --size 100000` was an OOM kill at 15 GB: now exit 2 with one line, before any image."""
    from vae_lab.cli.main import main

    rc = main(["eval", "--images", str(tmp_path), "--vae", "x.safetensors", "--size", "100000"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--size 100000" in err and "limit" in err and "\n" not in err and "Traceback" not in err
    rc = main(["eval", "--images", str(tmp_path), "--vae", "x.safetensors", "--size", "4096", "--max-pixels", "1000"])
    assert rc == 2 and "--max-pixels" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--share", "yes"], "not offered"),
    (["--max-pixels", "10"], "--max-pixels"),
    (["--concurrency", "0"], "--concurrency"),
    (["--download-minutes", "0"], "--download-minutes"),
])
def test_serve_refuses_unsafe_or_senseless_options(vae_dir, capsys, argv, words):
    from vae_lab.cli.main import main

    rc = main(["serve", "--vae-dir", str(vae_dir), "--port", "1", *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and "\n" not in err


# --------------------------------------------------------------------------- one user cannot hold the app


def test_the_app_queue_runs_more_than_one_comparison_at_a_time(vae_dir):
    from vae_lab.ui import gradio_compat as compat
    from vae_lab.ui.app import build_app

    demo = build_app(ui.UiContext(vae_dirs=[str(vae_dir)]), concurrency=3)
    if compat.gradio_major() < 4:
        assert demo._queue.max_thread_count == 3
    else:
        assert demo._queue.default_concurrency_limit == 3
    assert demo.api_open is False  # queued events only through the queue
