"""The prediction service: a FastAPI application over one model (JSON API, model card, Grad-CAM and a web page).

``create_app(source)`` builds the application (the model is loaded once, here); ``serve(source)`` runs it
under uvicorn, with ``workers > 1`` as separate processes that each load their own copy. ``serve`` takes the
port before it loads anything, and says one line when the server answers.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import socket
import sys
import time
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from convlab import __version__
from convlab.errors import ConvlabError
from convlab.runtime import check_device
from convlab.serve.batching import Batcher
from convlab.serve.limits import (
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    MEGABYTE,
    RAW_BODY_TYPES,
    BodySizeLimit,
    UploadRejected,
    accepted_types,
    decode_upload,
)
from convlab.serve.model import ServedModel
from convlab.serve.startup import (
    announce_when_ready,
    check_options,
    check_token,
    listen,
    network_warning,
    ready_line,
)

SETTINGS_VARIABLE = "CONVLAB_SERVE_SETTINGS"  # how `serve` hands its arguments to worker processes
STATIC = files("convlab.serve") / "static"
# The page loads nothing from elsewhere: scripts, styles and requests stay on this server; images may be
# the uploaded file (blob:) or the Grad-CAM overlay (data:).
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)
UPLOAD_FIELDS = ("file", "files")
# Open with a token: liveness for load balancers, and the page with its script and style, which hold no
# secret (the page asks for the token and sends it with its API calls).
OPEN_PATHS = ("/health", "/")
OPEN_PREFIX = "/static/"


class Prediction(BaseModel):
    label: str
    index: int
    probability: float


class PredictAnswer(BaseModel):
    predictions: list[Prediction]
    model: str
    elapsed_ms: float


class FileResult(BaseModel):
    filename: str | None
    predictions: list[Prediction]


class BatchAnswer(BaseModel):
    results: list[FileResult]
    model: str
    elapsed_ms: float


class ClassRef(BaseModel):
    label: str
    index: int


class PredictedClass(ClassRef):
    probability: float


class GradCamAnswer(BaseModel):
    image: str
    layer: str
    target: ClassRef
    predicted: PredictedClass
    model: str
    elapsed_ms: float


class ErrorAnswer(BaseModel):
    error: str


def _image_request_body(several: bool) -> dict:
    """The OpenAPI request body of an image endpoint: a multipart form, or the raw bytes of one image."""
    binary = {"type": "string", "format": "binary"}
    fields = {"file": binary}
    if several:
        fields["files"] = {"type": "array", "items": binary}
    raw = {"schema": binary}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": fields}},
                **{media: raw for media in accepted_types()},
                "application/octet-stream": raw,
            },
        }
    }


ERROR_RESPONSES = {
    400: {
        "model": ErrorAnswer,
        "description": "Malformed request, unreadable or truncated image, bad parameter",
    },
    413: {"model": ErrorAnswer, "description": "Body over --max-upload-mb, or an image with too many pixels"},
    415: {"model": ErrorAnswer, "description": "Not an image of an accepted type"},
    401: {
        "model": ErrorAnswer,
        "description": "Missing or wrong bearer token (only on a server with a token)",
    },
}

PREDICT_DESCRIPTION = """Classify images with the served model.

Send one image as the multipart form field `file`, several as `files` (or repeated `file`), or one
image as the raw request body with an image content type (`image/png`, `image/jpeg`, ... or
`application/octet-stream`). Images of any size and mode are converted to the model's input
(channels, size, mean, std from its checkpoint), exactly as `convlab predict` does.

**One image** answers
`{"predictions": [{"label", "index", "probability"}, ...], "model", "elapsed_ms"}`, best class first.

**Several images** (or the field `files`) are predicted as one batch and answer
`{"results": [{"filename", "predictions": [...]}, ...], "model", "elapsed_ms"}` in the order sent.

Errors answer `{"error": "..."}`: 413 for a body over the upload limit or an image with too many
pixels, 415 for a file that is not an image of an accepted type, 400 for a truncated image or a
malformed request. In a batch, the first bad file fails the whole request and is named.
"""

GRADCAM_DESCRIPTION = """Grad-CAM (Selvaraju et al. 2017) of one image: where the model looked for a class.

