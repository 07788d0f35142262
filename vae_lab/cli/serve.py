"""`python -m vae_lab serve`: the comparison tab as a standalone web app."""

from __future__ import annotations

import os

from vae_lab.errors import VaeLabError
from vae_lab.limits import DEFAULT_DOWNLOAD_SECONDS, DEFAULT_MAX_PIXELS, ENV_MAX_PIXELS, Limits

HELP = "start the comparison app in the browser (standalone, without the WebUI)"


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7861, help="port (default 7861)")
    parser.add_argument("--vae-dir", action="append", default=[], metavar="DIR",
                        help="folder of VAE files (repeatable; default ./models/VAE when it exists)")
    parser.add_argument("--download-dir", metavar="DIR", help="where 'Get VAEs' saves files (default: the first --vae-dir)")
    parser.add_argument("--device", help="torch device for encode/decode, e.g. cuda, cuda:1, cpu (default: the engine's choice)")
    parser.add_argument("--share", choices=["no", "yes"], default="no",
                        help="public Gradio share links are not offered: they would give anyone on the internet "
                             "this app (downloads into your VAE folder included); use an SSH tunnel instead")
    parser.add_argument("--inbrowser", action="store_true", help="open the page in the default browser")
    parser.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                        help="a host name the page may be opened by, besides IP addresses and localhost "
                             "(repeatable; e.g. this machine's LAN name with --host 0.0.0.0)")
    parser.add_argument("--allow-local-downloads", action="store_true",
                        help="let 'Get VAEs' download from local and private addresses too (default: public hosts only)")
    parser.add_argument("--max-pixels", type=int, metavar="N",
                        help=f"largest image (width × height) a comparison accepts; latents up to N/64 "
                             f"(default {DEFAULT_MAX_PIXELS:,}, or ${ENV_MAX_PIXELS})")
    parser.add_argument("--concurrency", type=int, default=2, metavar="N",
                        help="comparisons that run at the same time (default 2); more wait in the queue")
    parser.add_argument("--download-minutes", type=float, default=DEFAULT_DOWNLOAD_SECONDS / 60, metavar="M",
                        help=f"stop a 'Get VAEs' download that takes longer (default {DEFAULT_DOWNLOAD_SECONDS // 60:g})")


def run(args) -> int:
    dirs = list(args.vae_dir)
    if not dirs:
        default = os.path.join("models", "VAE")
        if not os.path.isdir(default):
            raise VaeLabError("no VAE folder: pass --vae-dir DIR (./models/VAE does not exist here)")
        dirs = [default]
    for d in dirs:
        if not os.path.isdir(d):
            raise VaeLabError(f"--vae-dir {d}: not a folder")
    if args.download_dir and not os.path.isdir(args.download_dir):
        raise VaeLabError(f"--download-dir {args.download_dir}: not a folder")
    if not 0 < args.port < 65536:
        raise VaeLabError(f"--port {args.port}: not a port number")
    if args.share == "yes":
        raise VaeLabError("--share yes is not offered: a public link would give anyone this app; "
                          "reach it from elsewhere with an SSH tunnel (ssh -L 7861:127.0.0.1:7861 host)")
    if args.max_pixels is not None and args.max_pixels < 64 * 64:
        raise VaeLabError(f"--max-pixels {args.max_pixels}: must be at least {64 * 64} (64×64)")
    if args.concurrency < 1:
        raise VaeLabError(f"--concurrency {args.concurrency}: must be at least 1")
    if not args.download_minutes > 0:
        raise VaeLabError(f"--download-minutes {args.download_minutes:g}: must be more than 0")
    limits = Limits(args.max_pixels) if args.max_pixels is not None else Limits.default()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from vae_lab.ui.app import check_port, launch
    from vae_lab.download.policy import HostPolicy
    from vae_lab.ui.tab import UiContext

    context = UiContext(vae_dirs=[os.path.abspath(d) for d in dirs],
                        download_dir=os.path.abspath(args.download_dir) if args.download_dir else None,
                        device=args.device, limits=limits,
                        download_policy=HostPolicy(allow_local=args.allow_local_downloads),
                        download_seconds=args.download_minutes * 60)
    check_port(args.host, args.port)  # a bad host or busy port: the error alone, before any warning
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can use the app")
    launch(context, host=args.host, port=args.port, inbrowser=args.inbrowser,
           allowed_hosts=args.allow_host, concurrency=args.concurrency)
    return 0
