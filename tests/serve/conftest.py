"""Fixtures for the service tests: a LeNet-5 trained briefly on Fashion-MNIST, test images as files, and the
real server (uvicorn on a loopback port the test picks) running in a background thread."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import convlab
from convlab.checkpoint import save_checkpoint

FASHION_LIMIT = 2000  # training images kept (stratified); 10% of them are the validation split
EPOCHS = 4  # 116 Adam steps of 64: about 75% test top-1, enough for predictions that mean something
SAMPLES = 16  # test images written as PNG files
UPLOAD_LIMIT_MB = 1.0  # small, so that a test can go over it with a modest image
MAX_PIXELS = 600 * 600  # decompression-bomb guard of the test server


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 at a port the kernel picks, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        # The socket is bound here and handed to uvicorn: no window in which another process takes the port.
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def png_bytes(pixels: np.ndarray) -> bytes:
    from io import BytesIO

    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def fashion(fashion_mnist):
    return fashion_mnist(limit=FASHION_LIMIT, image_size=(32, 32), val_split=0.1, seed=0)


@pytest.fixture(scope="session")
def checkpoint(fashion, tmp_path_factory):
    """``best.safetensors`` of a LeNet-5 trained for 4 epochs on 1,800 Fashion-MNIST images at 32 x 32."""
    torch.manual_seed(0)
    model = convlab.create_model("lenet5")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(EPOCHS):
        for images, labels in fashion.loader("train", 64, shuffle=True, epoch=epoch, seed=0):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in fashion.loader("val", 500))
    record = {
        "classes": list(fashion.classes),
        "input": {"channels": 1, "size": [32, 32], "mean": list(fashion.mean), "std": list(fashion.std)},
        "data": {"name": "fashion-mnist", "source": fashion.source, "val_split": 0.1, "seed": 0},
        "epoch": EPOCHS,
        "metrics": {"val_top1": correct / fashion.size("val")},
    }
    return save_checkpoint(tmp_path_factory.mktemp("run") / "best.safetensors", model, record)


@pytest.fixture(scope="session")
def samples(fashion, tmp_path_factory):
    """The first 16 test images as 32 x 32 gray PNG files, and their true labels."""
    folder = tmp_path_factory.mktemp("images")
    images, labels = next(iter(fashion.loader("test", SAMPLES)))
    pixels = ((images[:, 0] * fashion.std[0] + fashion.mean[0]) * 255).round().clamp(0, 255).to(torch.uint8)
    paths = []
    for index, picture in enumerate(pixels.numpy()):
        path = folder / f"test-{index:02d}-{fashion.classes[int(labels[index])].replace('/', '-')}.png"
        path.write_bytes(png_bytes(picture))
        paths.append(path)
    return paths, labels.tolist()


@pytest.fixture(scope="session")
def server(checkpoint):
    """The service for the trained checkpoint with a 1 MB upload limit and a 600 x 600 pixel guard."""
    from convlab.serve import create_app

    app = create_app(checkpoint, device="cpu", max_upload_mb=UPLOAD_LIMIT_MB, max_pixels=MAX_PIXELS)
    with ServerThread(app) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as session:
        yield session


@pytest.fixture(scope="session")
def server_thread():
    """The ServerThread class, for tests that serve another application (an ONNX file, a page)."""
    return ServerThread


@pytest.fixture(scope="session")
def onnx_file(checkpoint, tmp_path_factory):
    """The trained checkpoint exported to ONNX (checked by the exporter against PyTorch to 1e-4)."""
    from convlab.exporting import export

    return export(checkpoint, "onnx", out=tmp_path_factory.mktemp("export") / "model.onnx").path


@pytest.fixture(scope="session")
def onnx_server(onnx_file):
    from convlab.serve import create_app

    with ServerThread(create_app(onnx_file, device="cpu")) as running:
        yield running


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless and quiet: no GPU, no sandbox (tests may run as root), and none of the browser's own traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1000,700",
)


def installed(program: str, default: str) -> str:
    """The program's path; a clear failure (never a skip) when it is missing: CI installs it."""
    import shutil
    from pathlib import Path

    path = default if Path(default).is_file() else shutil.which(Path(default).name)
    if path is None:
        pytest.fail(
            f"{program} is not installed ({default}); the page tests need it: run .ci/browser-deps.sh "
            "(apt-get install -y chromium chromium-driver)."
        )
    return path


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, driven by its chromedriver through Selenium, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = installed("Chromium", CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=installed("chromedriver", CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()