Send the image as for `/predict` (field `file` or the raw body). `target` is a class name or index
(default: the predicted class). Answers the overlay at the model's input size as a base64 PNG data URL
in `image`, the layer it was taken at, the class explained and the predicted class. Not available when
the server runs an ONNX file (400).
"""


async def read_uploads(request: Request, max_files: int) -> tuple[list[tuple[str, bytes]], bool]:
    """``([(name, bytes), ...], batch)`` from a multipart form or a raw image body; ``batch`` is True for
    several images or the field ``files``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        # Starlette answers a malformed form (no boundary, broken parts, too many files) with a 400.
        form = await request.form(max_files=max_files, max_fields=len(UPLOAD_FIELDS))
        try:
            unknown = [key for key in form.keys() if key not in UPLOAD_FIELDS]
            if unknown:
                raise UploadRejected(
                    400, f"Unknown form field '{unknown[0]}'; send one image in 'file' or several in 'files'."
                )
            uploads = []
            for field in UPLOAD_FIELDS:
                for part in form.getlist(field):
                    if not isinstance(part, UploadFile):
                        raise UploadRejected(
                            400,
                            f"Form field '{field}' holds text, not a file; send the image as a file upload.",
                        )
                    uploads.append((part.filename or f"{field} #{len(uploads) + 1}", await part.read()))
            batch = len(uploads) > 1 or bool(form.getlist("files"))
        finally:
            await form.close()
        if not uploads:
            raise UploadRejected(
                400, "The form holds no image; send one in the field 'file' or several in 'files'."
            )
        return uploads, batch
    if media.startswith(RAW_BODY_TYPES):
        return [("request body", await request.body())], False
    raise UploadRejected(
        415,
        f"Content type '{media or 'none'}' is not accepted; send multipart/form-data with the image in field "
        f"'file', or the raw image bytes as one of: {', '.join(accepted_types())}, application/octet-stream.",
    )


class BearerToken:
    """ASGI middleware: with a token, every request but OPEN_PATHS needs ``Authorization: Bearer <token>``;
    a missing or wrong one gets 401 with ``{"error": ...}`` and ``WWW-Authenticate: Bearer``, before the body
    is read. The comparison takes the same time wherever the tokens differ (``hmac.compare_digest``)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.expected = token.encode("ascii")

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == b"authorization"), None)
        scheme, _, credentials = (given or b"").strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.expected):
            await self.app(scope, receive, send)
            return
        if given is None:
            message = "This server needs a token: send the header 'Authorization: Bearer <token>'."
            challenge = 'Bearer realm="convlab"'
        else:
            message = "The bearer token is wrong (or the Authorization header is not 'Bearer <token>')."
            challenge = 'Bearer realm="convlab", error="invalid_token"'
        await _error(401, message, {"WWW-Authenticate": challenge})(scope, receive, send)


def _milliseconds(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 2)


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    first = error.errors()[0]
    where = " ".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body"))
    return f"Parameter '{where}': {first.get('msg', 'invalid value')}."


def create_app(
    source,
    *,
    device=None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_files: int = DEFAULT_MAX_FILES,
    amp: str = "off",
    channels_last: bool | str = False,
    token: str | None = None,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> FastAPI:
    """The service for ``source`` (run folder, .safetensors checkpoint, .onnx file or ``(model, record)``).

    The model is loaded here, once. ``max_upload_mb`` bounds a request body (all its images together),
    ``max_pixels`` each decoded image, ``max_files`` the images in one batch. ``amp`` and
    ``channels_last`` choose the fast CPU path for a checkpoint's predictions, ``"auto"`` where it pays
    (``convlab.prediction.choose_fast_path``).
    With ``token``, every endpoint but ``GET /health`` and the page (``GET /``, ``/static/``) needs the header
    ``Authorization: Bearer <token>`` (401 without it). Predictions of concurrent requests run as one
    forward pass: what arrives within ``batch_wait_ms`` of the first, up to ``max_batch`` images
    (``convlab.serve.batching``; ``max_batch`` 1 predicts each request alone).
    """
    check_options(0, 1, max_upload_mb, max_pixels, max_files)
    if token is not None:
        check_token(token)
    served = ServedModel(source, device, amp=amp, channels_last=channels_last)
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    app = FastAPI(
        title=f"convlab: {served.name}",
        version=__version__,
        description=f"Predictions of the {served.name} model ({len(served.classes)} classes) from {served.source}. "
        "The page at / lets a person try it; /model is its card.",
    )
    app.state.served = served
    batcher = Batcher(served.predict, batch_wait_ms, max_batch)
    app.state.batcher = batcher
    app.router.on_shutdown.append(batcher.close)
    app.add_middleware(BodySizeLimit, max_bytes=int(max_upload_mb * MEGABYTE))
    if token is not None:
        app.add_middleware(BearerToken, token=token)  # added last, so it runs first: before any body is read

    def decode_all(uploads: list[tuple[str, bytes]]):
        return [
            decode_upload(data, name, served.channels, served.size, int(max_pixels), served.resize)
            for name, data in uploads
        ]

    @app.exception_handler(ConvlabError)
    async def convlab_error(request: Request, error: ConvlabError):
        return _error(getattr(error, "status", 400), str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        return _error(400, _validation_message(error))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception):
        # A bug, not the client's fault: say so in JSON; uvicorn logs the traceback and keeps serving.
        return _error(500, f"Internal error ({type(error).__name__}); the server keeps serving.")

    @app.post(
        "/predict",
        response_model=PredictAnswer | BatchAnswer,
        responses=ERROR_RESPONSES,
        openapi_extra=_image_request_body(several=True),
        summary="Top-k classes of one image or a batch",
        description=PREDICT_DESCRIPTION,
    )
    async def predict(
        request: Request,
        topk: int = Query(5, ge=1, description="classes per image (capped at the number of classes)"),
    ):
        started = time.perf_counter()
        uploads, batch = await read_uploads(request, int(max_files))
        pixels = await run_in_threadpool(decode_all, uploads)
        predictions = await asyncio.wrap_future(
            batcher.submit(pixels, topk)
        )  # waits without holding a thread
        if batch:
            results = [
                {"filename": name, "predictions": found}
                for (name, _), found in zip(uploads, predictions, strict=True)
            ]
            return {"results": results, "model": served.name, "elapsed_ms": _milliseconds(started)}
        return {"predictions": predictions[0], "model": served.name, "elapsed_ms": _milliseconds(started)}

    @app.post(
        "/gradcam",
        response_model=GradCamAnswer,
        responses=ERROR_RESPONSES,
        openapi_extra=_image_request_body(several=False),
        summary="Grad-CAM overlay of one image",
        description=GRADCAM_DESCRIPTION,
    )
    async def gradcam(request: Request, target: str | None = Query(None, description="class name or index")):
        started = time.perf_counter()
        served.require_gradcam()  # an ONNX server says why before reading the body
        uploads, _ = await read_uploads(request, 1)
        if len(uploads) != 1:
            raise UploadRejected(
                400, f"Grad-CAM explains one image at a time; the request holds {len(uploads)}."
            )
        (pixels,) = await run_in_threadpool(decode_all, uploads)
        answer = await run_in_threadpool(served.gradcam, pixels, target)
        return {**answer, "model": served.name, "elapsed_ms": _milliseconds(started)}

    @app.get("/model", summary="The model card: architecture, classes, input spec, parameters, metrics")
    async def model_card():
        return served.card()

    @app.get("/health", summary="Liveness: the model is loaded and the server answers")
    async def health():
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory that each worker process calls when ``serve`` runs with ``workers > 1``."""
    settings = json.loads(os.environ[SETTINGS_VARIABLE])
    threads = settings.pop("threads", None)
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return create_app(settings.pop("source"), **settings)


