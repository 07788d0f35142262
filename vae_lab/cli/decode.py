"""`python -m vae_lab decode --latents FILE --vae PATH --out IMAGE.png`: latents -> image."""

from __future__ import annotations

import json

from vae_lab.cli._codec import add_common, check_out, describe, device_arg, tile_arg

HELP = "decode a latent file (diffusion space, .safetensors/.latent/.pt) to an image with a VAE"


def add_arguments(parser) -> None:
    parser.add_argument("--latents", required=True, metavar="FILE", help="latent file: 'latent_tensor' or a single tensor")
    add_common(parser)
    parser.add_argument("--out", required=True, metavar="IMAGE", help="output image (.png, .jpg, .webp); a batch adds -0, -1, …")
    parser.add_argument("--family", default=None,
                        help="latent family to assume (sd1, sdxl, sd3, flux, flux2) when the VAE or the file cannot tell")


def pick_family(vae, file_family, forced):
    """The latent family to decode with: --family, else the VAE's, else the file's; a clash is an error."""
    from vae_lab.identity import families
    from vae_lab.errors import IncompatibleVae, VaeLabError

    if forced:
        if families.get(forced) is None:
            raise VaeLabError(f"--family {forced!r} is not one of {', '.join(families.FAMILIES)}")
        return forced
    vae_family = vae.family if vae.family and vae.family != families.UNKNOWN else None
    fam = families.get(file_family or "")
    if vae.kind == "kl" and fam is not None and fam.latent_channels == vae.latent_channels:
        if vae_family is None:
            return fam.key
        if vae_family != fam.key:
            raise IncompatibleVae(
                f"the latents are {fam.label} latents but {vae.name} is a {families.get(vae_family).label} VAE"
                " (pass --family to decode them anyway)"
            )
    return vae.family


def run(args) -> int:
    from vae_lab.runtime.engine import check_attention, load_vae
    from vae_lab.files.imaging import save_images
    from vae_lab.files.latents import image_size_from_meta, load_latents

    tile = tile_arg(args.tile)
    check_attention(args.attention, args.attention_window)  # before the (slow) loading
    device = device_arg(args.device)
    check_out(args.out, image=True)
    latents, meta = load_latents(args.latents)
    vae = load_vae(args.vae, device=device)
    family = pick_family(vae, meta.get("family"), args.family)
    if family != vae.family:
        vae.set_family(family)
    size = image_size_from_meta(meta)
    f = vae.downscale
    if size and not (latents.shape[2] * f - f < size[0] <= latents.shape[2] * f
                     and latents.shape[3] * f - f < size[1] <= latents.shape[3] * f):
        size = None  # metadata that does not fit these latents is ignored
    res = vae.decode(latents, precision=args.precision, tile=tile, size=size, attention=args.attention,
                     attention_window=args.attention_window)
    try:
        paths = save_images(res.images, args.out)
    except (ValueError, OSError) as err:
        from vae_lab.errors import VaeLabError

        raise VaeLabError(f"{args.out}: cannot write the image ({err})") from None
    if args.json:
        out = {"out": paths, "vae": vae.name, "family": vae.family, "latents_shape": list(latents.shape),
               "image_size": list(res.images.shape[-2:])}
        out.update(res.to_dict())
        print(json.dumps(out))
    else:
        h, w = res.images.shape[-2:]
        print(f"decoded {latents.shape[0]} x {w}x{h} with {vae.name} ({vae.family}): {describe(res)}")
        for p in paths:
            print(f"wrote {p}")
    return 0
