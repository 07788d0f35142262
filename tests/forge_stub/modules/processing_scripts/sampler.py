"""Built-in processing script (modules/processing_scripts/sampler.py): unchanged in Forge."""

from modules._a1111 import inherit

inherit(globals(), "processing_scripts.sampler")
