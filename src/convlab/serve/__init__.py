"""Ship a trained model: an HTTP prediction service (FastAPI under uvicorn) with a web page and Grad-CAM."""

import importlib

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


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'convlab.serve' has no attribute '{name}'")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
