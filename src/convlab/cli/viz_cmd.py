"""`convlab viz`: draw a checkpoint's filters, feature maps, Grad-CAM or saliency map as a PNG."""

from __future__ import annotations

from convlab.files import require_file_or_folder

WHAT = ("filters", "feature-maps", "gradcam", "saliency")
NEEDS_IMAGE = ("feature-maps", "gradcam", "saliency")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "viz",
        help="draw filters, feature maps, Grad-CAM or saliency of a trained model",
        description="Draw what a trained network has learned or where it looks, as a PNG: the filters of its "
        "first convolution (or --layer), the feature maps of a layer for an image, the Grad-CAM heat map "
        "(Selvaraju et al. 2017) or the gradient saliency map (Simonyan et al. 2013) of an image for a class. "
        "Images are converted with the checkpoint's preprocessing.",
    )
    parser.add_argument(
        "source",
        metavar="RUN_OR_CHECKPOINT",
        help="run folder or .safetensors checkpoint",
    )
    parser.add_argument("--what", choices=WHAT, default="filters", help="what to draw (default: filters)")
    parser.add_argument(
        "--image", metavar="IMG", help="image file (needed by feature-maps, gradcam, saliency)"
    )
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="module name, e.g. features.c3 or layer4 (default: the first convolution for "
        "filters and feature maps, the last layer with spatial feature maps for gradcam)",
    )
    parser.add_argument(
        "--target", metavar="CLASS", help="class name or index to explain (default: the predicted class)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="folder for the PNG (default: RUN/viz, or viz/ beside the file)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when present)")
    parser.set_defaults(func=run)


def run(args) -> int:
    require_file_or_folder(args.source)  # a mistyped path is answered before torch loads
    from convlab import viz
    from convlab.errors import ConvlabError

    if args.what in NEEDS_IMAGE and not args.image:
        raise ConvlabError(f"--what {args.what} needs an image; give one with --image IMG.")
    if args.what == "filters":
        if args.image or args.target:
            raise ConvlabError(
                "--what filters draws weights only; --image and --target are for feature-maps, "
                "gradcam and saliency."
            )
        result = viz.filters(args.source, layer=args.layer, out=args.out)
    elif args.what == "feature-maps":
        result = viz.feature_maps(args.source, args.image, layer=args.layer, out=args.out, device=args.device)
    elif args.what == "gradcam":
        result = viz.grad_cam(
            args.source, args.image, layer=args.layer, target=args.target, out=args.out, device=args.device
        )
    else:
        if args.layer:
            raise ConvlabError(
                "--what saliency is taken with respect to the input image; --layer does not apply."
            )
        result = viz.saliency(args.source, args.image, target=args.target, out=args.out, device=args.device)
    print(result.title)
    print(f"wrote {result.png}")
    return 0