def serve(
    source,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    device=None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_files: int = DEFAULT_MAX_FILES,
    amp: str = "off",
    channels_last: bool | str = False,
    token: str | None = None,
    listener: socket.socket | None = None,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> None:
    """Serve ``source`` (anything ``convlab predict`` takes) over HTTP with uvicorn until interrupted.

    In order: the options are checked, the port is taken (a busy one is refused before the model loads;
    ``listener`` is a socket already bound by ``convlab.serve.startup.listen``, which ``host`` and ``port``
    then do not describe), the model is loaded, and one line naming the model and its URL is printed when
    the server answers. uvicorn's own start-up and request lines are not shown; warnings and errors are.
    ``token``: see ``create_app``; without one, a server that other machines may reach says so on stderr.
    """
    import uvicorn

    check_options(port, workers, max_upload_mb, max_pixels, max_files)
    if token is not None:
        check_token(token)
    settings = {
        "device": None if device is None else str(device),
        "max_upload_mb": float(max_upload_mb),
        "max_pixels": int(max_pixels),
        "max_files": int(max_files),
        "amp": str(amp),
        "channels_last": channels_last if channels_last == "auto" else bool(channels_last),
        "token": token,  # reaches worker processes in the environment, never on a command line or a log line
        "batch_wait_ms": float(batch_wait_ms),
        "max_batch": int(max_batch),
    }
    listener = listener if listener is not None else listen(host, int(port))
    warning = network_warning(listener, token)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        if int(workers) == 1:
            app = create_app(source, **settings)
            announce_when_ready(listener, ready_line(app.state.served, listener, token is not None))
            try:
                uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[listener])
            except KeyboardInterrupt:  # Ctrl+C: uvicorn has shut down cleanly and passes the signal on
                pass
        else:
            _serve_workers(source, settings, int(workers), listener)
    finally:
        listener.close()


def _serve_workers(source, settings: dict, workers: int, listener: socket.socket) -> None:
    """``workers`` processes on one socket under uvicorn's supervisor, each with its own copy of the model."""
    from uvicorn import Config
    from uvicorn.supervisors import Multiprocess

    # Load once here so that a bad source or device fails with one line instead of in every worker.
    check_device(settings["device"])
    served = create_app(source, **{**settings, "device": "cpu"}).state.served
    # Each worker is a process with its own model; torch's threads are shared out so that they do not
    # oversubscribe the cores.
    threads = max(1, (os.cpu_count() or 1) // workers)
    source = source if Path(str(source)).is_absolute() else str(Path(source).resolve())
    os.environ[SETTINGS_VARIABLE] = json.dumps({"source": str(source), "threads": threads, **settings})
    config = Config(
        "convlab.serve.app:app_from_environment", factory=True, workers=workers, log_level="warning"
    )
    announce_when_ready(listener, ready_line(served, listener, settings["token"] is not None))
    Multiprocess(config, sockets=[listener]).run()  # until Ctrl+C or SIGTERM, which it handles itself
