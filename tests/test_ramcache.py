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


# -- placed copies: the weights in a module's dtype/device, made once, within that memory's budget


def _fp16_loader(path):
    return {k: v.half() for k, v in load_file(path).items()}


def test_placed_is_the_master_itself_when_it_already_matches(files):
    cache = RamCache(8 * MB)
    master = cache.get(files[0], load_file)
    assert cache.placed(files[0], load_file, device="cpu", dtype=torch.float32) is master
    assert cache.stats.placed == 0 and cache.total_bytes == 1 * MB


def test_placed_copy_is_made_once_and_counts_against_ram(files):
    cache = RamCache(8 * MB)
    first = cache.placed(files[0], _fp16_loader, device="cpu", dtype=torch.float32)
    assert first["w"].dtype == torch.float32
    assert torch.equal(first["w"], _sd(0)["w"].half().float())
    assert cache.placed(files[0], _fp16_loader, device="cpu", dtype=torch.float32) is first
    assert cache.stats.placed == 1
    assert cache.total_bytes == MB // 2 + MB  # the fp16 master and its fp32 copy
    assert cache.has_placed(files[0], device="cpu", dtype=torch.float32)
    assert not cache.has_placed(files[0], device="cpu", dtype=torch.bfloat16)


def test_a_changed_file_drops_its_placed_copies(files):
    cache = RamCache(8 * MB)
    old = cache.placed(files[0], _fp16_loader, device="cpu", dtype=torch.float32)
    save_file(_sd(9), str(files[0]))
    os.utime(files[0], (1, 1))
    new = cache.placed(files[0], _fp16_loader, device="cpu", dtype=torch.float32)
    assert new is not old and torch.equal(new["w"], _sd(9)["w"].half().float())
    assert cache.stats.placed == 1


def test_device_copies_have_their_own_budget(files):
    """Copies on an accelerator count against the device budget, not RAM's (the meta device
    stands in for a GPU: it has tensors with sizes but no memory)."""
    cache = RamCache(8 * MB, device_budget_bytes=int(1.5 * MB))
    cache.placed(files[0], load_file, device="meta", dtype=torch.float32)
    assert cache.device_bytes("meta") == MB and cache.total_bytes == MB
    cache.placed(files[1], load_file, device="meta", dtype=torch.float32)  # evicts files[0]'s device copy
    assert cache.device_bytes("meta") == MB
    assert cache.total_bytes == 2 * MB  # both masters stay in RAM
    assert not cache.has_placed(files[0], device="meta", dtype=torch.float32)
    assert cache.stats.device_bytes == {"meta:0": MB}
    cache.set_budget(8 * MB, device_budget_bytes=0)
    assert cache.device_bytes("meta") == 0 and cache.total_bytes == 2 * MB


def test_put_placed_keeps_tensors_a_module_already_holds(files):
    cache = RamCache(8 * MB)
    held = {"w": torch.ones(MB // 4, dtype=torch.float16)}
    assert cache.put_placed(files[2], held)
    loader = CountingLoader()
    assert cache.placed(files[2], loader, device="cpu", dtype=torch.float16) is held  # no disk read
    assert loader.reads == []
    assert cache.has_placed(files[2], device="cpu", dtype=torch.float16)
