"""Shared test set-up: deterministic, single-threaded-friendly torch."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
