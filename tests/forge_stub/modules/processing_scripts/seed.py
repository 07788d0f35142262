"""Built-in processing script (modules/processing_scripts/seed.py): unchanged in Forge."""

from modules._a1111 import inherit

inherit(globals(), "processing_scripts.seed")
