"""Stop reaches inside the running decode: the tab hands its per-session cancel flag to the
engine's `decode`/`encode`, which checks it between tiles and blocks (`errors.Cancelled`)."""

from __future__ import annotations

import inspect
import threading

import numpy as np
import pytest

from vae_folder import KL_NAMES, make_vae_folder
from vae_lab.runtime.engine import Vae
from vae_lab.ui import tab as ui
from vae_lab.ui.vae_ids import vae_id

pytestmark = pytest.mark.skipif("cancel" not in inspect.signature(Vae.decode).parameters,
                                reason="the engine's decode takes no cancel yet (the perf branch adds it)")


class SetOnSecondLook(threading.Event):
    """Not set when the runner looks before the step; set from the first look inside the decode on."""

    def __init__(self):
        super().__init__()
        self.looks = 0

    def is_set(self):
        self.looks += 1
        return self.looks > 1 or super().is_set()


def test_stop_stops_the_decode_that_is_running(tmp_path_factory, taef2_pair, monkeypatch):
    import torch

    from vae_lab.runtime.last_latents import LastLatents

    folder = make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)
    last = LastLatents(torch.randn(1, 4, 16, 16), "sd1")
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)], last_latents=lambda: last))
    flag = SetOnSecondLook()
    monkeypatch.setattr(logic.cancels, "fresh", lambda key: flag)
    *_, status, result = logic.run(ui.SOURCE_LAST, None, None, [vae_id(folder / KL_NAMES[0]), vae_id(folder / KL_NAMES[1])],
                                   ui.ENCODER_FIRST, "fp32", "off", None, session="s")
    first, second = result.outcomes
    # the first decode was already running when Stop came: it stopped inside, with no image
    assert first.image is None and any(w in (first.error or "").lower() for w in ("cancel", "stopped"))
    assert second.image is None and result.cancelled and "Cancelled after 0 of 2 VAEs" in status
    assert flag.looks >= 2


def test_a_run_without_stop_is_untouched(tmp_path_factory, taef2_pair):
    import torch

    from vae_lab.runtime.last_latents import LastLatents

    folder = make_vae_folder(tmp_path_factory.mktemp("models") / "VAE", taef2_pair)
    last = LastLatents(torch.randn(1, 4, 8, 8), "sd1")
    logic = ui.TabLogic(ui.UiContext(vae_dirs=[str(folder)], last_latents=lambda: last))
    *_, status, result = logic.run(ui.SOURCE_LAST, None, None, [vae_id(folder / KL_NAMES[0])],
                                   ui.ENCODER_FIRST, "fp32", "off", None, session="s")
    assert result.outcomes[0].image is not None and not result.cancelled
    assert isinstance(result.outcomes[0].image, np.ndarray)
