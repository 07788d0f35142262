"""What a VAE is: content hashes and weights ids, the curated catalog, latent families, compatibility with a model."""
