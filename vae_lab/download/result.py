"""What a download returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DownloadResult:
    path: str
    filename: str
    sha256: str                     # of the bytes downloaded (for a converted pickle: of the pickle)
    size: int
    url: str | None                 # the source URL (query stripped), None when already present
    verified: bool                  # the SHA-256 matched an expected one
    expected_from: str | None       # where the expected SHA-256 came from: "catalog", "argument", "server"
    already_present: bool = False
    resumed_from: int = 0           # bytes already on disk when the transfer (re)started
    attempts: int = 1
    seconds: float = 0.0
    entry: Any = None               # the catalog entry the bytes are (by SHA-256), if any
    info: Any = None                # vae_lab.identity.identify.VaeInfo, when identification ran
    info_error: str | None = None
    converted_from: str | None = None  # the downloaded pickle's name, converted to safetensors (never published)
    warnings: list[str] = field(default_factory=list)

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    def to_dict(self) -> dict[str, Any]:
        info = self.info.to_dict() if self.info is not None else None
        return {
            "path": self.path, "filename": self.filename, "sha256": self.sha256,
            "short_hash": self.short_hash, "size": self.size, "url": self.url, "verified": self.verified,
            "expected_from": self.expected_from, "already_present": self.already_present,
            "resumed_from": self.resumed_from, "attempts": self.attempts, "seconds": round(self.seconds, 3),
            "known": self.entry.id if self.entry else None,
            "known_name": self.entry.name if self.entry else None,
            "family": (self.entry.family if self.entry else None) or (info or {}).get("family"),
            "info": info, "info_error": self.info_error, "converted_from": self.converted_from,
            "warnings": list(self.warnings),
        }
