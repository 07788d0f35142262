"""Small JSON state files kept between runs (per-checkpoint preferences)."""
