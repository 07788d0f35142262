"""`<data>/cache.json`: hashes and metadata cached per title (modules/cache.py, simplified: written at once)."""

import json
import os

from modules.paths_internal import data_path

cache_filename = os.environ.get("SD_WEBUI_CACHE_FILE", os.path.join(data_path, "cache.json"))
cache_data = None


def dump_cache():
    with open(cache_filename + "-", "w", encoding="utf8") as file:
        json.dump(cache_data, file, indent=4, ensure_ascii=False)
    os.replace(cache_filename + "-", cache_filename)


def cache(subsection):
    global cache_data
    if cache_data is None:
        try:
            with open(cache_filename, "r", encoding="utf8") as file:
                cache_data = json.load(file)
        except (FileNotFoundError, ValueError):
            cache_data = {}
    return cache_data.setdefault(subsection, {})


def cached_data_for_file(subsection, title, filename, func):
    existing = cache(subsection)
    ondisk_mtime = os.path.getmtime(filename)
    entry = existing.get(title)
    if entry and ondisk_mtime <= entry.get("mtime", 0):
        return entry.get("value")
    value = func()
    if value is None:
        return None
    existing[title] = {"mtime": ondisk_mtime, "value": value}
    dump_cache()
    return value
