"""Support code shared by the tests and the benchmarks (never imported by `vae_lab`).

- `factories`: seeded random-weight VAEs in the real key layouts (kl-f8 is too big to ship);
- `diffusers_ref`: the bridge to `diffusers.AutoencoderKL`, the oracle our kl-f8 model must equal;
- `httpserver`: a Range-capable, scriptable HTTP server on 127.0.0.1;
- `serve`: the real app (`python -m vae_lab serve`) in a child process, for browser tests.
"""

from pathlib import Path

# madebyollin's real TAEF2 pair (MIT), shipped with the tests: see tests/assets/taef2/SOURCE.md.
TAEF2_DIR = Path(__file__).resolve().parent.parent / "tests" / "assets" / "taef2"
TAEF2_DECODER = TAEF2_DIR / "taef2_decoder.pth"
TAEF2_ENCODER = TAEF2_DIR / "taef2_encoder.pth"
