"""Where the extension lives: its root folder (scripts/, javascript/, style.css beside vae_lab/)."""

from pathlib import Path

EXTENSION_ROOT = Path(__file__).resolve().parent.parent
