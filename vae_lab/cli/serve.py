"""`python -m vae_lab serve`: the comparison tab as a standalone web app."""

from __future__ import annotations

import os

from vae_lab.errors import VaeLabError

HELP = "start the comparison app in the browser (standalone, without the WebUI)"


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7861, help="port (default 7861)")
    parser.add_argument("--vae-dir", action="append", default=[], metavar="DIR",
                        help="folder of VAE files (repeatable; default ./models/VAE when it exists)")
    parser.add_argument("--download-dir", metavar="DIR", help="where 'Get VAEs' saves files (default: the first --vae-dir)")
    parser.add_argument("--device", help="torch device for encode/decode, e.g. cuda, cuda:1, cpu (default: the engine's choice)")
    parser.add_argument("--share", choices=["no", "yes"], default="no",
                        help="'yes' opens a public Gradio share link (default no)")
    parser.add_argument("--inbrowser", action="store_true", help="open the page in the default browser")


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
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from vae_lab.ui.app import check_port, launch, page_url
    from vae_lab.ui.tab import UiContext

    context = UiContext(vae_dirs=[os.path.abspath(d) for d in dirs],
                        download_dir=os.path.abspath(args.download_dir) if args.download_dir else None,
                        device=args.device)
    check_port(args.host, args.port)  # a bad host or busy port: the error alone, before any warning
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this address can use the app")
    print(f"VAE Lab: open {page_url(args.host, args.port)} in a browser (Ctrl+C stops it)", flush=True)
    launch(context, host=args.host, port=args.port, share=args.share == "yes", inbrowser=args.inbrowser)
    return 0
