"""Getting VAE files: `transfer.download()` (the attempt loop and the public API), `http` (per-hop
requests, typed failures, the host-policy hook), `body` (decoding, resume headers), `partial`
(hidden partial files, locks, publication), `publish` (identify, convert, name), `checks` (names,
payloads, free space), `tokens` (which token goes to which host), `result`, `job` (a UI's thread)."""
