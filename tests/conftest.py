"""Shared test set-up: seeded torch, and a thread count that suits many small tests.

Most tests run tiny tensors, where torch's intra-op threads cost more in hand-offs than
they gain; one thread keeps the suite fast and its numbers reproducible.
"""

import os

import pytest
import torch

torch.set_num_threads(1)
# Folder data sets in tests are tiny: worker processes would cost more than they save.
os.environ.setdefault("CONVLAB_NUM_WORKERS", "0")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
