"""How `convlab serve` starts: a busy port refused before anything loads, one line when ready, and every model
file `convlab predict` takes (TorchScript included) served with the same answers."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import httpx
import pytest

import convlab
from convlab.errors import ConvlabError
from convlab.serve import create_app
from convlab.serve.model import ServedModel
from convlab.serve.startup import listen
from tests.helpers import serving


def test_a_busy_port_is_refused_before_torch_or_the_model_loads(checkpoint):
    with socket.socket() as taken:  # another program on the port, loopback only
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = (
            "import sys; from convlab.cli import main; "
            f"status = main(['serve', {str(checkpoint.parent)!r}, '--port', '{port}']); "
            "print(status, 'torch' in sys.modules)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout == "2 False\n"  # status 2, and torch was never imported: nothing was loaded
    assert done.stderr == (
        f"convlab: error: Port {port} on 127.0.0.1 is already in use by another program; choose another "
        f"with --port (e.g. --port {port + 1}, or --port 0 for any free port).\n"
    )


def test_a_second_server_cannot_take_the_port_while_the_first_loads_its_model():
    first = listen("127.0.0.1", 0)  # bound and listening before its model loads
    port = first.getsockname()[1]
    try:
        with pytest.raises(ConvlabError, match=f"Port {port} on 127.0.0.1 is already in use"):
            listen("127.0.0.1", port)
    finally:
        first.close()
    listen("127.0.0.1", port).close()  # free again once the first is gone


def test_serve_prints_one_line_with_the_model_and_the_url_when_ready(checkpoint, samples):
    paths, _ = samples
    with serving(str(checkpoint.parent), "--port", "0", "--device", "cpu") as (process, lines):
        ready = lines.get(timeout=120)
        assert ready is not None, process.stderr.read()
        match = re.fullmatch(
            r"Serving lenet5 \(10 classes, checkpoint (.+); float32, channels_last\) at (http://127\.0\.0\.1:\d+) "
            r"\(Ctrl\+C to stop\)\n",
            ready,
        )
        assert match and match[1] == str(checkpoint)
        url = match[2]  # --port 0: the port the kernel gave, as the line says
        # ready means answering: the first request needs no retry
        answer = httpx.post(
            url + "/predict", files={"file": (paths[0].name, paths[0].read_bytes(), "image/png")}
        )
        assert answer.json()["predictions"][0]["label"] == "Ankle boot"
    assert (
        lines.get(timeout=10) is None
    )  # nothing after the ready line: no uvicorn start-up, request or stop lines
    assert process.stderr.read() == "" and process.returncode == 0


@pytest.fixture(scope="session")
def torchscript_file(checkpoint, tmp_path_factory):
    """The trained checkpoint exported to TorchScript (checked by the exporter against PyTorch)."""
    from convlab.exporting import export

    return export(checkpoint, "torchscript", out=tmp_path_factory.mktemp("export") / "model.pt").path


def test_every_model_file_predict_takes_is_served_with_its_answers(
    checkpoint, onnx_file, torchscript_file, samples
):
    paths, _ = samples
    from convlab.data import read_image

    pixels = [read_image(path, 1, (32, 32)) for path in paths]
    expected = convlab.predict(checkpoint, paths, device="cpu", topk=3)
    for source, kind in [
        (checkpoint.parent, "checkpoint"),
        (checkpoint, "checkpoint"),
        (onnx_file, "onnx"),
        (torchscript_file, "torchscript"),
    ]:
        served = ServedModel(source, "cpu")
        assert served.card()["format"] == kind and served.card()["parameters"] == 61_706
        found = served.predict(pixels, topk=3)
        assert [[p["label"] for p in row] for row in found] == [
            [p["label"] for p in result["predictions"]] for result in expected
        ]
        assert [p["probability"] for row in found for p in row] == pytest.approx(
            [p["probability"] for result in expected for p in result["predictions"]], abs=1e-5
        )


def test_a_torchscript_server_predicts_and_says_why_it_has_no_gradcam(
    server_thread, torchscript_file, samples
):
    paths, labels = samples
    with server_thread(create_app(torchscript_file, device="cpu")) as running:
        card = httpx.get(running.url + "/model").json()
        assert card["format"] == "torchscript" and card["source"] == str(torchscript_file)
        assert card["gradcam"] is False and card["export"]["format"] == "torchscript"
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
        results = httpx.post(running.url + "/predict", files=files).json()["results"]
        correct = sum(r["predictions"][0]["index"] == label for r, label in zip(results, labels, strict=True))
        assert correct >= 10  # of 16 test images, for a LeNet-5 at about 75% test top-1
        refused = httpx.post(running.url + "/gradcam", files={"file": (paths[0].name, paths[0].read_bytes())})
        assert refused.status_code == 400
        assert "TorchScript" in refused.json()["error"] and ".safetensors" in refused.json()["error"]
