"""`python -m vae_lab encode --image IMG --vae PATH --out FILE.safetensors`: image -> latents."""

from __future__ import annotations

import json

from vae_lab.cli._codec import add_common, check_out, describe, device_arg, tile_arg

HELP = "encode an image to a latent file (diffusion space, 'latent_tensor', decodable with `decode`)"


def add_arguments(parser) -> None:
    parser.add_argument("--image", required=True, metavar="IMG", help="an image file (any size; padded to a multiple of 8)")
    add_common(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="output latent file (.safetensors)")


def run(args) -> int:
    from vae_lab.runtime.engine import check_attention, load_vae
    from vae_lab.files.imaging import load_image
    from vae_lab.files.latents import save_latents

    tile = tile_arg(args.tile)
    check_attention(args.attention, args.attention_window)  # before the (slow) loading
    device = device_arg(args.device)
    check_out(args.out)
    image = load_image(args.image)
    vae = load_vae(args.vae, device=device)
    res = vae.encode(image, precision=args.precision, tile=tile, attention=args.attention,
                     attention_window=args.attention_window)
    path = save_latents(args.out, res.latents, family=vae.family, image_size=res.image_size, vae=vae.name)
    if args.json:
        out = {"out": path, "vae": vae.name, "family": vae.family, "latents_shape": list(res.latents.shape),
               "image_size": list(res.image_size)}
        out.update(res.to_dict())
        print(json.dumps(out))
    else:
        h, w = res.image_size
        print(f"encoded {w}x{h} with {vae.name} ({vae.family}) to {list(res.latents.shape)}: {describe(res)}")
        print(f"wrote {path}")
    return 0
