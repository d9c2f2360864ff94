"""Shared test set-up: seeded torch, a thread count that suits many small tests, and the real
Fashion-MNIST loaded once per session for each size the tests ask for.

Most tests run tiny tensors, where torch's intra-op threads cost more in hand-offs than
they gain; one thread keeps the suite fast and its numbers reproducible.
"""

import atexit
import inspect
import os
import shutil
import tempfile

import pytest
import torch

from convlab.data import load_data

torch.set_num_threads(1)
# Folder data sets in tests are tiny: worker processes would cost more than they save.
os.environ.setdefault("CONVLAB_NUM_WORKERS", "0")
# Training on a folder builds its decode-once cache (training.inputs.auto_cache_folder): the suite's caches go
# to a folder of its own, never the user's ~/.cache (child processes inherit it).
if "CONVLAB_FOLDER_CACHE" not in os.environ:
    os.environ["CONVLAB_FOLDER_CACHE"] = tempfile.mkdtemp(prefix="convlab-test-folder-cache-")
    atexit.register(shutil.rmtree, os.environ["CONVLAB_FOLDER_CACHE"], True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def fashion_mnist():
    """``fashion_mnist(limit=2000, image_size=(32, 32), ...)``: the real Fashion-MNIST as
    ``load_data("fashion-mnist", ...)`` gives it, built once per session for each set of options
    (a folder's ``fashion`` fixture names the size its tests use). Never downloads: the tests read
    the copy on this machine (Debian's dataset-fashion-mnist, or one under the data root)."""
    loaded = {}

    def load(**options):
        call = inspect.signature(load_data).bind("fashion-mnist", download=False, **options)
        call.apply_defaults()  # limit=1000 and limit=1000, seed=0 are one bundle
        key = repr(sorted(call.arguments.items()))
        if key not in loaded:
            loaded[key] = load_data(*call.args, **call.kwargs)
        return loaded[key]

    return load
