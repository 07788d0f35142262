"""Which access token goes to which host: Hugging Face tokens only to Hugging Face, Civitai tokens
only to Civitai, never over plain HTTP, never to a CDN a download is redirected to.

The downloader follows redirects itself and asks `TokenPolicy.header_for(url)` at every hop, so a
token cannot ride along to another host (requests would keep it on same-host redirects and on
http→https upgrades; here each hop is judged on its own). Tokens are never logged: `mask()` is the
only way they appear in text.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Exact host names (no subdomains: the HF CDN hosts such as cdn-lfs.huggingface.co or
# cas-bridge.xethub.hf.co serve pre-signed URLs and must not see the token).
DEFAULT_HOSTS: dict[str, tuple[str, ...]] = {
    "hf": ("huggingface.co", "hf.co", "www.huggingface.co"),
    "civitai": ("civitai.com", "www.civitai.com"),
}

ENV_VARS: dict[str, tuple[str, ...]] = {
    "hf": ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"),
    "civitai": ("CIVITAI_API_TOKEN",),
}

WHERE_TO_SET = {
    "hf": "set HF_TOKEN or Settings → VAE Lab → Hugging Face token (https://huggingface.co/settings/tokens)",
    "civitai": "set CIVITAI_API_TOKEN or Settings → VAE Lab → Civitai API key (civitai.com → Account settings → API keys)",
}


def tokens_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    found = {}
    for service, names in ENV_VARS.items():
        for name in names:
            value = (env.get(name) or "").strip()
            if value:
                found[service] = value
                break
    return found


def mask(token: str | None) -> str:
    return "<none>" if not token else "<set>"


@dataclass(frozen=True)
class TokenPolicy:
    """Tokens per service and the hosts each service's token may be sent to."""

    tokens: Mapping[str, str] = field(default_factory=dict)
    hosts: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_HOSTS))
    require_https: bool = True  # only tests on loopback turn this off

    @classmethod
    def from_settings(cls, hf: str | None = None, civitai: str | None = None, **kw) -> TokenPolicy:
        """Tokens from settings, falling back to the environment variables."""
        tokens = tokens_from_env()
        if hf and hf.strip():
            tokens["hf"] = hf.strip()
        if civitai and civitai.strip():
            tokens["civitai"] = civitai.strip()
        return cls(tokens=tokens, **kw)

    def service_for(self, url: str) -> str | None:
        """The service whose host serves `url` ("hf", "civitai") or None."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        for service, hosts in self.hosts.items():
            if host in hosts:
                return service
        return None

    def token_for(self, url: str) -> str | None:
        parts = urlsplit(url)
        if self.require_https and parts.scheme != "https":
            return None
        if parts.username or parts.password:
            return None
        service = self.service_for(url)
        return self.tokens.get(service) if service else None

    def header_for(self, url: str) -> dict[str, str]:
        token = self.token_for(url)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def __repr__(self) -> str:  # never show the tokens themselves
        shown = {k: mask(v) for k, v in self.tokens.items()}
        return f"TokenPolicy(tokens={shown}, hosts={dict(self.hosts)}, require_https={self.require_https})"
