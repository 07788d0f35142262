"""Byte counts for people: the one formatter behind every size and memory figure VAE Lab shows."""

from __future__ import annotations

_DECIMAL = (1000, ("kB", "MB", "GB"))  # file sizes, as file managers and browsers show them
_BINARY = (1024, ("KiB", "MiB", "GiB"))  # memory, as torch and the OS count it


def format_bytes(n: float | None, *, binary: bool = False, unknown: str = "n/a") -> str:
    """"335 MB", "1.2 kB", "512 bytes" ("45 MiB" with `binary`); `unknown` for None.

    Three significant figures at most: one decimal below 10 units, none above.
    """
    if n is None:
        return unknown
    base, units = _BINARY if binary else _DECIMAL
    if n < base:
        return "1 byte" if n == 1 else f"{n:.0f} bytes"
    value = float(n)
    for unit in units:
        value /= base
        if value < base or unit == units[-1]:
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
