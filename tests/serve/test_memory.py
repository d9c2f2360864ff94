"""The service's memory stays bounded (issue 16): one pixel limit, uploads decoded on DECODE_SLOTS threads, and a
server sent several images just under the limit at the same time grows by no more than DECODE_SLOTS decodes."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO

import httpx
import numpy as np
import torch
from PIL import Image

import convlab.data
from convlab.checkpoint import save_checkpoint
from convlab.data.images import MAX_PIXELS
from convlab.models import create_model
from convlab.record import record_for
from convlab.serve import limits
from tests.helpers import serving
from tests.photos import write_large_png

MIB = 2**20
WIDTH, HEIGHT = 9000, 9900  # 89.1 megapixels, just under the limit
# What one decode of such an RGB PNG may add (tests/data/test_decode_memory.py measures 345 MiB): PIL's raster
# of 4 bytes a pixel and 32 MiB besides.
PER_DECODE = 4 * WIDTH * HEIGHT + 32 * MIB
# The server's own share while it answers: request bodies (1.2 MB each), threads, responses, and margin.
SERVER_OVERHEAD = 128 * MIB
CONCURRENT = 4  # requests at once: twice the decode slots


def test_serve_and_the_readers_share_one_pixel_limit():
    assert limits.DEFAULT_MAX_PIXELS == MAX_PIXELS == 89_478_485


def test_uploads_decode_on_decode_slots_threads_at_most(monkeypatch):
    """However many request threads call decode_upload, the decoding runs on DECODE_SLOTS threads: at most that
    many at once, and only those threads' heaps ever hold a raster."""
    running, most, threads, lock = 0, 0, set(), threading.Lock()

    def slow_read(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.get_ident())
        time.sleep(0.05)
        with lock:
            running -= 1
        return torch.zeros(3, 8, 8, dtype=torch.uint8)

    monkeypatch.setattr(convlab.data, "read_image", slow_read)
    buffer = BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(buffer, "PNG")
    with ThreadPoolExecutor(6 * limits.DECODE_SLOTS) as requests:
        decoded = list(
            requests.map(lambda k: limits.decode_upload(buffer.getvalue(), f"{k}.png", 3, (8, 8)), range(24))
        )
    assert len(decoded) == 24 and most == len(threads) == limits.DECODE_SLOTS


def status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(key))


def test_concurrent_uploads_just_under_the_limit_cost_at_most_the_decode_slots(tmp_path):
    model = create_model("mlp", num_classes=2, in_chans=3, hidden=(), input_size=16)
    spec = {"channels": 3, "size": [16, 16], "mean": [0.5] * 3, "std": [0.25] * 3, "resize": "crop"}
    checkpoint = save_checkpoint(
        tmp_path / "model.safetensors", model, record_for(model, {"classes": ["a", "b"], "input": spec})
    )
    big = write_large_png(tmp_path / "big.png", WIDTH, HEIGHT).read_bytes()
    small = write_large_png(tmp_path / "small.png", 700, 500).read_bytes()
    with serving(str(checkpoint), "--port", "0", "--device", "cpu") as (process, lines):
        ready = lines.get(timeout=120)
        assert ready is not None, process.stderr.read()
        url = re.search(r"http://127\.0\.0\.1:\d+", ready)[0]

        def post(data: bytes) -> int:
            return httpx.post(
                url + "/predict", content=data, headers={"content-type": "image/png"}, timeout=120
            ).status_code

        assert post(small) == 200  # the decoders and the model have run once before the measurement
        try:
            with open(f"/proc/{process.pid}/clear_refs", "w") as handle:
                handle.write("5")  # the peak resident size starts again from the current size
        except OSError:
            pass  # the peak since start-up counts: it can only read higher
        before = status(process.pid, "VmRSS")
        with ThreadPoolExecutor(CONCURRENT) as pool:
            assert list(pool.map(post, [big] * CONCURRENT)) == [200] * CONCURRENT
        added = status(process.pid, "VmHWM") - before
        assert post(small) == 200
    # Measured: 705-725 MiB for 4, 8 or 16 uploads at once, 65-85 MiB of it still held after. Decoded in the
    # request threads, four at once took 1342-1415 MiB; before issue 16, 5325 MiB (2775 MiB held after).
    assert added <= limits.DECODE_SLOTS * PER_DECODE + SERVER_OVERHEAD, f"{added / MIB:.0f} MiB"
