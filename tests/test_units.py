from __future__ import annotations

from vae_lab.units import format_bytes


def test_file_sizes_are_decimal_like_browsers_and_file_managers():
    assert [format_bytes(n) for n in (1, 512, 1234, 5_000_000, 335_000_000, 12_000_000_000)] == [
        "1 byte", "512 bytes", "1.2 kB", "5.0 MB", "335 MB", "12 GB"]
    assert format_bytes(None) == "n/a" and format_bytes(None, unknown="an unknown size") == "an unknown size"


def test_memory_is_binary():
    assert [format_bytes(n, binary=True) for n in (512, 3 * 2**20 // 2, 45 * 2**20, 3 * 2**30)] == [
        "512 bytes", "1.5 MiB", "45 MiB", "3.0 GiB"]
