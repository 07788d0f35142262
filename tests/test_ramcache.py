"""The RAM cache: disk read once, LRU eviction within the byte budget, stale files re-read."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from vae_lab.runtime.ramcache import RamCache, state_dict_bytes

MB = 1024 * 1024


def _sd(seed: int, mb: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(mb * MB // 4, generator=g)}


class CountingLoader:
    def __init__(self):
        self.reads: list[str] = []

    def __call__(self, path):
        self.reads.append(os.path.basename(path))
        return load_file(path)


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"vae{i}.safetensors"
        save_file(_sd(i), str(p))
        paths.append(p)
    return paths


def test_second_get_does_not_read_the_disk(files):
    cache, loader = RamCache(8 * MB), CountingLoader()
    first = cache.get(files[0], loader)
    second = cache.get(files[0], loader)
    assert loader.reads == ["vae0.safetensors"]
    assert second is first
    assert torch.equal(first["w"], _sd(0)["w"])
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


def test_lru_eviction_stays_within_budget(files):
    cache, loader = RamCache(int(2.5 * MB)), CountingLoader()
    cache.get(files[0], loader)
    cache.get(files[1], loader)
    cache.get(files[0], loader)  # 0 is now the most recently used
    cache.get(files[2], loader)  # evicts 1, the least recently used
    assert cache.total_bytes <= cache.budget
    assert files[0] in cache and files[2] in cache and files[1] not in cache
    assert cache.stats.evictions == 1
    cache.get(files[1], loader)
    assert loader.reads == ["vae0.safetensors", "vae1.safetensors", "vae2.safetensors", "vae1.safetensors"]


def test_shrinking_budget_evicts_at_once(files):
    cache, loader = RamCache(8 * MB), CountingLoader()
    for f in files:
        cache.get(f, loader)
    assert cache.total_bytes == 4 * MB
    cache.set_budget(2 * MB)
    assert cache.total_bytes == 2 * MB
    assert [os.path.basename(p) for p in cache.paths()] == ["vae2.safetensors", "vae3.safetensors"]


def test_entry_larger_than_budget_is_returned_not_kept(files):
    cache, loader = RamCache(MB // 2), CountingLoader()
    sd = cache.get(files[0], loader)
    assert state_dict_bytes(sd) == MB
    assert cache.total_bytes == 0 and files[0] not in cache
    cache.get(files[0], loader)
    assert len(loader.reads) == 2


def test_overwritten_file_is_read_again(files):
    cache, loader = RamCache(8 * MB), CountingLoader()
    cache.get(files[0], loader)
    save_file(_sd(99), str(files[0]))
    st = os.stat(files[0])
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))  # coarse-mtime filesystems
    sd = cache.get(files[0], loader)
    assert torch.equal(sd["w"], _sd(99)["w"])
    assert loader.reads == ["vae0.safetensors", "vae0.safetensors"]
    assert cache.total_bytes == MB  # the stale entry was dropped, not kept beside the new one


def test_missing_file_raises_and_caches_nothing(tmp_path):
    cache = RamCache(MB)
    with pytest.raises(FileNotFoundError):
        cache.get(tmp_path / "nope.safetensors", CountingLoader())
    assert cache.total_bytes == 0


def test_materialize_owns_its_memory(files):
    from vae_lab.runtime.ramcache import materialize

    mapped = load_file(str(files[0]))
    owned = materialize(mapped)
    assert torch.equal(owned["w"], mapped["w"])
    assert owned["w"].data_ptr() != mapped["w"].data_ptr()
