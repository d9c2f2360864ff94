"""Serving an exported ONNX file: the same answers as the checkpoint it came from, and no Grad-CAM."""

from __future__ import annotations

import httpx
import pytest


def upload(path):
    return {"file": (path.name, path.read_bytes(), "image/png")}


def test_onnx_predictions_equal_the_checkpoints(server, onnx_server, samples):
    paths, _ = samples
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths[:8]]
    from_onnx = httpx.post(onnx_server.url + "/predict", files=files).json()["results"]
    from_torch = httpx.post(server.url + "/predict", files=files).json()["results"]
    for onnx_result, torch_result in zip(from_onnx, from_torch, strict=True):
        assert [p["label"] for p in onnx_result["predictions"]] == [
            p["label"] for p in torch_result["predictions"]
        ]
        assert [p["probability"] for p in onnx_result["predictions"]] == pytest.approx(
            [p["probability"] for p in torch_result["predictions"]], abs=1e-5
        )


def test_onnx_model_card_is_rebuilt_from_the_stored_record(onnx_server, onnx_file):
    card = httpx.get(onnx_server.url + "/model").json()
    assert card["name"] == "lenet5" and card["format"] == "onnx" and card["source"] == str(onnx_file)
    assert (
        card["parameters"] == 61_706
    )  # counted on the architecture the record names, built on the meta device
    assert card["input"]["size"] == [32, 32] and card["classes"][9] == "Ankle boot"
    assert card["metrics"]["val_top1"] > 0.6
    assert card["gradcam"] is False and card["export"]["format"] == "onnx"
    assert card["device"] == "onnxruntime CPUExecutionProvider"


def test_gradcam_on_an_onnx_model_is_a_400_that_says_why(onnx_server, samples):
    paths, _ = samples
    response = httpx.post(onnx_server.url + "/gradcam", files=upload(paths[0]))
    assert response.status_code == 400
    assert "ONNX" in response.json()["error"] and ".safetensors" in response.json()["error"]
    assert httpx.get(onnx_server.url + "/health").json() == {"status": "ok"}
