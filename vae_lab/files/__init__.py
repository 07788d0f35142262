"""VAE files on disk: safe container readers, key layouts, loading with validation, conversion, latent and image files."""
