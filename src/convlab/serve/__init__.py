"""Ship a trained model: an HTTP prediction service (FastAPI under uvicorn) with a web page and Grad-CAM."""

from convlab.lazy import lazy_exports

# Names resolved on first use, so that `convlab --help` does not import FastAPI.
_EXPORTS = {
    "create_app": "convlab.serve.app",
    "serve": "convlab.serve.app",
    "app_from_environment": "convlab.serve.app",
    "ServedModel": "convlab.serve.model",
    "UploadRejected": "convlab.serve.limits",
    "decode_upload": "convlab.serve.limits",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports("convlab.serve", _EXPORTS, globals())
