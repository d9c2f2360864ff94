"""`convlab serve`: an HTTP prediction service and web page for any model file `convlab predict` takes."""

from __future__ import annotations

from convlab.cli.options import add_inference_options
from convlab.files import require_file_or_folder
from convlab.serve.limits import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a model over HTTP: JSON predictions, Grad-CAM and a web page",
        description="Serve a trained model with FastAPI under uvicorn. POST /predict (multipart field 'file' "
        "or 'files', or raw image bytes; ?topk=5) answers the top classes as JSON; POST /gradcam the Grad-CAM "
        "overlay; GET /model the model card; GET /health; GET / a page to try images; GET /docs the API. "
        "The port is taken first (a busy one is refused before the model loads); when the server answers, "
        "one line names the model and the URL to open. Requests are not logged; errors are.",
    )
    parser.add_argument(
        "source",
        metavar="MODEL",
        help="run folder, .safetensors checkpoint, or .onnx / TorchScript .pt file from `convlab export` "
        "(exported files: predictions only, no Grad-CAM)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)",
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000; 0: any free port)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes, each with its own copy of the model (default: 1)",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_MB,
        help=f"largest request body in MB, all images together; larger ones get 413 "
        f"(default: {DEFAULT_MAX_UPLOAD_MB:g})",
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        help="largest image in megapixels, checked from its header before decoding "
        f"(decompression-bomb guard; default: {DEFAULT_MAX_PIXELS / 1e6:.1f}, PIL's own limit)",
    )
    parser.add_argument(
        "--max-files",
        type=int,
        default=DEFAULT_MAX_FILES,
        help=f"most images in one batch request (default: {DEFAULT_MAX_FILES})",
    )
    parser.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULT_BATCH_WAIT_MS,
        help="predictions of requests that arrive within this many milliseconds of each other run as one "
        f"forward pass, which serves concurrent clients several times faster (default: {DEFAULT_BATCH_WAIT_MS:g})",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=DEFAULT_MAX_BATCH,
        help=f"most images in one such forward pass; 1 predicts each request alone (default: {DEFAULT_MAX_BATCH})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="require the header 'Authorization: Bearer TOKEN' on every endpoint but /health and the page "
        "(401 otherwise); prefer the environment variable CONVLAB_SERVE_TOKEN, which `ps` does not show "
        "(--token wins over it). No TLS: see docs/shipping.md, 'On a network'",
    )
    add_inference_options(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    require_file_or_folder(args.source)  # a mistyped path is answered before torch loads
    from convlab.serve.startup import check_options, listen, resolve_token

    max_pixels = round(args.max_megapixels * 1e6)
    check_options(args.port, args.workers, args.max_upload_mb, max_pixels, args.max_files)
    token = resolve_token(args.token)  # --token, else CONVLAB_SERVE_TOKEN
    # The port is taken before torch and the model load: a busy one is refused in well under a second.
    listener = listen(args.host, args.port)
    from convlab.serve import serve

    serve(
        args.source,
        workers=args.workers,
        device=args.device,
        max_upload_mb=args.max_upload_mb,
        max_pixels=max_pixels,
        max_files=args.max_files,
        amp=args.amp,
        channels_last=args.channels_last,
        token=token,
        listener=listener,
        batch_wait_ms=args.batch_wait_ms,
        max_batch=args.max_batch,
    )
    return 0
