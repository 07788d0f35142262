"""Getting VAE files: resumable verified transfers, partial files and locks, payload checks, per-host tokens."""
