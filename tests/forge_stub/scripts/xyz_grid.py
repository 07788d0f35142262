"""Forge's scripts/xyz_grid.py: the same as A1111's where a VAE is concerned.

Faithful: the "VAE" axis (`apply_vae`: `p.override_settings['sd_vae'] = find_vae(x)`, cost 0.7)
is unchanged from A1111, so in Forge, where an `sd_vae` override loads nothing, every cell
of a VAE axis is decoded by the same VAE (Forge issue 2920: identical cells).
"""

from modules._a1111 import inherit

inherit(globals(), "scripts/xyz_grid", root=True)
