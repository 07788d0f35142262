"""--lowvram/--medvram (modules/lowvram.py): here only the flag and a counter of full offloads."""

from modules import shared

offloads = 0


def is_needed(sd_model):
    return shared.cmd_opts.lowvram or shared.cmd_opts.medvram or (shared.cmd_opts.medvram_sdxl and getattr(sd_model, "is_sdxl", False))


def apply(sd_model):
    sd_model.lowvram = is_needed(sd_model)


def send_everything_to_cpu():
    global offloads
    offloads += 1


def is_enabled(sd_model):
    return getattr(sd_model, "lowvram", False)
