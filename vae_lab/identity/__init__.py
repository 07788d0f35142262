"""What a VAE is: content hashes and weights ids, the curated catalog, latent families, compatibility with a model."""


def field_of(obj, name: str):
    """`obj.name`, or `obj[name]` for a dict: catalog entries and VAE infos reach the UI, the
    downloader and `identify` as dataclasses or, from JSON and tests, as their dict form."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
