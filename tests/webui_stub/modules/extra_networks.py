"""Only what VAE resolution uses from modules/extra_networks.py: the user metadata of a model file."""

import json
import os

from modules import errors


def get_user_metadata(filename, lister=None):
    """The `<file without extension>.json` next to `filename` (the card editor writes it), or {}."""
    if filename is None:
        return {}
    basename, ext = os.path.splitext(filename)
    metadata_filename = basename + '.json'
    metadata = {}
    try:
        exists = lister.exists(metadata_filename) if lister else os.path.exists(metadata_filename)
        if exists:
            with open(metadata_filename, "r", encoding="utf8") as file:
                metadata = json.load(file)
    except Exception as e:
        errors.display(e, f"reading extra network user metadata from {metadata_filename}")
    return metadata


def activate(p, extra_network_data):
    pass


def deactivate(p, extra_network_data):
    pass


def parse_prompts(prompts):
    return prompts, {}
