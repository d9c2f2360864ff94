"""What the prediction service accepts: request size, image types and pixel counts, checked before decoding.

Every refusal is an UploadRejected (a ConvlabError with an HTTP status) whose message names the upload
and what is accepted; the application turns it into ``{"error": ...}`` with that status.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import TYPE_CHECKING

from convlab.errors import ConvlabError

if TYPE_CHECKING:  # torch is loaded only when an upload is decoded, so `convlab --help` starts fast
    import torch

MEGABYTE = 2**20
DEFAULT_MAX_UPLOAD_MB = 10.0
# convlab.data.images.MAX_PIXELS, the limit of every reader (PIL's own decompression-bomb threshold, about 89.5
# megapixels), written out because this module stays torch-free so that `convlab serve --help` answers at once;
# tests/serve/test_memory.py checks that the two agree. An image at the limit costs a decode about 341 MiB.
DEFAULT_MAX_PIXELS = 89_478_485
# Uploads decoded at once in one server process, each on one of this many threads kept for decoding. A decode
# holds up to one raster of its image (4 bytes a pixel: about 341 MiB at the default limit), so any number of
# concurrent requests of large images costs at most this many of those (tests/serve/test_memory.py). Threads of
# their own, not a lock in the request threads: glibc keeps memory a thread freed in that thread's heap for its
# next use, so a server whose 40 request threads each decoded once held 40 heaps' worth. Two keep two cores
# busy, and decoding an image at a model's input size takes milliseconds beside the forward pass.
DECODE_SLOTS = 2
DEFAULT_MAX_FILES = 32  # images in one batch request, decoded one after another to the model's input size
# Micro-batching (convlab.serve.batching): predictions of requests that arrive within this many milliseconds
# of each other run as one forward pass, up to this many images. 5 ms is a small fraction of a batch-1
# forward pass of a 224-pixel ResNet-18 on 2 cores (about 30 ms); 32 images is --max-files, so that one
# request always fits a batch.
DEFAULT_BATCH_WAIT_MS = 5.0
DEFAULT_MAX_BATCH = 32
# A raw body must declare an image type; octet-stream is what curl --data-binary and many clients send.
RAW_BODY_TYPES = ("image/", "application/octet-stream")


class UploadRejected(ConvlabError):
    """An upload the service refuses, with the HTTP status that says why (400, 413 or 415)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyTooLarge(Exception):
    """Raised from inside the request stream when a body passes the limit; BodySizeLimit answers 413."""


def _pil_formats() -> dict[str, str]:
    """PIL format -> file suffix, for the formats the data package reads (its IMAGE_EXTENSIONS)."""
    from convlab.data.images import pil_formats

    return pil_formats()


@cache
def accepted_types() -> tuple[str, ...]:
    """The MIME types of the image formats the service decodes, for error messages and the API docs."""
    from PIL import Image

    formats = _pil_formats()
    return tuple(sorted({Image.MIME.get(name, f"image/{name.lower()}") for name in formats}))


def too_large_message(max_bytes: int, size: int | None = None) -> str:
    said = f" ({size / MEGABYTE:.1f} MB)" if size is not None else ""
    return (
        f"The request body{said} is larger than the {max_bytes / MEGABYTE:g} MB this server accepts "
        "(--max-upload-mb); send a smaller image or fewer images at once."
    )


class BodySizeLimit:
    """ASGI middleware that refuses request bodies over ``max_bytes`` with 413 before they fill memory.

    A declared Content-Length over the limit is refused before a byte is read; a chunked body is
    counted as it streams in. The rest of a refused body is drained and dropped by the server.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send, int(declared))
            return
        received, started = 0, False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, None)

    async def _refuse(self, scope, receive, send, size: int | None):
        from starlette.responses import JSONResponse

        await JSONResponse({"error": too_large_message(self.max_bytes, size)}, status_code=413)(
            scope, receive, send
        )


def sniff_image(data: bytes, name: str, max_pixels: int) -> str:
    """The PIL format of an upload, from its header alone; refuses non-images (415) and too many pixels (413)."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadRejected(400, f"The upload '{name}' is empty; send an image file.")
    formats = _pil_formats()
    try:
        with warnings.catch_warnings():
            # PIL warns above its limit and refuses at twice it; the check below is ours, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(formats)) as image:
                image_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as error:
        raise UploadRejected(
            413, f"The image '{name}' has too many pixels for this server: {error}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UploadRejected(
            415,
            f"The upload '{name}' is not an image this server reads; accepted types: {', '.join(accepted_types())}.",
        ) from None
    if width * height > max_pixels:
        raise UploadRejected(
            413,
            f"The image '{name}' is {width} x {height} = {width * height:,} pixels, more than the {max_pixels:,} "
            "this server decodes (a guard against decompression bombs); send a smaller image.",
        )
    return image_format


_decoders: dict[int, ThreadPoolExecutor] = {}  # per process: a forked worker cannot use its parent's threads
_decoders_lock = threading.Lock()


def decoding_threads() -> ThreadPoolExecutor:
    """This process's DECODE_SLOTS decoding threads (started on first use)."""
    with _decoders_lock:
        pool = _decoders.get(os.getpid())
        if pool is None:
            pool = _decoders[os.getpid()] = ThreadPoolExecutor(
                DECODE_SLOTS, thread_name_prefix="convlab-decode"
            )
        return pool


def decode_upload(
    data: bytes,
    name: str,
    in_chans: int,
    image_size: Sequence[int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resize: str = "squash",
) -> torch.Tensor:
    """Uploaded bytes as uint8 (in_chans, *image_size), converted exactly as ``convlab predict`` converts files:
    upright by the EXIF orientation, brought to the size by the model's ``resize`` rule (its InputSpec's).

    The bytes go through the data package's ``read_image`` (one conversion for files and uploads), which
    reads paths: they are written to a temporary file with the suffix of the format found in the header.
    The decoding runs on one of the process's DECODE_SLOTS decoding threads; the caller waits for it.
    """
    from convlab.data import read_image

    suffix = _pil_formats()[sniff_image(data, name, max_pixels)]
    with tempfile.NamedTemporaryFile(prefix="convlab-upload-", suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        try:
            decoding = decoding_threads().submit(
                read_image, handle.name, in_chans, image_size, resize=resize, max_pixels=max_pixels
            )
            pixels = decoding.result()
        except ConvlabError as error:
            raise UploadRejected(400, str(error).replace(handle.name, name)) from None
    return pixels
