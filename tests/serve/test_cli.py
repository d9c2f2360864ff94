"""`convlab serve` as a user runs it: a separate process with two workers, and one-line errors for bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from convlab.cli import main


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"convlab serve exited with {process.returncode}: {process.stderr.read()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"convlab serve did not answer /health within {seconds} s")


@pytest.mark.slow  # three processes start torch: the supervisor checks the model, then each worker loads it
def test_convlab_serve_with_two_workers_predicts_and_limits_uploads(checkpoint, samples, tmp_path):
    paths, _ = samples
    port = free_port()
    run_folder = checkpoint.parent  # a run folder serves its best.safetensors
    command = [
        sys.executable,
        "-m",
        "convlab.cli",
        "serve",
        str(run_folder),
        "--port",
        str(port),
        "--workers",
        "2",
        "--max-upload-mb",
        "0.25",
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        with httpx.Client(base_url=url, timeout=30) as client:
            answer = client.post(
                "/predict", files={"file": (paths[0].name, paths[0].read_bytes(), "image/png")}
            )
            assert answer.status_code == 200
            assert (
                answer.json()["predictions"][0]["label"] == "Ankle boot"
            )  # the first Fashion-MNIST test image
            noise = np.random.default_rng(0).integers(0, 256, (800, 800), dtype=np.uint8)
            big = tmp_path / "noise.png"
            Image.fromarray(noise).save(big)  # noise does not compress: 0.6 MB of PNG
            refused = client.post("/predict", files={"file": ("noise.png", big.read_bytes(), "image/png")})
            assert refused.status_code == 413 and "0.25 MB" in refused.json()["error"]
            assert client.get("/health").json() == {"status": "ok"}
            card = client.get("/model").json()
            assert card["name"] == "lenet5" and card["source"] == str(checkpoint)
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # uvicorn's supervisor and its two workers
        process.wait(timeout=30)
    # one line once the first worker answers, however many workers there are; none from uvicorn
    assert process.stdout.read() == (
        f"Serving lenet5 (10 classes, checkpoint {checkpoint}; float32, channels_last) at {url} (Ctrl+C to stop)\n"
    )


def test_a_missing_source_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["serve", str(tmp_path / "missing.safetensors"), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("convlab: error: No checkpoint at") and error.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--max-upload-mb", "0", "--max-upload-mb must be a positive number"),
        ("--workers", "0", "--workers must be at least 1"),
        ("--port", "70000", "--port must be 0..65535"),
    ],
)
def test_bad_options_are_one_line_errors(checkpoint, capsys, option, value, words):
    assert main(["serve", str(checkpoint), option, value]) == 2
    assert words in capsys.readouterr().err
