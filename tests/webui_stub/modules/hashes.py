"""sha256 of model files, cached in cache.json by TITLE (modules/hashes.py).

The cache is keyed by the title alone: a different file under the same title whose mtime is
not newer than the cached entry gets the cached (wrong) hash — the root of the WebUI's
`get_loaded_vae_hash` bug, which uses the title 'vae' for every VAE.
"""

import hashlib
import os.path

import modules.cache
from modules import shared

dump_cache = modules.cache.dump_cache
cache = modules.cache.cache
computed: list[str] = []  # stand-in only: files whose sha256 was computed (not served from cache)


def calculate_sha256(filename):
    hash_sha256 = hashlib.sha256()
    with open(filename, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            hash_sha256.update(chunk)
    return hash_sha256.hexdigest()


def sha256_from_cache(filename, title, use_addnet_hash=False):
    hashes = cache("hashes-addnet") if use_addnet_hash else cache("hashes")
    try:
        ondisk_mtime = os.path.getmtime(filename)
    except FileNotFoundError:
        return None
    if title not in hashes:
        return None
    cached_sha256 = hashes[title].get("sha256", None)
    cached_mtime = hashes[title].get("mtime", 0)
    if ondisk_mtime > cached_mtime or cached_sha256 is None:
        return None
    return cached_sha256


def sha256(filename, title, use_addnet_hash=False):
    hashes = cache("hashes-addnet") if use_addnet_hash else cache("hashes")
    value = sha256_from_cache(filename, title, use_addnet_hash)
    if value is not None:
        return value
    if shared.cmd_opts.no_hashing:
        return None
    if use_addnet_hash:
        with open(filename, "rb") as file:
            value = addnet_hash_safetensors(file)
    else:
        value = calculate_sha256(filename)
    computed.append(filename)
    hashes[title] = {"mtime": os.path.getmtime(filename), "sha256": value}
    dump_cache()
    return value


def addnet_hash_safetensors(b):
    hash_sha256 = hashlib.sha256()
    b.seek(0)
    n = int.from_bytes(b.read(8), "little")
    b.seek(n + 8)
    for chunk in iter(lambda: b.read(1024 * 1024), b""):
        hash_sha256.update(chunk)
    return hash_sha256.hexdigest()
