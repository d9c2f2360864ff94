"""convlab.allocator: glibc's malloc keeps freed large buffers for the next step, and gives them back at a run's end."""

import json
import platform
import subprocess
import sys

import pytest

from convlab import allocator

GLIBC = platform.libc_ver()[0] == "glibc"

# In a fresh process (the test process's malloc is set once training tests have run): a 64 MiB buffer
# written in full, freed, and made again, before and after reuse_large_buffers; then give_back_freed.
PROBE = r"""
import ctypes, json, resource
from convlab import allocator

SIZE = 64 << 20
libc = ctypes.CDLL("libc.so.6")

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = Mallinfo2

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def resident():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()

def cycle():
    # bytearray(n) is calloc'd and written in full, so every page is touched
    before, mapped = faults(), 0
    buffer = bytearray(b"\x01") * SIZE
    mapped = libc.mallinfo2().hblkhd
    del buffer
    return {"faults": faults() - before, "mapped": mapped}

out = {"default": [cycle(), cycle()]}
out["took"] = allocator.reuse_large_buffers()
out["kept"] = [cycle(), cycle()]
buffer = bytearray(b"\x01") * SIZE
del buffer
out["resident_before_trim"] = resident()
allocator.give_back_freed()
out["resident_after_trim"] = resident()
print(json.dumps(out))
"""


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's; other C libraries are left as they are")
def test_freed_large_buffers_are_reused_without_faulting_their_pages_again_and_go_back_at_the_end():
    out = json.loads(
        subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    )
    pages = (64 << 20) // 4096
    # glibc's default: the buffer is its own mapping, made and faulted in again every time
    assert all(cycle["mapped"] >= 64 << 20 for cycle in out["default"])
    assert out["took"] is True
    # kept: from the heap, and the second time onto pages the first one left mapped
    assert all(cycle["mapped"] < 64 << 20 for cycle in out["kept"])
    assert out["kept"][1]["faults"] < pages / 10
    # give_back_freed returns the freed pages: the resident set shrinks by most of the buffer
    assert out["resident_before_trim"] - out["resident_after_trim"] > 32 << 20


def test_under_another_c_library_nothing_changes(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    allocator._glibc.cache_clear()
    allocator.reuse_large_buffers.cache_clear()
    try:
        assert allocator.reuse_large_buffers() is False
        allocator.give_back_freed()  # nothing to call, and no error
    finally:
        allocator._glibc.cache_clear()
        allocator.reuse_large_buffers.cache_clear()


def test_a_training_run_an_evaluation_and_a_prediction_keep_freed_buffers_while_they_work_and_give_them_back(
    tmp_path, monkeypatch
):
    import importlib

    import torch

    import convlab

    # the modules, not their functions
    evaluation = importlib.import_module("convlab.evaluation.evaluate")
    prediction = importlib.import_module("convlab.prediction")

    events = []
    monkeypatch.setattr(allocator, "reuse_large_buffers", lambda: events.append("keep"))
    monkeypatch.setattr(allocator, "give_back_freed", lambda: events.append("give back"))

    def noted(module, name: str, event: str) -> None:
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            events.append(event)
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    run = tmp_path / "run"
    convlab.train(model="mlp", data="fashion-mnist", epochs=1, limit=300, out=str(run), device="cpu")
    assert events == ["keep", "give back"]
    events.clear()
    noted(evaluation, "evaluate_model", "evaluate")
    convlab.evaluate(run, split="val", device="cpu")
    assert events == ["keep", "evaluate", "give back"]
    events.clear()
    noted(prediction, "predict_tensors", "predict")
    assert len(convlab.predict(run, torch.zeros(3, 1, 28, 28, dtype=torch.uint8), batch_size=2)) == 3
    assert events == ["keep", "predict", "predict", "give back"]
